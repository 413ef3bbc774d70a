"""A speed record's hyperparameters (`Recipe`) and the two recipes: MNIST_FAST, CIFAR10_FAST."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One speedrun's hyperparameters (learning rates as PyTorch's SGD would take them)."""

    epochs: float
    batch_size: int
    lr: float  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    decay: float = 0.0  # weight decay per step at the peak rate (decoupled: PyTorch's wd * lr)
    bias_lr_scale: float = 1.0  # learning-rate factor of the BatchNorm shifts (not of their decay)
    label_smoothing: float = 0.0
    loss_reduction: str = "mean"  # "sum" over the batch (airbench) or "mean"
    warmup: float = 0.2  # fraction of the steps rising from lr_start * lr to lr
    lr_start: float = 0.1  # fractions of the peak at the first and the last step
    lr_end: float = 0.0
    lookahead: bool = False  # airbench's lookahead: every 5 steps pull the weights to their EMA
    augment: str | None = None  # "flip_translate2": random mirror + shift by up to 2 px (reflect)
    tta: int = 0  # test-time augmentation of the final score: 0 none, 1 mirror, 2 mirror + shift
    whiten: bool = False  # set the model's frozen "whiten" conv from the training patches
    whiten_bias_epochs: float | None = None  # the whitening bias trains only this long
    target: float = 0.99
    eval_batch: int = 1000


MNIST_FAST = Recipe(epochs=3, batch_size=256, lr=0.2, momentum=0.9, label_smoothing=0.1, warmup=0.25,
                    lr_start=0.1, lr_end=0.0, target=0.99)
# airbench94's hyperparameters; its lr 11.5 and decay 0.0153 are per 1024 examples of a summed loss.
_KILOSTEP = 1024 * (1 + 1 / (1 - 0.85))
CIFAR10_FAST = Recipe(epochs=9.9, batch_size=1024, lr=11.5 / _KILOSTEP, momentum=0.85,
                      decay=0.0153 * 1024 / _KILOSTEP, bias_lr_scale=64.0, label_smoothing=0.2,
                      loss_reduction="sum", warmup=0.23, lr_start=0.2, lr_end=0.07, lookahead=True,
                      augment="flip_translate2", tta=2, whiten=True, whiten_bias_epochs=3, target=0.94,
                      eval_batch=500)
RECIPES = {"mnist_fast": MNIST_FAST, "cifar10_fast": CIFAR10_FAST}


def get_recipe(spec) -> Recipe:
    """A Recipe from a name in RECIPES, a Recipe, or a dict {"base": name, **field overrides}."""
    if isinstance(spec, Recipe):
        return spec
    if isinstance(spec, str):
        return RECIPES[spec]
    spec = dict(spec)
    return dataclasses.replace(RECIPES[spec.pop("base")], **spec)
