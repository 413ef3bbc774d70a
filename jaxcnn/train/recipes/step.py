"""The recipes' train step: label-smoothed cross-entropy, summed or averaged over the batch,
mixed precision as the Trainer's, then the lookahead pull when the recipe has one."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcnn.train.metrics import MetricSet
from jaxcnn.train.precision import cast_floats
from jaxcnn.train.recipes.recipe import Recipe
from jaxcnn.train.recipes.state import SpeedState, lookahead


def make_train_step(recipe: Recipe, total_steps: int, compute_dtype=None, metrics=None) -> Callable:
    """`step(state, {"image", "label"}) -> (state, metric sums)`: `loss`, `count` and the sums of
    `metrics` (a MetricSet; default accuracy), as the Trainer's loop adds them."""
    metric_set = metrics if isinstance(metrics, MetricSet) else MetricSet(metrics or ("accuracy",))

    def step(state: SpeedState, batch):
        images, labels = batch["image"], batch["label"]
        if compute_dtype is not None:
            images = images.astype(compute_dtype)

        def loss_fn(params):
            if compute_dtype is not None:
                params = cast_floats(params, compute_dtype)
            logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                             train=True, mutable=["batch_stats"])
            logits = logits.astype(jnp.float32)
            targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), recipe.label_smoothing)
            per_example = optax.softmax_cross_entropy(logits, targets)
            loss = per_example.sum() if recipe.loss_reduction == "sum" else per_example.mean()
            return loss, (logits, per_example, updates["batch_stats"])

        grads, (logits, per_example, stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        state = state.apply_gradients(grads=grads).replace(batch_stats=stats)
        if recipe.lookahead:
            state = lookahead(state, total_steps)
        return state, metric_set.sums(per_example, logits, labels, jnp.ones(labels.shape[0], jnp.float32))

    return step
