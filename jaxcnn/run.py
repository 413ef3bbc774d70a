"""The run folder (a workdir): every file name in it, strict atomic JSON, and reading it back.

One owner for what a run leaves on disk, so experiments, `jaxcnn evaluate`, the model card,
predict and export agree on names and formats:

    workdir/config.json             the run record: {"config": {...}, "epochs_done": N}
    workdir/model.json              the model card (jaxcnn.model_card): what inference needs
    workdir/history.json            per-epoch metrics
    workdir/timing.json             per-epoch step time, input wait, images/s (wall clock, kept
                                    apart from the metrics; jaxcnn.train.callbacks.timing)
    workdir/metrics.json            test metrics, the evaluation report, device, timings
    workdir/params/                 the final weights (Orbax, jaxcnn.checkpoint.save_params)
    workdir/checkpoints/            checkpoints (jaxcnn.checkpoint); checkpoints_finetune/ for a
                                    second (fine-tune) phase
    workdir/tensorboard/            TensorBoard event files (tensorboard_finetune/ likewise)
    workdir/curves.png, confusion.png, errors.png, filters.png, samples.png   figures
    workdir/export/                 `jaxcnn export`'s default output folder
    workdir/.jaxcnn.lock            while a run trains here: its pid and host (jaxcnn.lock)

JSON files are strict (no NaN/Infinity: non-finite numbers become null and are listed under
`non_finite`) and written atomically (a temporary file, then os.replace). Only process 0 of a
multi-host job writes files (`is_writer`). Low in the import graph on purpose: stdlib, numpy
and jax only, so data, serving code and experiments can all use it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxcnn.errors import UsageError
from jaxcnn.lock import LOCK_FILE, FolderLock, NoLock

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
TIMING_FILE = "timing.json"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "model.json"
PARAMS_DIR = "params"
CHECKPOINTS_DIR = "checkpoints"
FINETUNE_SUFFIX = "_finetune"  # the second training phase's checkpoints and TensorBoard logs
TENSORBOARD_DIR = "tensorboard"
EXPORT_DIR = "export"
CURVES_PNG = "curves.png"
CONFUSION_PNG = "confusion.png"
ERRORS_PNG = "errors.png"
FILTERS_PNG = "filters.png"
SAMPLES_PNG = "samples.png"
# Fields a rerun may change without changing what the run computes (besides a longer --epochs).
RERUN_FREE_FIELDS = ("description", "reported", "data_dir", "checkpoint_every_steps", "checkpoint_keep",
                     "profile")


class NoTrainedModelError(FileNotFoundError):
    """The folder holds no trained run (no model card, or no weights)."""


def is_writer() -> bool:
    """True on the process that writes the run's files (process 0 of a multi-host job)."""
    return jax.process_index() == 0


# -- strict JSON -------------------------------------------------------------------------------------
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


def write_json(path: str, obj) -> str:
    """Strict JSON (no NaN/Infinity), atomically: non-finite numbers become null and are listed
    under `non_finite` (e.g. `["test_loss", "loss[2]"]`)."""
    clean, replaced = strict_json(obj)
    if replaced and isinstance(clean, dict):  # added to the list a record read back may hold
        before = clean.get("non_finite")
        clean["non_finite"] = [*dict.fromkeys([*(before if isinstance(before, list) else []), *replaced])]
    tmp = f"{path}.tmp-{os.getpid()}"  # a reader never sees half a file
    with open(tmp, "w") as f:
        json.dump(clean, f, indent=2, allow_nan=False)
    os.replace(tmp, path)
    return path


class RunFileError(UsageError):
    """A run folder's JSON file is unreadable: damaged, or not what jaxcnn writes there."""


