"""Keras-default building blocks: glorot-uniform kernels, zero biases, VALID convs."""

from __future__ import annotations

import functools

import flax.linen as nn

glorot_uniform = nn.initializers.glorot_uniform()

Conv = functools.partial(
    nn.Conv, padding="VALID", kernel_init=glorot_uniform, bias_init=nn.initializers.zeros
)
Dense = functools.partial(nn.Dense, kernel_init=glorot_uniform, bias_init=nn.initializers.zeros)
# Keras BatchNormalization: momentum 0.99, epsilon 1e-3.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.99, epsilon=1e-3)


def max_pool(x, size: int = 2):
    """Keras MaxPooling2D(): pool `size`, stride `size`, VALID.

    Computed as a reshape and a max over non-overlapping windows: the same values as
    `nn.max_pool`, but XLA:CPU runs its gradient ~4x faster than reduce-window's (which
    dominated N1's train step on CPU). Ties share the gradient (they only occur at ReLU's zeros,
    whose gradient is zero anyway).
    """
    n, h, w, c = x.shape
    x = x[:, : h // size * size, : w // size * size]
    return x.reshape(n, h // size, size, w // size, size, c).max(axis=(2, 4))


def flatten(x):
    """Row-major over (H, W, C), like Keras Flatten on NHWC."""
    return x.reshape((x.shape[0], -1))
