"""Running a recipe through `Trainer.fit`: the recipe's state and step, the device feed with its
data order and augmentation, and the record callbacks (test score, record clock).

    history, record = fit(trainer, x, y, x_test, y_test, "mnist_fast")
    state, hist = train(get_model("mnist_fast"), x, y, x_test, y_test, MNIST_FAST)   # old form
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Sequence

import jax
import numpy as np

from jaxcnn.train.callbacks import History, RecordClock, TestScore
from jaxcnn.train.feeds.device import DeviceRoad
from jaxcnn.train.loop import Trainer
from jaxcnn.train.recipes.augment import AUGMENTS
from jaxcnn.train.recipes.order import StreamOrder
from jaxcnn.train.recipes.recipe import Recipe, get_recipe
from jaxcnn.train.recipes.state import SpeedState, init_state
from jaxcnn.train.recipes.step import make_train_step


def plan(recipe: Recipe, n: int) -> tuple[int, int]:
    """(steps per epoch, steps in all): whole batches only, a fractional last epoch."""
    steps_per_epoch = n // recipe.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} examples are fewer than one batch of {recipe.batch_size}")
    return steps_per_epoch, max(1, math.ceil(steps_per_epoch * recipe.epochs))


def prepare_state(model, x, recipe: Recipe, seed: int) -> tuple[SpeedState, float]:
    """The recipe's first state and its setup seconds: fitting the whitening layer counts as
    training (as airbench counts it, compile included); nothing else does."""
    steps_per_epoch, total_steps = plan(recipe, len(x))
    t0 = time.perf_counter()
    state = init_state(model, x.shape[1:], recipe, total_steps, steps_per_epoch, seed,
                       whiten_images=x[:5000] if recipe.whiten else None)
    jax.block_until_ready(state)
    return state, (time.perf_counter() - t0 if recipe.whiten else 0.0)


def fit(trainer: Trainer, x, y, x_test, y_test, recipe: Recipe | str | dict, *, verbose: int = 0,
        stop_at_target: bool = False, callbacks: Sequence = (), state: SpeedState | None = None,
        setup_seconds: float = 0.0) -> tuple[History, dict]:
    """Train `trainer`'s model by `recipe` on uint8 NHWC `x` with `Trainer.fit` on the device feed.

    The trainer's seed seeds the initialization, the data order and the augmentation; its
    `compute_dtype` is the precision. `state` (with its `setup_seconds`): a state from
    `prepare_state`, else one is made here. Returns the History (per epoch `seconds`,
    `train_seconds`, `loss`, `accuracy`, `val_accuracy` from integer test counts) and the record
    (`test_accuracy`, `train_seconds_to_target`, `compile_seconds`, ...; RecordClock.record).
    """
    recipe = get_recipe(recipe)
    x, y = np.asarray(x), np.asarray(y, np.int32)
    steps_per_epoch, total_steps = plan(recipe, len(x))
    if state is None:
        state, setup_seconds = prepare_state(trainer.model, x, recipe, trainer.seed)
    metrics, dtype = trainer.metrics, trainer.compute_dtype
    trainer.set_train_step(lambda axis: make_train_step(recipe, total_steps, dtype, metrics), state=state)
    feed = DeviceRoad(trainer, x, y, recipe.batch_size, augment=AUGMENTS[recipe.augment],
                      steps_per_call=steps_per_epoch, order=StreamOrder(len(x), trainer.seed), key_per_epoch=False)
    score = TestScore(x_test, y_test, recipe.eval_batch, recipe.tta)
    clock = RecordClock(score, recipe.target, setup_seconds, stop_at_target)
    history = trainer.fit(x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, road=feed,
                          callbacks=[score, clock, *callbacks], verbose=2 if verbose else 0)
    return history, {**clock.record(), "total_steps": total_steps, "recipe": dataclasses.asdict(recipe)}


def train(model, x, y, x_test, y_test, recipe: Recipe | str | dict, *, seed: int = 0, precision="auto",
          verbose: int = 0, stop_at_target: bool = False) -> tuple[SpeedState, dict]:
    """Train `model` on uint8 NHWC `x` by `recipe`, scoring the test set after each epoch (untimed).

    Returns the final state and a history: per epoch "seconds" (training, this epoch),
    "train_seconds" (cumulative; the last includes the final TTA scoring, as airbench times it),
    "loss"/"accuracy" (training, on augmented batches),
    "val_accuracy" (test, integer counts); plus "test_accuracy" (final, with TTA),
    "train_seconds_to_target" (None when not reached), "compile_seconds".
    """
    recipe = get_recipe(recipe)
    x = np.asarray(x)
    state, setup_seconds = prepare_state(model, x, recipe, seed)
    trainer = Trainer(model, x.shape[1:], seed=seed, compute_dtype=precision, road="device", state=state,
                      compilation_cache=False)
    history, record = fit(trainer, x, y, x_test, y_test, recipe, verbose=verbose, stop_at_target=stop_at_target,
                          state=state, setup_seconds=setup_seconds)
    return trainer.state, {**history.history, **record}
