"""The JAX road: augmentation in pure JAX (`jax.random`, `vmap`), for arrays that stay on the accelerator.

The twin of `tf_ops`: same transforms and distributions, drawn from a different random stream.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxcnn.data.augment.config import EDGE_EPS, FILL_MODES, AugmentConfig, parse_augment, shift_kind
from jaxcnn.data.augment.matrix import projective_params


def _jax_sample(image, ix, iy, fill_mode: str, cval: float):
    """Bilinear sample of HWC `image` at float points (ix, iy) [H', W'], scipy fill semantics."""
    h, w = image.shape[0], image.shape[1]
    if fill_mode == "wrap":
        def wrap(c, n):
            if n <= 1:
                return jnp.zeros_like(c)
            wrapped = c - (n - 1) * jnp.floor(c / (n - 1))
            return jnp.where((c < 0) | (c > n - 1), wrapped, c)  # [0, n-1] itself is left alone
        ix, iy = wrap(ix, w), wrap(iy, h)
    elif fill_mode in ("nearest", "constant"):
        inside = ((ix >= -EDGE_EPS) & (ix <= w - 1 + EDGE_EPS)
                  & (iy >= -EDGE_EPS) & (iy <= h - 1 + EDGE_EPS))
        ix, iy = jnp.clip(ix, 0, w - 1), jnp.clip(iy, 0, h - 1)
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    fx, fy = (ix - x0)[..., None], (iy - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1, y1 = x0 + 1, y0 + 1
    if fill_mode == "reflect":
        # Half-sample symmetric extension of the pixel grid: -1 -> 0, n -> n - 1, period 2n.
        def refl(i, n):
            i = jnp.mod(i, 2 * n)
            return jnp.where(i >= n, 2 * n - 1 - i, i)
        x0, x1, y0, y1 = refl(x0, w), refl(x1, w), refl(y0, h), refl(y1, h)
    else:
        x0, x1 = jnp.clip(x0, 0, w - 1), jnp.clip(x1, 0, w - 1)
        y0, y1 = jnp.clip(y0, 0, h - 1), jnp.clip(y1, 0, h - 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    if fill_mode == "constant":
        out = jnp.where(inside[..., None], out, jnp.asarray(cval, out.dtype))
    return out


def jax_transform(image, params6, fill_mode: str = "nearest", cval: float = 0.0):
    """Warp one HWC image by the 6 affine `projective_params` (output (x, y) -> input point)."""
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    h, w = image.shape[0], image.shape[1]
    ys = jnp.arange(h, dtype=jnp.float32)[:, None]
    xs = jnp.arange(w, dtype=jnp.float32)[None, :]
    t = [jnp.asarray(p, jnp.float32) for p in params6]
    ix = t[0] * xs + t[1] * ys + t[2]
    iy = t[3] * xs + t[4] * ys + t[5]
    return _jax_sample(image.astype(jnp.float32), ix, iy, fill_mode, cval)


def jax_apply_affine(image, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                     flip_horizontal=False, flip_vertical=False, fill_mode="nearest", cval=0.0):
    """`apply_affine` in JAX for one HWC image (jit-able; parameters may be traced scalars)."""
    if image.ndim != 3:
        raise ValueError(f"jax_apply_affine: image must be HWC, got shape {image.shape}")
    h, w = float(image.shape[0]), float(image.shape[1])
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    params = projective_params(f(theta), f(tx), f(ty), f(shear), f(zx), f(zy),
                               jnp.asarray(flip_horizontal, bool), jnp.asarray(flip_vertical, bool),
                               h, w, jnp)
    return jax_transform(image, params, fill_mode, cval)


def jax_sample_transform_params(config: AugmentConfig, key, batch_size: int, height: int, width: int) -> dict:
    """`sample_transform_params` with `jax.random` (same distributions, a different stream)."""
    keys = jax.random.split(key, 10)
    b = (batch_size,)

    def uni(i, lo, hi):
        return jax.random.uniform(keys[i], b, jnp.float32, lo, hi)

    zeros = jnp.zeros(b, jnp.float32)
    theta = uni(0, -config.rotation_range, config.rotation_range) if config.rotation_range else zeros
    tx = _jax_shift(config.height_shift_range, height, b, keys[1], keys[2])
    ty = _jax_shift(config.width_shift_range, width, b, keys[3], keys[4])
    shear = uni(5, -config.shear_range, config.shear_range) if config.shear_range else zeros
    lo, hi = config.zoom_bounds
    if lo == 1 and hi == 1:
        zx = zy = jnp.ones(b, jnp.float32)
    else:
        zx, zy = uni(6, lo, hi), uni(7, lo, hi)
    no = jnp.zeros(b, bool)
    fh = uni(8, 0.0, 1.0) < 0.5 if config.horizontal_flip else no
    fv = uni(9, 0.0, 1.0) < 0.5 if config.vertical_flip else no
    return dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy,
                flip_horizontal=fh, flip_vertical=fv)


def _jax_shift(r, size, b, key_a, key_b):
    kind = shift_kind(r)
    if kind == "none":
        return jnp.zeros(b, jnp.float32)
    if kind == "uniform":
        v = jax.random.uniform(key_a, b, jnp.float32, -r, r)
        return v * size if r < 1 else v
    if kind == "int":
        v = jax.random.randint(key_a, b, 0, int(r)).astype(jnp.float32)
    else:
        v = jnp.asarray([float(x) for x in r], jnp.float32)[jax.random.randint(key_a, b, 0, len(r))]
    v = v * jnp.where(jax.random.uniform(key_b, b) < 0.5, -1.0, 1.0)
    if max(r if kind == "choice" else [r]) < 1:
        v = v * size
    return v


def make_jax_augment(config: AugmentConfig | str | None) -> Callable | None:
    """`fn(images [B,H,W,C], key) -> float32 images`: the on-device twin of `make_tf_augment`."""
    if isinstance(config, str) or config is None:
        config = parse_augment(config)
    if config is None or config.is_identity():
        return None

    def augment(images, key):
        b, h, w = images.shape[0], images.shape[1], images.shape[2]
        p = jax_sample_transform_params(config, key, b, h, w)
        params = projective_params(p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
                                   p["flip_horizontal"], p["flip_vertical"], float(h), float(w), jnp)
        params = jnp.stack(params, axis=1)
        warp = lambda img, t: jax_transform(img, tuple(t[i] for i in range(6)),  # noqa: E731
                                            config.fill_mode, config.cval)
        return jax.vmap(warp)(images, params)

    augment.config = config
    return augment
