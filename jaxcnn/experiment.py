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
import warnings
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
    road: str = "auto"  # input road: auto | pipeline | device (jaxcnn.train.ondevice)
    precision: str = "auto"  # compute dtype: auto (bf16 on GPU/TPU, f32 on CPU) | bf16 | f32
    data_dir: str | None = None
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)
    train_limit: int | None = None  # first N training examples: tiny smoke runs
    test_limit: int | None = None
    resize: tuple | None = None  # (height, width): resize images after the limits are taken
    strategy: str | None = None  # device strategy, see jaxcnn.parallel
    # Checkpoints in workdir/checkpoints (jaxcnn.checkpoint): at each epoch end, plus every N steps
    # when set; the last `checkpoint_keep` are kept and the best by `checkpoint_best`.
    checkpoint_every_steps: int | None = None
    checkpoint_keep: int = 3
    checkpoint_best: str | None = "val_accuracy"
    checkpoint_best_mode: str = "max"
    extras: tuple = ()  # names in EXTRAS: extra figures an experiment writes
    reported: dict = dataclasses.field(default_factory=dict)
    description: str = ""
    # Transfer learning (jaxcnn.transfer): a folder written by `jaxcnn convert-weights` for the
    # model's `base`; the param prefixes that train (None: all); an optional second phase
    # {"trainable": prefixes, "learning_rate": lr, "epochs": n} that unfreezes more blocks.
    pretrained: str | None = None
    trainable: tuple | None = None
    finetune: dict | None = None
    # Named sets of field changes, chosen with --variant (e.g. the transfer heads a, b, c).
    variants: dict = dataclasses.field(default_factory=dict)


# name -> fn(trainer, dataset, config, workdir) -> dict of extra metrics (or None): extra outputs
# some tutorials show. It runs on every process of a multi-host job (evaluate and predict are
# collective); it writes files only where jax.process_index() == 0.
EXTRAS: dict[str, Callable] = {}


def register_extra(name: str):
    def wrap(fn):
        EXTRAS[name] = fn
        return fn

    return wrap


def _is_writer() -> bool:
    import jax

    return jax.process_index() == 0


@register_extra("filters")
def _filters(trainer, ds, config, workdir):
    """filters.png: the first conv layer's first 6 filters, min-max normalized, gray (tutorial C)."""
    import jax

    from jaxcnn import viz

    params = jax.device_get(trainer.state.params)
    first = next(k for k in params if "conv" in k)
    if _is_writer():
        viz.plot_filters(params[first]["kernel"], os.path.join(workdir, "filters.png"), count=6)


@register_extra("samples")
def _samples(trainer, ds, config, workdir):
    """samples.png: training images with their class name and index (tutorial D)."""
    from jaxcnn import viz

    if _is_writer():
        viz.plot_samples(ds.x_train[:32], ds.y_train[:32], ds.class_names, os.path.join(workdir, "samples.png"))


@register_extra("frame_baseline")
def _frame_baseline(trainer, ds, config, workdir):
    """Train a frame-only classifier on one random frame per clip: it shows no frame tells the class."""
    from jaxcnn.data.video import single_frames
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer

    x_train, x_test = single_frames(ds.x_train, config.seed), single_frames(ds.x_test, config.seed + 1)
    baseline = Trainer(get_model("frame_baseline", num_classes=ds.num_classes), x_train.shape[1:],
                       loss=config.loss, optimizer=config.optimizer, seed=config.seed, strategy=config.strategy)
    baseline.fit(x_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size, verbose=0)
    test = baseline.evaluate(x_test, ds.y_test)
    return {"frame_baseline_test_accuracy": test["accuracy"], "frame_baseline_test_loss": test["loss"],
            "chance_accuracy": 1.0 / ds.num_classes}


def load_data(config: ExperimentConfig):
    from jaxcnn.data import load_dataset

    ds = load_dataset(config.dataset, data_dir=config.data_dir, **config.dataset_kwargs)
    if config.train_limit or config.test_limit:
        ds = ds.take(config.train_limit, config.test_limit)
    if config.resize:
        from jaxcnn.data.image_folder import resize_images

        ds = dataclasses.replace(ds, x_train=resize_images(ds.x_train, config.resize),
                                 x_test=resize_images(ds.x_test, config.resize))
    return ds


def model_kwargs(config: ExperimentConfig, num_classes: int) -> dict:
    """The model constructor's keyword arguments: the config's, plus the dataset's class count."""
    kwargs = dict(config.model_kwargs)
    if config.loss != "binary_crossentropy":
        kwargs.setdefault("num_classes", num_classes)
    return kwargs


def model_card(config: ExperimentConfig, ds):
    """What inference needs (model.json, see jaxcnn.model_card): model, input, scaling, classes."""
    from jaxcnn.model_card import make_card

    return make_card(model=config.model, model_kwargs=model_kwargs(config, ds.num_classes),
                     input_shape=ds.input_shape, input_dtype=ds.x_train.dtype, class_names=ds.class_names,
                     loss=config.loss, dataset=config.dataset, experiment=config.name)


