"""Experiments as data: a config plus `train_and_evaluate(config, workdir)` (Flax examples' shape).

An experiment file holds `get_config()` and nothing else of substance; every step it takes is an
importable function here, so users can run the same recipe from their own code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass
class ExperimentConfig:
    """One tutorial recipe. `reported` holds the tutorial's own numbers, shown beside ours."""

    name: str
    model: str
    dataset: str = "mnist"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    loss: str = "sparse_categorical_crossentropy"
    optimizer: str = "adam"
    learning_rate: float | None = None
    epochs: int = 5
    batch_size: int = 32
    validation_split: float | None = None
    validate_on_test: bool = True  # the tutorials pass validation_data=(x_test, y_test)
    augment: Any = None  # a recipe name ("A", "B") or parameters, see jaxcnn.data.augment
    seed: int = 0
    data_dir: str | None = None
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)
    train_limit: int | None = None  # first N training examples: tiny smoke runs
    test_limit: int | None = None
    strategy: str | None = None  # device strategy, see jaxcnn.parallel
    extras: tuple = ()  # names in EXTRAS: extra figures an experiment writes
    reported: dict = dataclasses.field(default_factory=dict)
    description: str = ""


# name -> fn(trainer, dataset, config, workdir): extra outputs some tutorials show. It runs on
# every process of a multi-host job; write files only where jax.process_index() == 0.
EXTRAS: dict[str, Callable] = {}


def register_extra(name: str):
    def wrap(fn):
        EXTRAS[name] = fn
        return fn

    return wrap


def load_data(config: ExperimentConfig):
    from jaxcnn.data import load_dataset

    ds = load_dataset(config.dataset, data_dir=config.data_dir, **config.dataset_kwargs)
    if config.train_limit or config.test_limit:
        ds = ds.take(config.train_limit, config.test_limit)
    return ds


def build_trainer(config: ExperimentConfig, input_shape, num_classes: int):
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer

    kwargs = dict(config.model_kwargs)
    if config.loss != "binary_crossentropy":
        kwargs.setdefault("num_classes", num_classes)
    model = get_model(config.model, **kwargs)
    return Trainer(model, input_shape, loss=config.loss, optimizer=config.optimizer,
                   learning_rate=config.learning_rate, seed=config.seed, strategy=config.strategy)


def _augment_fn(spec):
    if spec in (None, "", "none"):
        return None
    from jaxcnn.data.augment import make_tf_augment, parse_augment

    return make_tf_augment(parse_augment(spec))


def train_and_evaluate(config: ExperimentConfig, workdir: str, verbose: int = 1) -> dict:
    """Train `config` on its dataset, evaluate on the test split, write results into `workdir`.

    Writes history.json, metrics.json (test loss/accuracy, seconds per epoch, device, the
    tutorial's numbers), curves.png and the final parameters (Orbax, `workdir/params`).
    """
    import jax

    from jaxcnn import checkpoint, viz

    os.makedirs(workdir, exist_ok=True)
    ds = load_data(config)
    trainer = build_trainer(config, ds.input_shape, ds.num_classes)
    validation = (ds.x_test, ds.y_test) if config.validate_on_test and not config.validation_split else None
    t0 = time.perf_counter()
    history = trainer.fit(ds.x_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size,
                          validation_split=config.validation_split, validation_data=validation,
                          augment=_augment_fn(config.augment), verbose=verbose)
    train_seconds = time.perf_counter() - t0
    test = trainer.evaluate(ds.x_test, ds.y_test, batch_size=max(config.batch_size, 256))
    metrics = {
        "experiment": config.name,
        "model": config.model,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "train_examples": int(len(ds.x_train)),
        "test_examples": int(len(ds.x_test)),
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "seconds_per_epoch": float(np.mean(history["seconds"])) if history.get("seconds") else None,
        # The first epoch includes compilation; the later ones are the steady speed.
        "seconds_per_epoch_after_first": (float(np.mean(history["seconds"][1:]))
                                          if len(history.get("seconds", [])) > 1 else None),
        "train_seconds": train_seconds,
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind} x{jax.device_count()}",
        "host": platform.node(),
        "jax_version": jax.__version__,
        "reported": config.reported,
    }
    if jax.process_index() == 0:
        _write_json(os.path.join(workdir, "history.json"), history)
        _write_json(os.path.join(workdir, "metrics.json"), metrics)
        viz.plot_history(history, os.path.join(workdir, "curves.png"), title=config.name)
    # Every process calls these: Orbax synchronizes the hosts and writes the replicated params
    # once (primary host); extras may evaluate/predict, which are collective across hosts.
    checkpoint.save_params(os.path.join(workdir, "params"), trainer.state.params,
                           trainer.state.batch_stats)
    for name in config.extras:
        EXTRAS[name](trainer, ds, config, workdir)
    if verbose and jax.process_index() == 0:
        print(f"{config.name}: test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}"
              f" (tutorial: {config.reported or 'not reported'}); results in {workdir}", file=sys.stderr)
    return metrics


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=float)
    os.replace(tmp, path)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every experiment takes (`jaxcnn train NAME ...`, `python -m experiments.NAME ...`)."""
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, help="override the recipe's (global) batch size")
    parser.add_argument("--data-dir", help="folder holding the datasets (default: $JAXCNN_DATA_DIR)")
    parser.add_argument("--workdir", help="where results go (default: runs/NAME)")
    parser.add_argument("--seed", type=int, help="override the seed")
    parser.add_argument("--augment", help="augmentation recipe (A, B, none) or key=value,... parameters")
    parser.add_argument("--limit", type=int, help="use only the first N train and test examples (smoke runs)")
    parser.add_argument("--strategy", help="device strategy: jit (default) or pmap")
    parser.add_argument("--fake-devices", type=int, metavar="K",
                        help="run on K fake CPU devices (rehearse multi-device runs on one CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def apply_flags(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    changes = {}
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("data_dir", "data_dir"),
                        ("seed", "seed"), ("augment", "augment"), ("strategy", "strategy")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[field] = value
    if getattr(args, "limit", None):
        changes["train_limit"] = changes["test_limit"] = args.limit
    return dataclasses.replace(config, **changes)


def main(config: ExperimentConfig, argv=None) -> dict:
    """Command-line entry for one experiment file: parse the flags, then train and evaluate."""
    parser = argparse.ArgumentParser(prog=f"experiment {config.name}", description=config.description)
    add_flags(parser)
    args = parser.parse_args(argv)
    from jaxcnn.parallel import setup

    setup(fake_devices=args.fake_devices)  # fake devices, multi-host start-up (before JAX starts)
    config = apply_flags(config, args)
    return train_and_evaluate(config, args.workdir or os.path.join("runs", config.name),
                              verbose=0 if args.quiet else 1)
