"""The recipes' optimizer: PyTorch's SGD exactly (coupled weight decay, Nesterov as `g + m * buf`)
per parameter group, under a triangular per-step learning rate, so the PyTorch peers in
benchmarks/ run the same math."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxcnn.train.recipes.recipe import Recipe


def lr_factor(step, total_steps: int, recipe: Recipe):
    """Triangular schedule: lr_start -> 1 over `warmup` of the steps, then down to lr_end."""
    warm = max(1, int(total_steps * recipe.warmup))
    step = jnp.asarray(step, jnp.float32)
    up = recipe.lr_start + (1 - recipe.lr_start) * step / warm
    down = 1 + (recipe.lr_end - 1) * (step - warm) / max(1, total_steps - warm)
    return jnp.where(step < warm, up, down)


def param_groups(params) -> Any:
    """'frozen' (the whitening kernel), 'whiten_bias', 'shift' (BatchNorm shifts) or 'other'."""

    def label(path, _):
        names = [str(getattr(k, "key", k)) for k in path]
        if names[0] == "whiten":
            return "frozen" if names[-1] == "kernel" else "whiten_bias"
        return "shift" if any(n.startswith("norm") for n in names) else "other"

    return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(recipe: Recipe, total_steps: int, steps_per_epoch: int) -> optax.GradientTransformation:
    """PyTorch SGD per group: grad + (decay / lr_group) * param, momentum, Nesterov; lr scheduled."""

    def sgd(scale, gate_steps=None):
        lr = recipe.lr * scale

        def schedule(step):
            factor = lr * lr_factor(step, total_steps, recipe)
            return factor if gate_steps is None else jnp.where(step < gate_steps, factor, 0.0)

        decay = optax.add_decayed_weights(recipe.decay / lr) if recipe.decay else optax.identity()
        return optax.chain(decay, optax.sgd(schedule, momentum=recipe.momentum or None, nesterov=recipe.nesterov))

    gate = None if recipe.whiten_bias_epochs is None else int(recipe.whiten_bias_epochs * steps_per_epoch)
    return optax.multi_transform({"other": sgd(1.0), "shift": sgd(recipe.bias_lr_scale),
                                  "whiten_bias": sgd(1.0, gate), "frozen": optax.set_to_zero()}, param_groups)
