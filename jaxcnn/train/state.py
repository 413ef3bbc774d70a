"""TrainState: params, optimizer state, step, an rng and (for BatchNorm models) batch_stats."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jaxcnn.compile_cache import run_once


class TrainState(train_state.TrainState):
    """Flax's TrainState plus `batch_stats` (empty dict when the model has none) and a base rng.

    The dropout key of step `s` is `fold_in(rng, s)`: it depends on nothing but the seed and the
    step, so a resumed run and a run on any number of devices draw the same masks.
    """

    batch_stats: Any = None
    rng: jax.Array = None


def init_variables(model: nn.Module, input_shape, seed: int = 0):
    """Variables of `model` for inputs of `input_shape` (without the batch axis)."""
    params_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    return model.init({"params": params_key, "dropout": dropout_key}, dummy, train=False)


def create_train_state(model: nn.Module, input_shape, tx: optax.GradientTransformation,
                       seed: int = 0, params=None, batch_stats=None) -> TrainState:
    """A fresh TrainState; `params` / `batch_stats`, if given, replace the initialized ones
    (e.g. pretrained weights with their BatchNorm statistics).

    Built under one `jax.jit`: op-by-op initialization of a large model costs seconds.
    """

    def build(params, batch_stats):
        variables = init_variables(model, input_shape, seed)
        return TrainState.create(
            apply_fn=model.apply,
            params=variables["params"] if params is None else params,
            tx=tx,
            batch_stats=variables.get("batch_stats", {}) if batch_stats is None else batch_stats,
            rng=jax.random.PRNGKey(seed + 1),
        )

    return run_once(build, params, batch_stats)  # compiled cheaply: it runs once
