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

from jaxcnn import config_flags
from jaxcnn.config_flags import positive_int
from jaxcnn.errors import UsageError, debug_requested, guard


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
    train_limit: int | None = None  # N training examples spread over the classes: smoke runs
    test_limit: int | None = None
    resize: tuple | None = None  # (height, width): resize images after the limits are taken
    strategy: str | None = None  # device strategy, see jaxcnn.parallel
    # Checkpoints in workdir/checkpoints (jaxcnn.checkpoint): at each epoch end, plus every N steps
    # when set; the last `checkpoint_keep` are kept and the best by `checkpoint_best`.
    checkpoint_every_steps: int | None = None
    checkpoint_keep: int = 3
    checkpoint_best: str | None = "val_accuracy"
    checkpoint_best_mode: str = "max"
    # Training extras (jaxcnn.train): metrics by name; {class: weight}; a learning-rate schedule
    # (cosine | exponential[:RATE] | piecewise:E=F,... with ,warmup=EPOCHS; see make_schedule);
    # early stopping on `early_stopping_monitor` after this many epochs without improvement
    # (the best epoch's weights are kept); TensorBoard event files in workdir/tensorboard.
    metrics: tuple = ("accuracy",)
    class_weight: dict | None = None
    lr_schedule: str | None = None
    early_stopping_patience: int | None = None
    early_stopping_monitor: str = "val_loss"
    tensorboard: bool = True
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
    # A jaxcnn.speedrun recipe (name, or {"base": name, **overrides}): train with it instead of
    # Trainer.fit (config.epochs and batch_size override the recipe's; no checkpoints).
    speedrun: Any = None


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


def data_source(config: ExperimentConfig) -> str:
    """Where the data comes from: the config's data_dir, $JAXCNN_DATA_DIR, or "bundled" (MNIST only)."""
    from jaxcnn.data.sources import DATA_DIR_ENV

    return config.data_dir or os.environ.get(DATA_DIR_ENV) or "bundled"


def load_data(config: ExperimentConfig):
    from jaxcnn.data import load_dataset
    from jaxcnn.data.sources import DATA_DIR_ENV

    if data_source(config) == "bundled" and config.dataset == "mnist" and _is_writer():
        print(f"{config.name}: no data directory given (--data-dir, ${DATA_DIR_ENV}): "
              "using the MNIST copy bundled with jaxcnn", file=sys.stderr)
    prepared = config.dataset.startswith("prepared:")
    # A prepared folder was decoded and resized by `jaxcnn prepare`: the recipe's loader options
    # (image_size, classes, ...) were the original loader's.
    ds = load_dataset(config.dataset, data_dir=config.data_dir, **({} if prepared else config.dataset_kwargs))
    if config.train_limit or config.test_limit:
        ds = ds.take(config.train_limit, config.test_limit)
    if config.resize and prepared:
        raise UsageError(f"{config.dataset}: a prepared dataset is not resized while training; "
                         f"prepare it with --image-size {config.resize[0]} {config.resize[1]}")
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
                  trainable=None, learning_rate=None, steps_per_epoch: int | None = None,
                  epochs: int | None = None):
    """The config's model and optimizer in a Trainer; `variables` and `trainable` for transfer.

    With `config.lr_schedule` the learning rate follows that schedule over `epochs` epochs of
    `steps_per_epoch` steps (see jaxcnn.train.optim.make_schedule).
    """
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer, get_optimizer
    from jaxcnn.train.optim import default_learning_rate, make_schedule

    model = get_model(config.model, **model_kwargs(config, num_classes))
    lr = learning_rate or config.learning_rate or default_learning_rate(config.optimizer)
    if config.lr_schedule and config.lr_schedule != "constant":
        if not steps_per_epoch:
            raise ValueError("a learning-rate schedule needs the steps per epoch")
        lr = make_schedule(config.lr_schedule, lr, steps_per_epoch=steps_per_epoch,
                           epochs=epochs or config.epochs)

    def tx(lr):  # a factory: the Trainer knows (and logs, and may change) the learning rate
        opt = get_optimizer(config.optimizer, lr)
        if trainable is not None:
            from jaxcnn.transfer import make_transfer_optimizer

            opt = make_transfer_optimizer(opt, trainable=trainable)
        return opt

    if variables is None and config.pretrained:
        from jaxcnn.transfer import init_with_pretrained_base

        variables = init_with_pretrained_base(model, input_shape, config.pretrained, config.seed)
    elif variables is None and config.trainable is not None:
        warnings.warn(f"{config.name}: no pretrained weights given (--weights PATH): the base starts "
                      "from random initialization, so this run does not measure transfer learning",
                      stacklevel=2)
    variables = variables or {}
    return Trainer(model, input_shape, loss=config.loss, optimizer=tx, learning_rate=lr, seed=config.seed,
                   params=variables.get("params"), batch_stats=variables.get("batch_stats"),
                   strategy=config.strategy, compute_dtype=config.precision, road=config.road,
                   metrics=config.metrics)


