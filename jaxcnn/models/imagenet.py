"""ImageNet helpers shared by the Keras-layout backbones (VGG16, ResNet50) and transfer models."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# ImageNet channel means in BGR order, as `keras.applications.imagenet_utils` ("caffe" mode).
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


def preprocess_input(x):
    """`keras.applications.vgg16.preprocess_input` ("caffe" mode) for NHWC RGB in [0, 255].

    RGB -> BGR, then subtract the ImageNet mean per channel; no scaling. Works on jax arrays
    (returns jax) and on numpy arrays (returns float32 numpy), like Keras for both.
    """
    if isinstance(x, np.ndarray):
        x = x.astype(np.float32)[..., ::-1]
        return x - np.asarray(IMAGENET_MEAN_BGR, np.float32)
    x = jnp.asarray(x, jnp.float32)[..., ::-1]
    return x - jnp.asarray(IMAGENET_MEAN_BGR, jnp.float32)


def global_pool(x, pooling: str | None):
    """A backbone's `pooling` option: None (the map), "avg" or "max" over height and width."""
    if pooling is None:
        return x
    if pooling == "avg":
        return jnp.mean(x, axis=(1, 2))
    if pooling == "max":
        return jnp.max(x, axis=(1, 2))
    raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
