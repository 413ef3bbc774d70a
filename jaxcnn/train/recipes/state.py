"""The recipes' train state: a TrainState that also carries airbench's lookahead average, the
update that pulls the weights to it every 5 steps, and the state's first values (whitening
layer fitted to the data, the recipe's optimizer)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxcnn.compile_cache import run_once
from jaxcnn.train.feeds.device import normalize_images
from jaxcnn.train.recipes.recipe import Recipe
from jaxcnn.train.recipes.sgd import make_optimizer
from jaxcnn.train.recipes.whiten import whitening_kernel
from jaxcnn.train.state import TrainState, init_variables


class SpeedState(TrainState):
    """TrainState plus the lookahead average of params and batch_stats (None without lookahead)."""

    ema: Any = None


def lookahead(state: SpeedState, total_steps: int) -> SpeedState:
    """Every 5th step: ema <- ema + (1 - d) (w - ema), w <- ema, d = 0.95^5 (step/total)^3;
    at the last step w <- ema (airbench's LookaheadState, over params and BatchNorm statistics)."""
    s = state.step
    every = (s % 5) == 0
    decay = 0.95 ** 5 * (s.astype(jnp.float32) / total_steps) ** 3
    live = {"params": state.params, "batch_stats": state.batch_stats}
    ema = jax.tree.map(lambda e, w: jnp.where(every, e + (1 - decay) * (w - e), e), state.ema, live)
    take = every | (s >= total_steps)
    live = jax.tree.map(lambda e, w: jnp.where(take, e, w), ema, live)
    return state.replace(params=live["params"], batch_stats=live["batch_stats"], ema=ema)


def init_state(model, input_shape, recipe: Recipe, total_steps: int, steps_per_epoch: int, seed: int = 0,
               whiten_images=None) -> SpeedState:
    """The recipe's first state: `model` initialized from `seed`, its "whiten" kernel fitted to
    `whiten_images` (uint8 NHWC) when the recipe whitens, the lookahead average at the start."""
    variables = run_once(lambda: init_variables(model, input_shape, seed))  # compiled cheaply: runs once
    params = variables["params"]
    if recipe.whiten:
        fit = jax.jit(lambda images: whitening_kernel(
            normalize_images(images), params["whiten"]["kernel"].shape[0], mean=getattr(model, "mean", None),
            std=getattr(model, "std", None)))
        kernel = fit(jnp.asarray(whiten_images))
        params = {**params, "whiten": {**params["whiten"], "kernel": kernel}}
    stats = variables.get("batch_stats", {})
    tx = make_optimizer(recipe, total_steps, steps_per_epoch)
    # its own buffers: the chunk donates the state, and one buffer cannot be donated twice
    ema = jax.tree.map(jnp.copy, {"params": params, "batch_stats": stats}) if recipe.lookahead else None
    return SpeedState.create(apply_fn=model.apply, params=params, tx=tx, batch_stats=stats,
                             rng=jax.random.PRNGKey(seed + 1), ema=ema)