def train_and_evaluate(config: ExperimentConfig, workdir: str, verbose: int | str = "auto",
                       fresh: bool = False) -> dict:
    """Train `config` on its dataset, evaluate on the test split, write results into `workdir`.

    Writes model.json (what inference needs, jaxcnn.model_card), history.json, metrics.json
    (test loss/accuracy, per-class metrics and the confusion matrix, seconds per epoch, device,
    the tutorial's numbers), curves.png, confusion.png, errors.png and the final parameters
    (Orbax, `workdir/params`).
    Checkpoints go to `workdir/checkpoints`; rerunning with the same workdir resumes from the
    newest one (mid-epoch included). On SIGTERM it saves and raises `checkpoint.Preempted`.
    The config is checked and held against the one recorded in `workdir/config.json` first
    (`prepare_workdir`; `fresh` moves a previous run aside), before any data is read.
    """
    import jax

    from jaxcnn import checkpoint, viz

    validate_config(config)
    prepare_workdir(config, workdir, fresh=fresh)
    ds = load_data(config)
    if jax.process_index() == 0:
        from jaxcnn.model_card import write_card

        write_card(workdir, model_card(config, ds))
    steps = _steps_per_epoch(config, len(ds.x_train))
    trainer = build_trainer(config, ds.input_shape, ds.num_classes, trainable=config.trainable,
                            steps_per_epoch=steps)
    validation = (ds.x_test, ds.y_test) if config.validate_on_test and not config.validation_split else None
    ckpt = _checkpoint_callback(config, os.path.join(workdir, "checkpoints"), verbose)
    t0 = time.perf_counter()
    if config.speedrun is not None:
        history, extra = _speedrun(config, trainer, ds, verbose)
    else:
        extra = {}
        history = trainer.fit(ds.x_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size,
                              validation_split=config.validation_split, validation_data=validation,
                              verbose=verbose,
                              callbacks=[ckpt, _progress_recorder(workdir), *_callbacks(config, workdir)],
                              augment=config.augment, class_weight=config.class_weight)
    if config.finetune:
        trainer, history = _finetune(config, trainer, ds, workdir, validation, verbose)
    train_seconds = time.perf_counter() - t0
    test = trainer.evaluate(ds.x_test, ds.y_test, batch_size=max(config.batch_size, 256))
    metrics = {
        "experiment": config.name,
        "model": config.model,
        "dataset": config.dataset,
        "data_dir": data_source(config),
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
        **extra,
    }
    for name in config.extras:
        metrics.update(EXTRAS[name](trainer, ds, config, workdir) or {})
    metrics.update(_evaluation_report(trainer, ds, config, workdir))
    if jax.process_index() == 0:
        _write_json(os.path.join(workdir, "history.json"), dict(history))
        _write_json(os.path.join(workdir, "metrics.json"), metrics)
        viz.plot_history(history, os.path.join(workdir, "curves.png"), title=config.name)
    # Every process calls this: Orbax synchronizes the hosts and writes the replicated params
    # once (primary host).
    checkpoint.save_params(os.path.join(workdir, "params"), trainer.state.params,
                           trainer.state.batch_stats)
    if jax.process_index() == 0:  # the result line, also under --quiet (verbose=0)
        from jaxcnn.train.callbacks import ensure_log_handler, logger

        ensure_log_handler()
        logger.info("%s: test loss %.4f, test accuracy %.4f (tutorial: %s); results in %s", config.name,
                    test["loss"], test["accuracy"], config.reported or "not reported", workdir)
    return metrics


