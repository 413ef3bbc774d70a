"""Keras' affine matrix (`apply_affine_transform`'s conventions) and its projective form, flips folded in.

Written once against a numpy-like module `xp` (numpy, jax.numpy, or TF through a small adapter),
so both backends warp by exactly the same matrix.
"""

from __future__ import annotations

import math

import numpy as np


def keras_matrix(theta, tx, ty, shear, zx, zy, h, w, xp=np):
    """Keras' centred 3x3 matrix, batched over the leading dims of the parameters.

    Row 0 acts on columns (x), row 1 on rows (y): `[input_x, input_y, 1] = M @ [x, y, 1]`.
    `xp` is numpy, jax.numpy or a TF-like module with the same few functions.
    """
    t, s = theta * (math.pi / 180.0), shear * (math.pi / 180.0)
    c, sn = xp.cos(t), xp.sin(t)
    ss, cs = xp.sin(s), xp.cos(s)
    # R @ T @ Sh @ Z in closed form (rows 0 and 1; row 2 is [0, 0, 1]).
    m00 = c * zx
    m01 = (-c * ss - sn * cs) * zy
    m02 = c * tx - sn * ty
    m10 = sn * zx
    m11 = (-sn * ss + c * cs) * zy
    m12 = sn * tx + c * ty
    # transform_matrix_offset_center(M, h, w): o_x = h/2 - 0.5 (sic, Keras), o_y = w/2 - 0.5.
    ox, oy = h / 2.0 - 0.5, w / 2.0 - 0.5
    m02 = m02 + ox - m00 * ox - m01 * oy
    m12 = m12 + oy - m10 * ox - m11 * oy
    return m00, m01, m02, m10, m11, m12


def projective_params(theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical, h, w, xp=np):
    """The 8 `ImageProjectiveTransformV3` parameters (output (x, y) -> input point), flips folded in.

    A flip of the transformed image is a flip of the output coordinates: x -> w - 1 - x.
    """
    m00, m01, m02, m10, m11, m12 = keras_matrix(theta, tx, ty, shear, zx, zy, h, w, xp)
    fh = xp.where(flip_horizontal, -1.0, 1.0) if xp is not np else (-1.0 if flip_horizontal else 1.0)
    fv = xp.where(flip_vertical, -1.0, 1.0) if xp is not np else (-1.0 if flip_vertical else 1.0)
    dx = (1.0 - fh) / 2.0 * (w - 1)  # 0, or w - 1 when flipped
    dy = (1.0 - fv) / 2.0 * (h - 1)
    return (fh * m00, fv * m01, m02 + m00 * dx + m01 * dy,
            fh * m10, fv * m11, m12 + m10 * dx + m11 * dy)
