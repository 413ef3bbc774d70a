"""Extra outputs some tutorials show, by name: `ExperimentConfig.extras = ("filters", ...)`.

EXTRAS maps a name to fn(trainer, dataset, config, workdir) -> dict of extra metrics (or None).
It runs on every process of a multi-host job (evaluate and predict are collective); it writes
files only where `jaxcnn.run.is_writer()` (process 0).
"""

from __future__ import annotations

from typing import Callable

import jax

from jaxcnn import viz
from jaxcnn.data.video import single_frames
from jaxcnn.models import get_model
from jaxcnn.run import RunFolder, is_writer
from jaxcnn.train import Trainer

EXTRAS: dict[str, Callable] = {}


def register_extra(name: str):
    """Decorator: register fn(trainer, dataset, config, workdir) under `name` in EXTRAS."""

    def wrap(fn):
        EXTRAS[name] = fn
        return fn

    return wrap


@register_extra("filters")
def _filters(trainer, ds, config, workdir):
    """filters.png: the first conv layer's first 6 filters, min-max normalized, gray (tutorial C)."""
    params = jax.device_get(trainer.state.params)
    first = next(k for k in params if "conv" in k)
    if is_writer():
        viz.plot_filters(params[first]["kernel"], RunFolder(workdir).filters_png, count=6)


@register_extra("samples")
def _samples(trainer, ds, config, workdir):
    """samples.png: training images with their class name and index (tutorial D)."""
    if is_writer():
        viz.plot_samples(ds.x_train[:32], ds.y_train[:32], ds.class_names, RunFolder(workdir).samples_png)


@register_extra("frame_baseline")
def _frame_baseline(trainer, ds, config, workdir):
    """Train a frame-only classifier on one random frame per clip: it shows no frame tells the class."""
    x_train, x_test = single_frames(ds.x_train, config.seed), single_frames(ds.x_test, config.seed + 1)
    baseline = Trainer(get_model("frame_baseline", num_classes=ds.num_classes), x_train.shape[1:],
                       loss=config.loss, optimizer=config.optimizer, seed=config.seed, strategy=config.strategy)
    baseline.fit(x_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size, verbose=0)
    test = baseline.evaluate(x_test, ds.y_test)
    return {"frame_baseline_test_accuracy": test["accuracy"], "frame_baseline_test_loss": test["loss"],
            "chance_accuracy": 1.0 / ds.num_classes}