def _evaluation_report(trainer, ds, config, workdir) -> dict:
    """Per-class metrics and the confusion matrix; confusion.png and errors.png (jaxcnn.report)."""
    from jaxcnn import report

    probs = report.class_probabilities(trainer.predict(ds.x_test, batch_size=max(config.batch_size, 256)),
                                       config.loss)
    return report.write_report(workdir, probs, ds.y_test, ds.x_test, ds.class_names, title=config.name,
                               write=_is_writer())


def _speedrun(config: ExperimentConfig, trainer, ds, verbose: int):
    """Train `trainer`'s model with the config's jaxcnn.speedrun recipe; (history, extra metrics)."""
    from jaxcnn import speedrun

    recipe = dataclasses.replace(speedrun.get_recipe(config.speedrun), epochs=config.epochs,
                                 batch_size=min(config.batch_size, len(ds.x_train)))
    state, hist = speedrun.train(trainer.model, ds.x_train, ds.y_train, ds.x_test, ds.y_test, recipe,
                                 seed=config.seed, precision=config.precision, verbose=verbose)
    trainer.state, trainer.road = state, "device"
    history = {k: v for k, v in hist.items() if isinstance(v, list)}
    trainer.history = history
    extra = {k: hist[k] for k in ("train_seconds_to_target", "target", "compile_seconds", "recipe")}
    return history, {f"speedrun_{k}" if k != "recipe" else "speedrun": v for k, v in extra.items()}


def _steps_per_epoch(config: ExperimentConfig, n_train: int) -> int:
    n = int(n_train * (1.0 - config.validation_split)) if config.validation_split else n_train
    return max(1, n // config.batch_size)


def _callbacks(config: ExperimentConfig, workdir: str, phase: str = "") -> list:
    """The config's callbacks besides checkpoints: early stopping, TensorBoard."""
    from jaxcnn.train import EarlyStopping
    from jaxcnn.train.tensorboard import TensorBoard

    out = []
    if config.early_stopping_patience is not None:
        out.append(EarlyStopping(config.early_stopping_monitor, patience=config.early_stopping_patience,
                                 restore_best_weights=True))
    if config.tensorboard:
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None:
            warnings.warn("no TensorBoard logs: the `tensorboard` package is not installed", stacklevel=2)
        else:
            out.append(TensorBoard(os.path.join(workdir, "tensorboard" + phase)))
    return out


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
                          trainable=phase.get("trainable"), learning_rate=phase.get("learning_rate"),
                          steps_per_epoch=_steps_per_epoch(config, len(ds.x_train)), epochs=phase.get("epochs", 1))
    ckpt = _checkpoint_callback(config, os.path.join(workdir, "checkpoints_finetune"), verbose)
    history = tuned.fit(ds.x_train, ds.y_train, epochs=phase.get("epochs", 1), batch_size=config.batch_size,
                        validation_split=config.validation_split, validation_data=validation,
                        verbose=verbose, callbacks=[ckpt, *_callbacks(config, workdir, "_finetune")],
                        augment=config.augment, class_weight=config.class_weight)
    first = trainer.history
    return tuned, {k: list(first.get(k, [])) + list(history.get(k, [])) for k in dict.fromkeys([*first, *history])}


