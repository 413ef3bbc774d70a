"""The recipes' training augmentation on the device: random mirror and reflect-padded shift.
(Test-time augmentation is scoring: jaxcnn.train.callbacks.test_score.tta_logits.)"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def flip_translate(pad: int) -> Callable:
    """Device augmentation: random horizontal mirror, then a random shift of up to `pad` pixels
    (reflect padding, crop back), each drawn per image."""

    def augment(images, key):
        k_flip, k_shift = jax.random.split(key)
        b, h, w, c = images.shape
        flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
        images = jnp.where(flip, images[:, :, ::-1], images)
        if pad:
            padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
            offsets = jax.random.randint(k_shift, (b, 2), 0, 2 * pad + 1)
            images = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c)))(padded, offsets)
        return images

    return augment


AUGMENTS = {None: None, "flip_translate2": flip_translate(2), "flip": flip_translate(0)}