def build_trainer(config: ExperimentConfig, input_shape, num_classes: int, variables=None,
                  trainable=None, learning_rate=None):
    """The config's model and optimizer in a Trainer; `variables` and `trainable` for transfer."""
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer, get_optimizer

    model = get_model(config.model, **model_kwargs(config, num_classes))
    tx = get_optimizer(config.optimizer, learning_rate or config.learning_rate)
    if trainable is not None:
        from jaxcnn.transfer import make_transfer_optimizer

        tx = make_transfer_optimizer(tx, trainable=trainable)
    if variables is None and config.pretrained:
        from jaxcnn.transfer import init_with_pretrained_base

        variables = init_with_pretrained_base(model, input_shape, config.pretrained, config.seed)
    elif variables is None and config.trainable is not None:
        warnings.warn(f"{config.name}: no pretrained weights given (--weights PATH): the base starts "
                      "from random initialization, so this run does not measure transfer learning",
                      stacklevel=2)
    variables = variables or {}
    return Trainer(model, input_shape, loss=config.loss, optimizer=tx, seed=config.seed,
                   params=variables.get("params"), batch_stats=variables.get("batch_stats"),
                   strategy=config.strategy, compute_dtype=config.precision, road=config.road)


def _augment_fn(spec):
    if spec in (None, "", "none"):
        return None
    from jaxcnn.data.augment import make_tf_augment, parse_augment

    return make_tf_augment(parse_augment(spec))


def _augment_kwargs(config: ExperimentConfig, trainer, x) -> dict:
    """fit's augmentation for the road it will take: tf.data ops on the pipeline, JAX on the device."""
    if config.augment in (None, "", "none"):
        return {}
    from jaxcnn.train import ondevice

    road = ondevice.choose_road(config.road, nbytes=x.nbytes, strategy=trainer.strategy)
    if road == "device":
        from jaxcnn.data.augment import make_jax_augment, parse_augment

        return {"device_augment": make_jax_augment(parse_augment(config.augment))}
    return {"augment": _augment_fn(config.augment)}


def train_and_evaluate(config: ExperimentConfig, workdir: str, verbose: int = 1) -> dict:
    """Train `config` on its dataset, evaluate on the test split, write results into `workdir`.

    Writes model.json (what inference needs, jaxcnn.model_card), history.json, metrics.json
    (test loss/accuracy, per-class metrics and the confusion matrix, seconds per epoch, device,
    the tutorial's numbers), curves.png, confusion.png, errors.png and the final parameters
    (Orbax, `workdir/params`).
    Checkpoints go to `workdir/checkpoints`; rerunning with the same workdir resumes from the
    newest one (mid-epoch included). On SIGTERM it saves and raises `checkpoint.Preempted`.
    """
    import jax

    from jaxcnn import checkpoint, viz

    os.makedirs(workdir, exist_ok=True)
    ds = load_data(config)
    if jax.process_index() == 0:
        from jaxcnn.model_card import write_card

        write_card(workdir, model_card(config, ds))
    trainer = build_trainer(config, ds.input_shape, ds.num_classes, trainable=config.trainable)
    validation = (ds.x_test, ds.y_test) if config.validate_on_test and not config.validation_split else None
    ckpt = _checkpoint_callback(config, os.path.join(workdir, "checkpoints"), verbose)
    t0 = time.perf_counter()
    history = trainer.fit(ds.x_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size,
                          validation_split=config.validation_split, validation_data=validation,
                          verbose=verbose, callbacks=[ckpt], **_augment_kwargs(config, trainer, ds.x_train))
    if config.finetune:
        trainer, history = _finetune(config, trainer, ds, workdir, validation, verbose)
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
        "road": getattr(trainer, "road", None),  # "device" or "pipeline" (Trainer.fit's road)
        "device": f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind} x{jax.device_count()}",
        "host": platform.node(),
        "jax_version": jax.__version__,
        "reported": config.reported,
        "resumed_from_step": ckpt.resumed_from,
        "pretrained": config.pretrained,
        "finetune": config.finetune,
        "best_checkpoint": ckpt.best,  # {"step", "epoch", "value", "metric"}: load_weights(step="best")
    }
    for name in config.extras:
        metrics.update(EXTRAS[name](trainer, ds, config, workdir) or {})
    metrics.update(_evaluation_report(trainer, ds, config, workdir))
    if jax.process_index() == 0:
        _write_json(os.path.join(workdir, "history.json"), history)
        _write_json(os.path.join(workdir, "metrics.json"), metrics)
        viz.plot_history(history, os.path.join(workdir, "curves.png"), title=config.name)
    # Every process calls this: Orbax synchronizes the hosts and writes the replicated params
    # once (primary host).
    checkpoint.save_params(os.path.join(workdir, "params"), trainer.state.params,
                           trainer.state.batch_stats)
    if verbose and jax.process_index() == 0:
        print(f"{config.name}: test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}"
              f" (tutorial: {config.reported or 'not reported'}); results in {workdir}", file=sys.stderr)
    return metrics


