"""What pixels a model takes: 0..1 (jaxcnn divides uint8 images by 255) or 0..255 (it scales its own).

    class SmallCNN(nn.Module):
        input_range = "0..255"     # a class attribute: the module divides by 255 itself

A model that scales its own inputs (a Keras model with a `Rescaling` layer first, a user's module
with its own normalization) must be given raw pixels, or they are scaled twice. Each model says so
through an `input_range` attribute ("0..1", the default, or "0..255"); the Trainer, predict and
export read it here and scale uint8 images accordingly, exactly once. Float images are always
used as given.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

RANGES = ("0..1", "0..255")
DIVIDE, NONE = "divide_by_255", "none"  # the model card's `input_scaling` values (uint8 images)


def input_range_of(model) -> str:
    """The pixel range `model` takes: its `input_range` attribute, else "0..1"."""
    value = getattr(model, "input_range", None) or "0..1"
    if value not in RANGES:
        raise ValueError(f"{type(model).__name__}.input_range is {value!r}; use one of {', '.join(RANGES)}")
    return value


def scaling_for(input_range: str) -> str:
    """The model card's `input_scaling` (what is done to uint8 pixels) for a model's input range."""
    return NONE if input_range == "0..255" else DIVIDE


def scale_uint8(images, scaling: str):
    """uint8 pixels as the model takes them (x * 1/255 in float32, or only cast); floats as given."""
    xp = np if isinstance(images, np.ndarray) else jnp
    if images.dtype == np.uint8 and scaling == DIVIDE:
        return images.astype(xp.float32) * xp.float32(1.0 / 255.0)
    return images.astype(xp.float32)
