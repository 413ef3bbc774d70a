"""The run: `train_and_evaluate(config, workdir)` and the command-line entry (`run`, `main`).

train -> (fine-tune) -> evaluate -> evaluation report -> files in the run folder (jaxcnn.run).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time

import jax
import numpy as np

from jaxcnn import checkpoint, quiet, report, viz
from jaxcnn.config import ExperimentConfig, add_flags, apply_flags, validate_config
from jaxcnn.errors import debug_requested, guard
from jaxcnn.compress.summary import compression_metrics
from jaxcnn.experiment.builders import (build_trainer, callbacks, checkpoint_callback, data_source, load_data,
                                        model_card, steps_per_epoch)
from jaxcnn.experiment.extras import EXTRAS
from jaxcnn.model_card import write_card
from jaxcnn.parallel import setup
from jaxcnn.run import FINETUNE_SUFFIX, TIMING_FILE, RunFolder, check_workdir, is_writer
from jaxcnn.train import Callback, recipes
from jaxcnn.train.callbacks import ensure_log_handler, logger, plain_stderr_logging


def train_and_evaluate(config: ExperimentConfig, workdir: str, verbose: int | str = "auto",
                       fresh: bool = False) -> dict:
    """Train `config` on its dataset, evaluate on the test split, write results into `workdir`.

    Writes model.json (what inference needs, jaxcnn.model_card), history.json, metrics.json
    (test loss/accuracy, per-class metrics and the confusion matrix, seconds per epoch, device,
    the tutorial's numbers), curves.png, confusion.png, errors.png and the final parameters
    (Orbax, `workdir/params`); jaxcnn.run.RunFolder names them all.
    Checkpoints go to `workdir/checkpoints`; rerunning with the same workdir resumes from the
    newest one (mid-epoch included). On SIGTERM it saves and raises `checkpoint.Preempted`.
    The config is checked and held against the one recorded in `workdir/config.json` first
    (`prepare_workdir`; `fresh` moves a previous run aside), before any data is read.
    A workdir that another live run uses is refused (`jaxcnn.lock`: one run per workdir).
    """
    folder = RunFolder(workdir)
    validate_config(config)
    with folder.lock():
        return _train_and_evaluate(config, workdir, folder, verbose, fresh)


def _train_and_evaluate(config: ExperimentConfig, workdir: str, folder: RunFolder, verbose, fresh: bool) -> dict:
    folder.prepare(config, fresh=fresh)
    ds = load_data(config)
    if is_writer():
        write_card(workdir, model_card(config, ds))
    steps = steps_per_epoch(config, len(ds.x_train))
    trainer = build_trainer(config, ds.input_shape, ds.num_classes, trainable=config.trainable,
                            steps_per_epoch=steps)
    validation = (ds.x_test, ds.y_test) if config.validate_on_test and not config.validation_split else None
    ckpt = checkpoint_callback(config, workdir, verbose)
    t0 = time.perf_counter()
    if config.speedrun is not None:
        history, extra = _speedrun(config, trainer, ds, verbose)
    else:
        extra = {}
        history = trainer.fit(ds.x_train, ds.y_train, epochs=config.epochs, batch_size=config.batch_size,
                              validation_split=config.validation_split, validation_data=validation,
                              verbose=verbose,
                              callbacks=[ckpt, _progress_recorder(workdir), *callbacks(config, workdir)],
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
        **compression_metrics(config, trainer.state.params, test["accuracy"]),
    }
    for name in config.extras:
        metrics.update(EXTRAS[name](trainer, ds, config, workdir) or {})
    metrics.update(_evaluation_report(trainer, ds, config, workdir))
    if is_writer():
        folder.write_history(history)
        folder.write_json(TIMING_FILE, trainer.timing)  # wall-clock numbers, apart from the metrics
        folder.write_metrics(metrics)
        viz.plot_history(history, folder.curves_png, title=config.name)
    # Every process calls this: Orbax synchronizes the hosts and writes the replicated params
    # once (primary host).
    checkpoint.save_params(folder.params_dir, trainer.state.params, trainer.state.batch_stats)
    if is_writer():  # the result line, also under --quiet (verbose=0)
        ensure_log_handler()
        logger.info("%s: test loss %.4f, test accuracy %.4f (tutorial: %s); results in %s", config.name,
                    test["loss"], test["accuracy"], config.reported or "not reported", workdir)
    return metrics


def _evaluation_report(trainer, ds, config, workdir) -> dict:
    """Per-class metrics and the confusion matrix; confusion.png and errors.png (jaxcnn.report)."""
    probs = report.class_probabilities(trainer.predict(ds.x_test, batch_size=max(config.batch_size, 256)),
                                       config.loss)
    return report.write_report(workdir, probs, ds.y_test, ds.x_test, ds.class_names, title=config.name,
                               write=is_writer())


def _speedrun(config: ExperimentConfig, trainer, ds, verbose: int):
    """Train `trainer` by the config's recipe (jaxcnn.train.recipes) through Trainer.fit;
    (history, extra metrics)."""
    recipe = dataclasses.replace(recipes.get_recipe(config.speedrun), epochs=config.epochs,
                                 batch_size=min(config.batch_size, len(ds.x_train)))
    history, record = recipes.fit(trainer, ds.x_train, ds.y_train, ds.x_test, ds.y_test, recipe, verbose=verbose)
    extra = {k: record[k] for k in ("train_seconds_to_target", "target", "compile_seconds", "recipe")}
    return history, {f"speedrun_{k}" if k != "recipe" else "speedrun": v for k, v in extra.items()}


def _finetune(config, trainer, ds, workdir, validation, verbose):
    """Second phase: unfreeze `config.finetune["trainable"]` and train on at a low learning rate.

    Checkpoints of this phase go to `workdir/checkpoints_finetune`; the history continues.
    """
    phase = config.finetune
    tuned = build_trainer(config, ds.input_shape, ds.num_classes,
                          variables={"params": trainer.state.params, "batch_stats": trainer.state.batch_stats},
                          trainable=phase.get("trainable"), learning_rate=phase.get("learning_rate"),
                          steps_per_epoch=steps_per_epoch(config, len(ds.x_train)), epochs=phase.get("epochs", 1))
    ckpt = checkpoint_callback(config, workdir, verbose, phase=FINETUNE_SUFFIX)
    history = tuned.fit(ds.x_train, ds.y_train, epochs=phase.get("epochs", 1), batch_size=config.batch_size,
                        validation_split=config.validation_split, validation_data=validation,
                        verbose=verbose, callbacks=[ckpt, *callbacks(config, workdir, FINETUNE_SUFFIX)],
                        augment=config.augment, class_weight=config.class_weight)
    first = trainer.history
    return tuned, {k: list(first.get(k, [])) + list(history.get(k, [])) for k in dict.fromkeys([*first, *history])}


class RecordProgress(Callback):
    """Keeps `epochs_done` in workdir/config.json (what `--epochs` is held against on a rerun)."""

    def __init__(self, workdir: str):
        self.folder = RunFolder(workdir)

    def on_epoch_end(self, trainer, epoch, logs):
        self.folder.record_epochs_done(epoch + 1)


def _progress_recorder(workdir: str) -> RecordProgress:
    return RecordProgress(workdir)


# -- command line ------------------------------------------------------------------------------
def run(config: ExperimentConfig, args: argparse.Namespace) -> dict:
    """The one command-line entry (`jaxcnn train NAME`, `python -m experiments.NAME`): apply the
    flags, check the workdir before anything heavy, start the devices, train and evaluate."""
    config = apply_flags(config, args)
    workdir = getattr(args, "workdir", None) or os.path.join("runs", config.name)
    check_workdir(workdir)
    setup(fake_devices=getattr(args, "fake_devices", None))  # fake devices, multi-host start-up
    plain_stderr_logging()  # epoch and result lines as they are (some imports configure the root logger)
    return train_and_evaluate(config, workdir, verbose=0 if getattr(args, "quiet", False) else "auto",
                              fresh=bool(getattr(args, "fresh", False)))


def main(config: ExperimentConfig, argv=None) -> dict:
    """`python -m experiments.NAME [flags]`: the same flags, checks, errors and quiet start-up
    (`--verbose` shows the libraries' start-up lines) as `jaxcnn train NAME`."""
    command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if command_line and not quiet.verbose_requested(argv):
        quiet.install()
    argv = quiet.strip_verbose(argv)
    stem = os.path.splitext(os.path.basename(sys.argv[0] or ""))[0]
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{stem or config.name}",
                                     description=config.description)
    add_flags(parser)
    args = parser.parse_args(argv)
    result, code = guard(lambda: run(config, args), debug=args.debug or debug_requested(argv))
    if code:
        raise SystemExit(code)
    return result
