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
    """Keras MaxPooling2D(): pool `size`, stride `size`, VALID."""
    return nn.max_pool(x, (size, size), strides=(size, size), padding="VALID")


def flatten(x):
    """Row-major over (H, W, C), like Keras Flatten on NHWC."""
    return x.reshape((x.shape[0], -1))
