"""Orbax checkpoints: resumable training runs, best-model tracking, weights folders.

Two kinds of folders:

* A run's checkpoint folder (`workdir/checkpoints/` under `train_and_evaluate`), written by
  `CheckpointCallback` through `CheckpointManager` (Orbax's manager): one sub-folder per global
  step (the state and the loop's position), the last few kept plus the best (`manager`), each
  checked by checksums (`integrity`) before it is restored.
* A weights folder (`workdir/params`, converted Keras weights): `save_params` / `restore_params`,
  `save_variables` / `restore_variables`, one format (`weights`).

    ckpt = CheckpointCallback("runs/x/checkpoints", every_n_steps=100, best_metric="val_accuracy")
    trainer.fit(x, y, epochs=10, callbacks=[ckpt])   # resumes from the latest checkpoint, if any
    load_weights(trainer, "runs/x/checkpoints", step="best")  # inference / transfer

Modules: errors, diagnostics (one-line errors, details to `checkpoint.log`), integrity
(checksums), shapes (tree comparison), manager, weights, preemption (SIGTERM and Ctrl-C: save,
then `Preempted` / `Interrupted`, both `TrainingStopped`; see docs/checkpoints.md). The callback lives
with the other callbacks (`jaxcnn.train.callbacks.CheckpointCallback`); its old name here is
loaded on first use, since `jaxcnn.train` builds on this package.
"""

import importlib

from jaxcnn.checkpoint.diagnostics import LOG_FILE
from jaxcnn.checkpoint.errors import (SIGINT_EXIT_CODE, SIGTERM_EXIT_CODE, CheckpointCorruptError, CheckpointError,
                                      CheckpointFormatError, CheckpointIOError, CheckpointMismatchError,
                                      CheckpointNotFoundError, Interrupted, Preempted, TrainingStopped)
from jaxcnn.checkpoint.integrity import CHECKSUMS_FILE, file_checksums, verify_checksums, write_checksums
from jaxcnn.checkpoint.manager import FORMAT_VERSION, CheckpointManager, load_weights, state_tree
from jaxcnn.checkpoint.preemption import exit_on_stop
from jaxcnn.checkpoint.shapes import shape_differences
from jaxcnn.checkpoint.weights import (read_metadata, restore_params, restore_variables, save_params,
                                       save_variables)

__all__ = [
    "CHECKSUMS_FILE", "FORMAT_VERSION", "LOG_FILE", "SIGINT_EXIT_CODE", "SIGTERM_EXIT_CODE", "CheckpointCallback",
    "CheckpointCorruptError", "CheckpointError", "CheckpointFormatError", "CheckpointIOError",
    "CheckpointManager", "CheckpointMismatchError", "CheckpointNotFoundError", "Interrupted", "Preempted",
    "exit_on_stop",
    "file_checksums", "load_weights", "read_metadata", "restore_params", "restore_variables",
    "save_params", "save_variables", "shape_differences", "state_tree", "TrainingStopped", "verify_checksums",
    "write_checksums",
]


def __getattr__(name: str):
    if name == "CheckpointCallback":
        return importlib.import_module("jaxcnn.train.callbacks.checkpoint").CheckpointCallback
    raise AttributeError(f"module 'jaxcnn.checkpoint' has no attribute {name!r}")