def strict_json(obj, path: str = "") -> tuple[Any, list[str]]:
    """`obj` as plain JSON types with NaN/inf replaced by None, and the paths of those replaced."""
    replaced: list[str] = []

    def walk(v, where):
        if isinstance(v, dict):
            return {str(k): walk(x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, (bool, np.bool_)):
            return bool(v)
        if isinstance(v, (int, np.integer)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            if not np.isfinite(v):
                replaced.append(where)
                return None
            return float(v)
        if hasattr(v, "__array__"):  # numpy / jax arrays
            return walk(np.asarray(v).tolist(), where)
        return v if v is None or isinstance(v, str) else str(v)

    return walk(obj, path), replaced


def _write_json(path, obj):
    """Strict JSON (no NaN/Infinity): non-finite numbers become null and are listed under
    `non_finite` (e.g. `["test_loss", "loss[2]"]`)."""
    clean, replaced = strict_json(obj)
    if replaced and isinstance(clean, dict):
        clean["non_finite"] = replaced
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(clean, f, indent=2, allow_nan=False)
    os.replace(tmp, path)


# -- the workdir: checked first, configuration recorded -------------------------------------------
CONFIG_FILE = "config.json"
# Fields a rerun may change without changing what the run computes (besides a longer --epochs).
RERUN_FREE_FIELDS = ("description", "reported", "data_dir", "checkpoint_every_steps", "checkpoint_keep")


def check_workdir(workdir: str) -> None:
    """UsageError now, before any data is read, when `workdir` cannot hold the run's results."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{workdir}: the workdir exists and is not a directory (pass another --workdir)")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".jaxcnn-write-test-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"{workdir}: the workdir cannot be written ({e.strerror or e})") from None


def config_record(config: ExperimentConfig) -> dict:
    """The config as JSON values (tuples as lists), as config.json holds it."""
    return strict_json(dataclasses.asdict(config))[0]


def config_differences(recorded: dict, current: dict) -> list[str]:
    """`field: recorded -> current` for each field that differs, except epochs and RERUN_FREE_FIELDS."""
    skip = set(RERUN_FREE_FIELDS) | {"epochs"}
    return [f"{k}: {json.dumps(recorded.get(k))} -> {json.dumps(current.get(k))}"
            for k in sorted(set(recorded) | set(current))
            if k not in skip and recorded.get(k) != current.get(k)]


def prepare_workdir(config: ExperimentConfig, workdir: str, fresh: bool = False) -> None:
    """Check `workdir`, then hold this run's config against the one recorded there.

    A rerun with another configuration stops with the differences (unless only `epochs` grew);
    `epochs` below the epochs already done stops too; `fresh` moves a previous run aside to
    `WORKDIR.old-YYYYmmdd-HHMMSS` first. The config (and later the epochs done) go to config.json.
    """
    import jax

    path = os.path.abspath(workdir)
    writer = jax.process_index() == 0
    if fresh:
        if writer and os.path.isdir(path) and os.listdir(path):
            aside = f"{path.rstrip(os.sep)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
            while os.path.exists(aside):
                aside += "-1"
            os.rename(path, aside)
            print(f"{config.name}: --fresh: moved the previous run to {aside}", file=sys.stderr)
        if jax.process_count() > 1:  # every process, whatever it saw: the others wait for the move
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxcnn-fresh-workdir")
    check_workdir(workdir)
    record_path = os.path.join(path, CONFIG_FILE)
    current, done = config_record(config), 0
    if os.path.exists(record_path):
        try:
            with open(record_path) as f:
                record = json.load(f)
            recorded, done = record["config"], int(record.get("epochs_done", 0))
        except (ValueError, KeyError, TypeError) as e:
            raise UsageError(f"{record_path}: unreadable run record ({e}); pass --fresh to start over") from None
        diffs = config_differences(recorded, current)
        if diffs:
            raise UsageError(
                f"{workdir} holds a run with another configuration (recorded -> now):\n  "
                + "\n  ".join(diffs)
                + "\nrerun with the recorded settings to resume it, pass --fresh to move it aside and "
                  "start over, or use another --workdir")
        if config.epochs < done:
            raise UsageError(f"{workdir}: {done} epochs are already done, so --epochs {config.epochs} is "
                             f"below that; pass --epochs {done} or more to continue, or --fresh to start over")
    if writer:
        _write_json(record_path, {"config": current, "epochs_done": done})


def _progress_recorder(workdir: str):
    """A callback that keeps `epochs_done` in workdir/config.json (what `--epochs` is held against)."""
    from jaxcnn.train import Callback

    class RecordProgress(Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            record_path = os.path.join(workdir, CONFIG_FILE)
            if not _is_writer() or not os.path.exists(record_path):
                return
            with open(record_path) as f:
                record = json.load(f)
            if epoch + 1 > record.get("epochs_done", 0):
                record["epochs_done"] = epoch + 1
                _write_json(record_path, record)

    return RecordProgress()


# -- command line ------------------------------------------------------------------------------
def _positive(value):
    return None if value is None or value >= 1 else "must be a positive integer"


def _non_negative(value):
    return None if value >= 0 else "must be 0 or more"


def _one_of(*choices):
    def check(value):
        return None if value in choices else f"must be one of {', '.join(str(c) for c in choices)}"

    return check


# Field -> check of its value (None when fine, else the problem). Flags, `--set` and
# validate_config all use these, so a bad value is refused the same way wherever it comes from.
FIELD_CHECKS: dict[str, Callable] = {
    "epochs": _positive, "batch_size": _positive, "train_limit": _positive, "test_limit": _positive,
    "checkpoint_every_steps": _positive, "checkpoint_keep": _positive, "seed": _non_negative,
    "learning_rate": lambda v: None if v is None or v > 0 else "must be positive",
    "validation_split": lambda v: None if v is None or 0 < v < 1 else "must lie in (0, 1)",
    "road": _one_of("auto", "pipeline", "device"),
    "precision": _one_of("auto", "bf16", "bfloat16", "f16", "float16", "fp16", "f32", "fp32", "float32"),
    "strategy": _one_of(None, "jit", "pmap"),
    "checkpoint_best_mode": _one_of("min", "max"),
    "resize": lambda v: None if v is None or (isinstance(v, (tuple, list)) and len(v) == 2 and all(
        isinstance(n, int) and n >= 1 for n in v)) else "must be two positive integers (height, width)",
}

# The documented flags, each a shorthand for `--set FIELD=VALUE` (same conversion, same checks):
# flag -> (config fields it sets, metavar, help).
FLAG_FIELDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "--epochs": (("epochs",), "N", "override the recipe's epochs"),
    "--batch-size": (("batch_size",), "N", "override the recipe's (global) batch size"),
    "--data": (("dataset",), "NAME", "the recipe's dataset replaced: a name, image_folder:PATH, tfds:NAME "
                                     "or prepared:DIR (streamed from `jaxcnn prepare` records)"),
    "--data-dir": (("data_dir",), "DIR", "folder holding the datasets (default: $JAXCNN_DATA_DIR)"),
    "--road": (("road",), "auto|pipeline|device",
               "input road: per-step pipeline, data on the device, or auto (default)"),
    "--precision": (("precision",), "auto|bf16|f32",
                    "compute dtype (params stay float32); auto: bf16 on GPU/TPU, f32 on CPU"),
    "--seed": (("seed",), "N", "override the seed (0 or more)"),
    "--augment": (("augment",), "SPEC", "augmentation recipe (A, B, none) or key=value,... parameters"),
    "--limit": (("train_limit", "test_limit"), "N", "use only N train and N test examples, spread over the classes (smoke runs)"),
    "--strategy": (("strategy",), "jit|pmap", "device strategy: jit (default) or pmap"),
    "--checkpoint-every": (("checkpoint_every_steps",), "N",
                           "also checkpoint every N steps (default: at epoch ends only)"),
    "--weights": (("pretrained",), "DIR", "pretrained base: a folder written by `jaxcnn convert-weights`"),
    "--lr-schedule": (("lr_schedule",), "SPEC",
                      "learning-rate schedule: cosine | exponential[:RATE] | piecewise:EPOCH=FACTOR,... | "
                      "constant, optionally ,warmup=EPOCHS (e.g. cosine,warmup=1)"),
    "--early-stopping": (("early_stopping_patience",), "PATIENCE",
                         "stop after PATIENCE epochs without a better val_loss; keep the best weights"),
}


class _SetFields(argparse.Action):
    """Appends (field, value) pairs to `namespace.overrides`, in command-line order."""

    def __init__(self, option_strings, dest, fields=(), **kwargs):
        self.fields = fields
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        pairs = [(f, values) for f in self.fields] if self.fields else [values]
        namespace.overrides = [*(getattr(namespace, "overrides", None) or []), *pairs]


def _flag_type(field: str):
    """argparse `type=` for a flag of `field`: argparse then names the flag in its error."""

    def convert(raw: str):
        try:
            return config_flags.convert_field(ExperimentConfig, field, raw, FIELD_CHECKS)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix(f"{field}: ")) from None

    convert.__name__ = field
    return convert


def _assignment(text: str):
    try:
        return config_flags.parse_assignment(ExperimentConfig, text, FIELD_CHECKS)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every experiment takes (`jaxcnn train NAME ...`, `python -m experiments.NAME ...`).

    Every config field is settable with `--set FIELD=VALUE` (typed from ExperimentConfig; an
    unknown field is an error); the named flags are shorthands for the common ones.
    """
    parser.set_defaults(overrides=None)
    for flag, (fields, metavar, help_) in FLAG_FIELDS.items():
        parser.add_argument(flag, action=_SetFields, fields=fields, dest="overrides", metavar=metavar,
                            type=_flag_type(fields[0]), help=help_, default=None)
    parser.add_argument("--set", action=_SetFields, dest="overrides", metavar="FIELD=VALUE",
                        type=_assignment, default=None,
                        help="set any config field, e.g. --set learning_rate=3e-4 --set "
                             "model_kwargs.dropout=0.3 (repeatable; applied in order with the flags)")
    parser.add_argument("--workdir", help="where results go (default: runs/NAME)")
    parser.add_argument("--fresh", action="store_true",
                        help="move a previous run in the workdir aside (WORKDIR.old-TIME) and start over")
    parser.add_argument("--variant", help="a named variant of the recipe (see the experiment's variants)")
    parser.add_argument("--fake-devices", type=positive_int, metavar="K",
                        help="run on K fake CPU devices (rehearse multi-device runs on one CPU)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar or epoch lines; the final result line still prints")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: JAXCNN_DEBUG=1)")


def validate_config(config: ExperimentConfig) -> None:
    """UsageError for a field value the run cannot use (from a flag, `--set`, a variant or code)."""
    for field, check in FIELD_CHECKS.items():
        value = getattr(config, field)
        problem = check(value)
        if problem:
            raise UsageError(f"{config.name}: {field} {problem}, got {value!r}")


def apply_flags(config: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    """The config with the command line's variant, then its flags and `--set`s in order, checked."""
    variant = getattr(args, "variant", None)
    if variant:
        if variant not in config.variants:
            raise UsageError(f"{config.name}: unknown variant {variant!r}; known: "
                             f"{', '.join(config.variants) or 'none'}")
        config = dataclasses.replace(config, **config.variants[variant])
    config = config_flags.apply_overrides(config, getattr(args, "overrides", None) or [])
    validate_config(config)
    return config


def run(config: ExperimentConfig, args: argparse.Namespace) -> dict:
    """The one command-line entry (`jaxcnn train NAME`, `python -m experiments.NAME`): apply the
    flags, check the workdir before anything heavy, start the devices, train and evaluate."""
    config = apply_flags(config, args)
    workdir = getattr(args, "workdir", None) or os.path.join("runs", config.name)
    check_workdir(workdir)
    from jaxcnn.parallel import setup
    from jaxcnn.train.callbacks import plain_stderr_logging

    setup(fake_devices=getattr(args, "fake_devices", None))  # fake devices, multi-host start-up
    plain_stderr_logging()  # epoch and result lines as they are (some imports configure the root logger)
    return train_and_evaluate(config, workdir, verbose=0 if getattr(args, "quiet", False) else "auto",
                              fresh=bool(getattr(args, "fresh", False)))


def main(config: ExperimentConfig, argv=None) -> dict:
    """`python -m experiments.NAME [flags]`: the same flags, checks and errors as `jaxcnn train NAME`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stem = os.path.splitext(os.path.basename(sys.argv[0] or ""))[0]
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{stem or config.name}",
                                     description=config.description)
    add_flags(parser)
    args = parser.parse_args(argv)
    result, code = guard(lambda: run(config, args), debug=args.debug or debug_requested(argv))
    if code:
        raise SystemExit(code)
    return result