def _evaluation_report(trainer, ds, config, workdir) -> dict:
    """Per-class metrics and the confusion matrix; confusion.png and errors.png (jaxcnn.report)."""
    from jaxcnn import report

    probs = report.class_probabilities(trainer.predict(ds.x_test, batch_size=max(config.batch_size, 256)),
                                       config.loss)
    return report.write_report(workdir, probs, ds.y_test, ds.x_test, ds.class_names, title=config.name,
                               write=_is_writer())


def _checkpoint_callback(config: ExperimentConfig, directory: str, verbose: int):
    """The config's checkpoint policy (every N steps, keep K, best by a metric) in `directory`."""
    from jaxcnn import checkpoint

    return checkpoint.CheckpointCallback(
        directory, every_n_steps=config.checkpoint_every_steps, max_to_keep=config.checkpoint_keep,
        best_metric=config.checkpoint_best, best_mode=config.checkpoint_best_mode, verbose=bool(verbose))


def _finetune(config, trainer, ds, workdir, validation, verbose):
    """Second phase: unfreeze `config.finetune["trainable"]` and train on at a low learning rate.

    Checkpoints of this phase go to `workdir/checkpoints_finetune`; the history continues.
    """
    phase = config.finetune
    tuned = build_trainer(config, ds.input_shape, ds.num_classes,
                          variables={"params": trainer.state.params, "batch_stats": trainer.state.batch_stats},
                          trainable=phase.get("trainable"), learning_rate=phase.get("learning_rate"))
    tuned.history = {k: list(v) for k, v in trainer.history.items()}
    ckpt = _checkpoint_callback(config, os.path.join(workdir, "checkpoints_finetune"), verbose)
    history = tuned.fit(ds.x_train, ds.y_train, epochs=phase.get("epochs", 1), batch_size=config.batch_size,
                        validation_split=config.validation_split, validation_data=validation,
                        verbose=verbose, callbacks=[ckpt], **_augment_kwargs(config, tuned, ds.x_train))
    return tuned, history


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
    parser.add_argument("--road", choices=("auto", "pipeline", "device"),
                        help="input road: per-step pipeline, data on the device, or auto (default)")
    parser.add_argument("--precision", choices=("auto", "bf16", "f32"),
                        help="compute dtype (params stay float32); auto: bf16 on GPU/TPU, f32 on CPU")
    parser.add_argument("--seed", type=int, help="override the seed")
    parser.add_argument("--augment", help="augmentation recipe (A, B, none) or key=value,... parameters")
    parser.add_argument("--limit", type=int, help="use only the first N train and test examples (smoke runs)")
    parser.add_argument("--strategy", help="device strategy: jit (default) or pmap")
    parser.add_argument("--checkpoint-every", type=int, metavar="N",
                        help="also checkpoint every N steps (default: at epoch ends only)")
    parser.add_argument("--weights", help="pretrained base: a folder written by `jaxcnn convert-weights`")
    parser.add_argument("--variant", help="a named variant of the recipe (see the experiment's variants)")
    parser.add_argument("--fake-devices", type=int, metavar="K",
                        help="run on K fake CPU devices (rehearse multi-device runs on one CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def apply_flags(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    variant = getattr(args, "variant", None)
    if variant:
        if variant not in config.variants:
            raise SystemExit(f"{config.name}: unknown variant {variant!r}; known: {', '.join(config.variants) or 'none'}")
        config = dataclasses.replace(config, **config.variants[variant])
    changes = {}
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("data_dir", "data_dir"),
                        ("seed", "seed"), ("augment", "augment"), ("strategy", "strategy"),
                        ("checkpoint_every", "checkpoint_every_steps"), ("weights", "pretrained")):
        value = getattr(args, flag, None)
        if value is not None:
            changes[field] = value
    if getattr(args, "limit", None):
        changes["train_limit"] = changes["test_limit"] = args.limit
    for field in ("road", "precision"):
        if getattr(args, field, None) is not None:
            changes[field] = getattr(args, field)
    return dataclasses.replace(config, **changes)


def main(config: ExperimentConfig, argv=None) -> dict:
    """Command-line entry for one experiment file: parse the flags, then train and evaluate."""
    parser = argparse.ArgumentParser(prog=f"experiment {config.name}", description=config.description)
    add_flags(parser)
    args = parser.parse_args(argv)
    from jaxcnn.parallel import setup

    setup(fake_devices=args.fake_devices)  # fake devices, multi-host start-up (before JAX starts)
    config = apply_flags(config, args)
    from jaxcnn.checkpoint import Preempted

    try:
        return train_and_evaluate(config, args.workdir or os.path.join("runs", config.name),
                                  verbose=0 if args.quiet else 1)
    except Preempted as e:  # the checkpoint is written; the message is on stderr
        raise SystemExit(e.exit_code) from None
