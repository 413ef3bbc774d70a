"""`CheckpointCallback`: a `fit` callback that saves the whole run and resumes it.

    ckpt = CheckpointCallback("runs/x/checkpoints", every_n_steps=100, best_metric="val_accuracy")
    trainer.fit(x, y, epochs=10, callbacks=[ckpt])   # resumes from the latest checkpoint, if any
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time

import jax
import numpy as np

from jaxcnn.checkpoint.diagnostics import say
from jaxcnn.checkpoint.errors import CheckpointError, CheckpointMismatchError, Interrupted, Preempted
from jaxcnn.checkpoint.manager import CheckpointManager
from jaxcnn.checkpoint.preemption import StopFlag, preempted
from jaxcnn.lock import FolderLock, NoLock
from jaxcnn.train.callbacks.base import Callback


class _QuietUntrackedMetric(logging.Filter):
    """Drops Orbax's "Requested `tracked_metric`; did not provide metrics." warning.

    It comes at every mid-epoch save while a best metric is tracked (metrics exist at epoch ends
    only), which is expected here, and it would break the progress bar.
    """

    def filter(self, record):
        return "Requested `tracked_metric`" not in record.getMessage()


def _quiet_orbax_warnings() -> None:
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _QuietUntrackedMetric) for f in absl_logger.filters):
        absl_logger.addFilter(_QuietUntrackedMetric())


def _epoch_sums_json(sums):
    return None if sums is None else {k: np.asarray(v, np.float64).tolist() for k, v in sums.items()}


class CheckpointCallback(Callback):
    """Saves the whole run every `every_n_steps` (global) steps and/or at each epoch end; resumes it.

    On `on_train_begin` (with `resume=True`) the newest intact checkpoint in `directory` is
    restored into the trainer (`Trainer.restore_run`): the state, whose step gives `fit` its epoch
    and position in the epoch, the history and the interrupted epoch's metric sums, so `fit`
    continues with the same data order as an uninterrupted run. Step intervals count the global
    step (`trainer.global_step`), also on the device road, which reports once per chunk.
    The other callbacks' states (`get_state`: EarlyStopping, ReduceLROnPlateau) are saved too.
    It begins before the other callbacks and handles every other hook after them
    (`keeps_run`), so a checkpoint covers what they logged for its step.
    While it trains, `directory` is locked (`jaxcnn.lock`, process 0): a second run on it is refused.

    SIGTERM (preemption) or Ctrl-C (SIGINT) makes the next step end save, wait for the write, and
    raise `Preempted` (a SystemExit with status 143) or `Interrupted` (a KeyboardInterrupt, 130);
    a second signal stops at once. The next run resumes from that checkpoint.
    """

    keeps_run = True

    def __init__(self, directory: str, *, every_n_steps: int | None = None, on_epoch_end: bool = True,
                 max_to_keep: int = 3, best_metric: str | None = "val_accuracy", best_mode: str = "max",
                 async_save: bool = True, resume: bool = True, verbose: bool = True):
        if every_n_steps is not None and every_n_steps < 1:
            raise ValueError(f"every_n_steps must be positive, got {every_n_steps}")
        self.directory = os.path.abspath(directory)
        self.every_n_steps, self.save_on_epoch_end = every_n_steps, on_epoch_end
        self.max_to_keep, self.best_metric, self.best_mode = max_to_keep, best_metric, best_mode
        self.async_save, self.resume, self.verbose = async_save, resume, verbose
        self.manager: CheckpointManager | None = None
        self.resumed_from: int | None = None
        self.best: dict | None = None  # {"step", "epoch", "value"} of the best epoch so far
        self._stop = StopFlag()
        self._last_saved = None
        self._due_at_epoch_end = False  # a step interval ended on the epoch's last step
        self._step = 0  # the global step at the last hook
        self._lock: FolderLock | NoLock = NoLock()

    # hooks
    def on_train_begin(self, trainer) -> None:
        _quiet_orbax_warnings()
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"{self.directory}: exists and is not a directory, so it cannot hold "
                                  "checkpoints (move it away or pass another directory)")
        # Before Orbax opens the folder: opening it removes the temporary folders of saves in flight.
        self._lock = (FolderLock(self.directory, "checkpoint directory") if jax.process_index() == 0
                      else NoLock()).acquire()
        try:
            self.manager = CheckpointManager(self.directory, max_to_keep=self.max_to_keep,
                                             best_metric=self.best_metric, best_mode=self.best_mode,
                                             async_save=self.async_save)
            self.resumed_from = None
            if self.resume:
                self._restore(trainer)
            elif self.manager.all_steps():
                raise CheckpointError(f"{self.directory} already holds checkpoints (steps "
                                      f"{self.manager.all_steps()}) and resume=False: use another directory")
        except BaseException:
            self._lock.release()
            raise
        self._step = int(trainer.state.step)  # the loop's position derives from it, resumed or not
        self._due_at_epoch_end = False
        trainer.resumable = self.resume  # the run's writers (TensorBoard, CSV) follow the checkpoints
        if jax.process_count() == 1:  # with several, JAX's preemption service owns SIGTERM
            self._stop.install()

    def on_step_end(self, trainer, epoch: int, step: int) -> None:
        # The pipeline road calls this after every step, the device road after each chunk of
        # steps: save once an `every_n_steps` boundary of the global step is crossed.
        before, self._step = self._step, trainer.global_step
        crossed = bool(self.every_n_steps) and self._step // self.every_n_steps > before // self.every_n_steps
        if step >= (getattr(trainer, "epoch_stop", None) or trainer.steps_per_epoch):
            # The epoch's last step: its end (validation, the epoch's logs) is still to come, so a
            # checkpoint here would skip it on resume; on_epoch_end saves (and stops) instead.
            self._due_at_epoch_end = self._due_at_epoch_end or crossed
            return
        if preempted(self._stop, self._step):
            self._preempt(trainer, epoch, step)
        if crossed:
            self._save(trainer, epoch, step)

    def on_epoch_end(self, trainer, epoch: int, logs: dict) -> None:
        if self.best_metric and self.best_metric in logs:
            value = float(logs[self.best_metric])
            # Ties go to the later epoch, as Orbax's BestN keeps it.
            better = (self.best is None or (value >= self.best["value"] if self.best_mode == "max"
                                            else value <= self.best["value"]))
            if better:
                self.best = {"step": trainer.global_step, "epoch": epoch + 1, "value": value,
                             "metric": self.best_metric, "mode": self.best_mode}
        preempted_now = preempted(self._stop, trainer.global_step)
        due, self._due_at_epoch_end = self._due_at_epoch_end, False
        if self.save_on_epoch_end or preempted_now or due:
            self._save(trainer, epoch + 1, 0, metrics={k: float(v) for k, v in logs.items()})
        if preempted_now:
            self._preempt(trainer, epoch + 1, 0)

    def on_train_end(self, trainer) -> None:
        late = self._stop.flag  # a signal after the last step's check: the run is saved, stop still
        self._stop.uninstall()
        try:
            if self.manager is not None:
                if late:
                    self._save(trainer, len(trainer.history.epoch), 0)
                self.manager.wait()
                self.manager.close()
        finally:
            self._lock.release()
        if late:
            self._raise_stop(late, trainer.global_step, len(trainer.history.epoch), 0)

    # work
    def _restore(self, trainer) -> None:
        restored = self.manager.restore_latest(trainer.state)
        if restored is None:
            return
        state, loop = restored
        info = getattr(trainer, "fit_info", {})
        for key in ("seed", "steps_per_epoch", "batch_size", "num_examples"):
            have = trainer.seed if key == "seed" else info.get(key)
            # The position in the epoch derives from the global step and the steps per epoch:
            # those must agree even at an epoch end; the data order only matters mid-epoch.
            if (have is not None and loop.get(key) is not None and loop[key] != have
                    and (loop["step_in_epoch"] or key == "steps_per_epoch")):
                where = "mid-epoch" if loop["step_in_epoch"] else "at an epoch end"
                raise CheckpointMismatchError(
                    f"{self.directory}: the checkpoint (step {loop['global_step']}) stopped {where} in a "
                    f"run with {key}={loop[key]}, this run has {key}={have}: the data order would differ. "
                    "Use the same settings, or another directory for a new run.")
        sums = loop.get("epoch_sums") if loop["step_in_epoch"] else None
        states = dict(loop.get("callbacks") or {})
        for key, arrays in (loop.get("callback_arrays") or {}).items():
            states[key] = {**states.get(key, {}), "arrays": arrays}
        trainer.restore_run(state, history=loop.get("history", {}),
                            epoch_sums=None if sums is None else {k: np.asarray(v, np.float64)
                                                                  for k, v in sums.items()},
                            callback_states=states)
        self.best = loop.get("best")
        self.resumed_from = self._last_saved = int(loop["global_step"])
        if self.verbose:
            say(f"resuming from {os.path.join(self.directory, str(loop['global_step']))}: epoch "
                f"{loop['epoch'] + 1}, step {loop['step_in_epoch']} of the epoch")

    def _save(self, trainer, epoch: int, step_in_epoch: int, metrics: dict | None = None) -> int:
        global_step = trainer.global_step
        if global_step == self._last_saved:
            return global_step
        info = getattr(trainer, "fit_info", {})
        loop = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "seed": trainer.seed, **info,
                "epoch_sums": _epoch_sums_json(trainer.epoch_metric_sums()) if step_in_epoch else None,
                "history": dict(trainer.history), "best": self.best, "saved_at": time.time(),
                "callbacks": trainer.callbacks.get_states(trainer) if hasattr(trainer, "callbacks") else {}}
        # A callback state's "arrays" (a pytree: EarlyStopping's best weights) go in the checkpoint's
        # array item, the rest in the loop state's JSON.
        arrays = {key: st.pop("arrays") for key, st in loop["callbacks"].items() if "arrays" in st}
        self.manager.save(global_step, trainer.state, json.loads(json.dumps(loop, default=float)),
                          metrics=metrics, arrays=arrays)
        self._last_saved = global_step
        return global_step

    def _preempt(self, trainer, epoch: int, step_in_epoch: int) -> None:
        signum = self._stop.flag or signal.SIGTERM
        global_step = self._save(trainer, epoch, step_in_epoch)
        self.manager.wait()
        self.manager.close()
        self._lock.release()
        self._stop.uninstall()
        self._raise_stop(signum, global_step, epoch, step_in_epoch)

    def _raise_stop(self, signum: int, global_step: int, epoch: int, step_in_epoch: int) -> None:
        where = os.path.join(self.directory, str(global_step))
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C (SIGINT)"
        msg = (f"{name}: saved checkpoint {where} (epoch {epoch + 1}, step {step_in_epoch}); rerun the "
               "same command to resume")
        say(msg)
        raise (Preempted if signum == signal.SIGTERM else Interrupted)(msg, checkpoint=where)