def read_json(path: str, kind: type | None = None):
    """The JSON value in `path`; RunFileError naming the file when it is not JSON (or not of `kind`)."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        value = json.loads(raw.decode("utf8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; deep nesting
        raise RunFileError(f"{path}: not readable JSON ({type(e).__name__}: {e}): the file is damaged; "
                           "restore it or move it away") from None
    if kind is not None and not isinstance(value, kind):
        raise RunFileError(f"{path}: holds a JSON {type(value).__name__}, not the {kind.__name__} jaxcnn "
                           "writes there: the file is damaged; restore it or move it away")
    return value


# -- checks ------------------------------------------------------------------------------------------
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
    for name in (CHECKPOINTS_DIR, CHECKPOINTS_DIR + FINETUNE_SUFFIX, PARAMS_DIR, TENSORBOARD_DIR, EXPORT_DIR):
        inside = os.path.join(path, name)
        if os.path.exists(inside) and not os.path.isdir(inside):
            raise UsageError(f"{os.path.join(workdir, name)}: exists and is not a directory, where the run "
                             "writes a folder (move it away or pass another --workdir)")


def config_record(config) -> dict:
    """A dataclass config as JSON values (tuples as lists), as config.json holds it."""
    return strict_json(dataclasses.asdict(config))[0]


def config_differences(recorded: dict, current: dict) -> list[str]:
    """`field: recorded -> current` for each field that differs, except epochs and RERUN_FREE_FIELDS."""
    skip = set(RERUN_FREE_FIELDS) | {"epochs"}
    return [f"{k}: {json.dumps(recorded.get(k))} -> {json.dumps(current.get(k))}"
            for k in sorted(set(recorded) | set(current))
            if k not in skip and recorded.get(k) != current.get(k)]


class RunFolder:
    """One run's folder: paths of its files, its JSON records, its weights.

        folder = RunFolder("runs/mnist_cnn")
        folder.write_metrics({...}); folder.read_metrics()
        folder.prepare(config, fresh=False)       # checked, held against config.json
        path, step = folder.weights_source("best")
    """

    def __init__(self, workdir: str):
        self.workdir = os.fspath(workdir)
        self._lock: FolderLock | NoLock | None = None

    def __repr__(self) -> str:
        return f"RunFolder({self.workdir!r})"

    def path(self, *names: str) -> str:
        return os.path.join(self.workdir, *names)

    # the files, by name
    @property
    def config_path(self) -> str:
        return self.path(CONFIG_FILE)

    @property
    def history_path(self) -> str:
        return self.path(HISTORY_FILE)

    @property
    def metrics_path(self) -> str:
        return self.path(METRICS_FILE)

    @property
    def model_card_path(self) -> str:
        return self.path(MODEL_CARD_FILE)

    @property
    def params_dir(self) -> str:
        return self.path(PARAMS_DIR)

    def checkpoints_dir(self, phase: str = "") -> str:
        """checkpoints/, or checkpoints_finetune/ for phase "_finetune"."""
        return self.path(CHECKPOINTS_DIR + phase)

    def tensorboard_dir(self, phase: str = "") -> str:
        return self.path(TENSORBOARD_DIR + phase)

    def export_path(self, name: str = "") -> str:
        return self.path(EXPORT_DIR, name) if name else self.path(EXPORT_DIR)

    @property
    def curves_png(self) -> str:
        return self.path(CURVES_PNG)

    @property
    def confusion_png(self) -> str:
        return self.path(CONFUSION_PNG)

    @property
    def errors_png(self) -> str:
        return self.path(ERRORS_PNG)

    @property
    def filters_png(self) -> str:
        return self.path(FILTERS_PNG)

    @property
    def samples_png(self) -> str:
        return self.path(SAMPLES_PNG)

    # JSON records
    def write_json(self, name: str, obj) -> str:
        return write_json(self.path(name), obj)

    def read_json(self, name: str, default=None):
        """The file's contents (every record of a run folder is a JSON object), or `default` when there
        is no such file; RunFileError when it is damaged."""
        path = self.path(name)
        return read_json(path, dict) if os.path.isfile(path) else default

    def write_history(self, history) -> str:
        return self.write_json(HISTORY_FILE, dict(history))

    def read_history(self) -> dict | None:
        return self.read_json(HISTORY_FILE)

    def write_metrics(self, metrics: dict) -> str:
        return self.write_json(METRICS_FILE, metrics)

    def read_metrics(self) -> dict | None:
        return self.read_json(METRICS_FILE)

    def update_metrics(self, metrics: dict) -> str:
        """metrics.json with `metrics` merged into what it holds (e.g. a later evaluation report)."""
        return self.write_metrics({**(self.read_metrics() or {}), **metrics})

    # the run record (config.json)
    def check(self) -> None:
        check_workdir(self.workdir)

    def lock(self) -> "RunFolder":
        """Take the workdir's lock (one live run per workdir; process 0 of a job holds it), or raise
        `jaxcnn.lock.FolderBusyError` naming the run that holds it. `with folder.lock(): ...`
        lets it go at the end (also on an exception; `unlock()` does the same)."""
        if self._lock is None or not self._lock.held:
            check_workdir(self.workdir)
            self._lock = FolderLock(self.workdir, "workdir") if is_writer() else NoLock()
            self._lock.acquire()
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    def move_aside(self, name: str = "") -> str | None:
        """Move a non-empty folder to `WORKDIR.old-YYYYmmdd-HHMMSS` (--fresh); the new path, or None.
        A lock this folder holds stays with the workdir (taken in the new folder before the old is let go)."""
        path = os.path.abspath(self.workdir)
        if not (os.path.isdir(path) and set(os.listdir(path)) - {LOCK_FILE}):
            return None
        aside = f"{path.rstrip(os.sep)}.old-{time.strftime('%Y%m%d-%H%M%S')}"
        while os.path.exists(aside):
            aside += "-1"
        os.rename(path, aside)
        if self._lock is not None and self._lock.held:
            moved, self._lock = self._lock, FolderLock(self.workdir, "workdir")
            moved.moved_to(aside)
            try:
                self._lock.acquire()
            finally:
                moved.release()
        print(f"{name}: --fresh: moved the previous run to {aside}", file=sys.stderr)
        return aside

    def read_record(self) -> tuple[dict, int] | None:
        """(recorded config, epochs done) from config.json, or None without one."""
        path = self.config_path
        if not os.path.exists(path):
            return None
        try:
            record = read_json(path, dict)
            config = record["config"]
            if not isinstance(config, dict):
                raise TypeError("its config is not a JSON object")
            return config, int(record.get("epochs_done", 0))
        except RunFileError as e:
            raise RunFileError(f"{e}; or pass --fresh to start over") from None
        except (ValueError, KeyError, TypeError, OverflowError) as e:
            raise RunFileError(f"{path}: unreadable run record ({type(e).__name__}: {e}); pass --fresh to "
                               "start over") from None

    @property
    def epochs_done(self) -> int:
        record = self.read_record()
        return record[1] if record else 0

    def record_epochs_done(self, epochs: int) -> None:
        """Raise `epochs_done` in config.json to `epochs` (process 0; no record, nothing to do)."""
        path = self.config_path
        if not is_writer() or not os.path.exists(path):
            return
        record = read_json(path, dict)
        if epochs > record.get("epochs_done", 0):
            record["epochs_done"] = epochs
            write_json(path, record)

    def prepare(self, config, fresh: bool = False) -> None:
        """Check the folder, then hold this run's (dataclass) config against the one recorded.

        A rerun with another configuration stops with the differences (unless only `epochs` grew);
        `epochs` below the epochs already done stops too; `fresh` moves a previous run aside to
        `WORKDIR.old-YYYYmmdd-HHMMSS` first. The config (and later the epochs done) go to config.json.
        """
        workdir = self.workdir
        if fresh:
            if is_writer():
                self.move_aside(config.name)
            if jax.process_count() > 1:  # every process, whatever it saw: the others wait for the move
                multihost_utils.sync_global_devices("jaxcnn-fresh-workdir")
        self.check()
        current, done = config_record(config), 0
        record = self.read_record()
        if record is not None:
            recorded, done = record
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
        if is_writer():
            write_json(self.config_path, {"config": current, "epochs_done": done})

    # weights
    def weights_source(self, checkpoint: str | int = "auto") -> tuple[str, str | int]:
        """(path, step) for `checkpoint.load_weights`: the final params, or a checkpoint of the run.

        `checkpoint`: "auto" (final weights, else the latest checkpoint), "final", "best",
        "latest" or a step number. A fine-tune phase's checkpoints hold the newest weights.
        """
        workdir, params = self.workdir, self.params_dir
        ckpts, finetune = self.checkpoints_dir(), self.checkpoints_dir(FINETUNE_SUFFIX)
        if os.path.isdir(finetune):
            ckpts = finetune  # the second training phase holds the newest weights
        if checkpoint == "auto":
            checkpoint = "final" if os.path.isdir(params) else "latest"
        if checkpoint == "final":
            if not os.path.isdir(params):
                raise NoTrainedModelError(f"{workdir}: no final weights (params/); the run did not finish. "
                                          "Use --checkpoint latest or best, or rerun the training to resume it")
            return params, "latest"
        if not os.path.isdir(ckpts) or not any(d.isdigit() for d in os.listdir(ckpts)):
            raise NoTrainedModelError(f"{workdir}: no checkpoints (checkpoints/ is missing or empty)")
        if isinstance(checkpoint, str) and checkpoint.isdigit():
            checkpoint = int(checkpoint)
        return ckpts, checkpoint


def prepare_workdir(config, workdir: str, fresh: bool = False) -> None:
    """`RunFolder(workdir).prepare(config, fresh)`: check the folder, hold the config against its record."""
    RunFolder(workdir).prepare(config, fresh=fresh)
