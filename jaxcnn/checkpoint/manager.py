"""A run's checkpoint folder: Orbax's `CheckpointManager` with jaxcnn's layout, retention and faults.

One sub-folder per global step holding `state/` (params, batch_stats, opt_state, step, rng) and
`loop/` (JSON: epoch, position in the epoch, data seed, history, the epoch's metric sums so far,
`jaxcnn_format`), and `callbacks/` when a callback keeps arrays (EarlyStopping's best weights).
The last `max_to_keep` are kept, plus the best by `best_metric`. Orbax writes
each step into `<step>.orbax-checkpoint-tmp` and renames it when complete, so a folder named
`<step>` is always a finished checkpoint; leftovers of a killed save are removed on the next start.
`load_weights` takes params and batch_stats from such a folder, or from a weights folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from jaxcnn.checkpoint.diagnostics import DetailLog, formatted, io_error, route_details, say
from jaxcnn.checkpoint.errors import (CheckpointCorruptError, CheckpointError, CheckpointFormatError, CheckpointIOError,
                                      CheckpointMismatchError, CheckpointNotFoundError)
from jaxcnn.checkpoint.integrity import CHECKSUMS_FILE, Corrupt, verify_checksums, write_checksums
from jaxcnn.checkpoint.shapes import check_shapes, tree_shapes
from jaxcnn.checkpoint.weights import restore_params, weights_dir

FORMAT_VERSION = 1  # the `jaxcnn_format` in each checkpoint's loop state; raise it on layout changes
_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # a step's folder while Orbax writes it (renamed on commit)


# The items every step's folder holds (CheckpointManager.save writes both in one commit), and
# the optional one with callbacks' arrays (EarlyStopping's best weights).
ITEMS = ("loop", "state")
CALLBACK_ARRAYS = "callbacks"


def _check_complete(step_dir: str) -> None:
    """`Corrupt` for a step's folder without its items: a save killed before it wrote anything,
    or a folder left by a tool. Damage like a failed checksum, not an operating-system error."""
    missing = [item for item in ITEMS if not os.path.isdir(os.path.join(step_dir, item))]
    if missing:
        raise Corrupt(f"it holds no {' and no '.join(missing)} (an empty or partial save)")


def _unreadable_steps(directory: str, e: Exception) -> Exception:
    """What opening a folder whose step metadata Orbax cannot parse raises: CheckpointCorruptError
    naming the step folders whose `_CHECKPOINT_METADATA` is not JSON (Orbax tolerates most
    damage there, but not all: deeply nested brackets exhaust its parser's recursion)."""
    bad = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        meta = os.path.join(directory, name, "_CHECKPOINT_METADATA")
        try:
            with open(meta, "rb") as f:
                json.loads(f.read().decode("utf8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, RecursionError):
            bad.append(os.path.join(directory, name))
    if not bad:
        return e
    return CheckpointCorruptError(f"{directory}: cannot open the checkpoints ({type(e).__name__}: "
                                  f"{(str(e).splitlines() or [''])[0][:120]}); the commit record of "
                                  f"{', '.join(bad)} is damaged: move that folder away and rerun")


def state_tree(state) -> dict:
    """The parts of a TrainState that a checkpoint holds (apply_fn and tx are code, not data)."""
    return {"params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state,
            "step": state.step, "rng": state.rng}


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class CheckpointManager:
    """Orbax's `CheckpointManager` with jaxcnn's layout, retention and fault handling.

    Keeps the last `max_to_keep` checkpoints and, with `best_metric` (e.g. "val_accuracy",
    `best_mode` "max"; "val_loss" with "min"), also the best one among those saved with metrics
    (epoch ends). `async_save` writes in a background thread; Orbax copies the arrays to the host
    before `save` returns, so the next (donating) train step cannot change what is written.
    All processes call every method; Orbax lets process 0 write the shared files.
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, best_metric: str | None = None,
                 best_mode: str = "max", async_save: bool = True, create: bool = True):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be at least 1, got {max_to_keep}")
        self.directory = os.path.abspath(directory)
        if not create and not os.path.isdir(self.directory):
            raise CheckpointNotFoundError(f"{self.directory}: no checkpoint directory")
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise CheckpointError(f"{self.directory}: exists and is not a directory, so it cannot hold "
                                  "checkpoints (move it away or pass another directory)")
        self.best_metric, self.best_mode = best_metric, best_mode
        policies = [checkpoint_managers.LatestN(max_to_keep)]
        best_fn = None
        if best_metric:
            best_fn = lambda m: float(m[best_metric])  # noqa: E731
            policies.append(checkpoint_managers.BestN(get_metric_fn=best_fn, reverse=best_mode == "min", n=1,
                                                      keep_checkpoints_without_metrics=False))
        self.async_save = async_save
        self._saving: int | None = None  # the step whose save is in flight
        self.log = DetailLog(self.directory)
        logging.getLogger("absl").addFilter(self.log)  # Orbax's messages go to the log file
        route_details(self.log)
        # Orbax saves in a background thread even when `async_save` is off (then `save` waits):
        # its post-finalization callback runs when every file is written, before the folder is
        # renamed to `<step>`, so the checksum record is part of the atomic commit.
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=True, cleanup_tmp_directories=create, create=create,
            read_only=not create, best_fn=best_fn, best_mode=best_mode,
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            async_options=ocp.AsyncOptions(post_finalization_callback=self._record_checksums))
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options,
                item_handlers={"state": ocp.StandardCheckpointHandler(), "loop": ocp.JsonCheckpointHandler(),
                               CALLBACK_ARRAYS: ocp.StandardCheckpointHandler()})
        except Exception as e:
            logging.getLogger("absl").removeFilter(self.log)
            raise io_error(e, "open checkpoint directory", self.directory) or _unreadable_steps(self.directory, e)

    # queries
    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The best step by `best_metric` (the latest when no metric is tracked)."""
        return self._manager.best_step()

    def metrics(self, step: int) -> dict | None:
        return self._manager.metrics(step)

    # writing
    def save(self, step: int, state, loop: dict, metrics: dict | None = None, arrays: dict | None = None) -> None:
        """Start saving `state` (a TrainState) and `loop` (JSON-able) as checkpoint `step`;
        `arrays`: callbacks' arrays (`{callback key: pytree}`), restored into `loop["callback_arrays"]`.

        A write failure (disk full, permission) raises CheckpointIOError naming the path, here or
        from the next `save` / `wait`; the checkpoints already on disk are left as they are.
        """
        # `checksummed`: a restore that finds no checksum record knows it was lost, not never made.
        loop = {"jaxcnn_format": FORMAT_VERSION, "checksummed": True, **loop}
        if metrics is not None and self.best_metric and self.best_metric not in metrics:
            metrics = None
        self.wait()  # a failure of the previous save is reported as that save's
        self._saving = step
        items = {"state": ocp.args.StandardSave(state_tree(state)), "loop": ocp.args.JsonSave(loop)}
        if arrays:
            items[CALLBACK_ARRAYS] = ocp.args.StandardSave(arrays)
        with self._write_errors(step):
            self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
        if not self.async_save:
            self.wait()

    def _record_checksums(self) -> None:
        """Orbax's post-finalization callback (process 0, all files written, not yet renamed)."""
        step = self._saving
        if step is None:
            return
        tmp = self._step_dir(step) + _TMP_SUFFIX
        write_checksums(tmp if os.path.isdir(tmp) else self._step_dir(step))

    @contextlib.contextmanager
    def _write_errors(self, step: int | None):
        try:
            yield
        except Exception as e:
            where = self._step_dir(step) if step is not None else self.directory
            err = io_error(e, "write checkpoint" + ("" if step is None else f" step {step}"), where)
            if err is None:
                raise
            self.log.write(f"saving step {step} failed:\n" + formatted(e))
            self._saving = None
            raise err from None

    def wait(self) -> None:
        """Block until every started save is on disk (committed); CheckpointIOError if one failed."""
        with self._write_errors(self._saving):
            self._manager.wait_until_finished()
        self._saving = None

    def close(self) -> None:
        try:
            with self._write_errors(self._saving):
                self._manager.close()
        finally:
            logging.getLogger("absl").removeFilter(self.log)

    # reading
    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def read_loop(self, step: int) -> dict:
        """The loop state of `step` (the `loop` item, read through Orbax), its format version checked."""
        loop = self._manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))["loop"]
        where = os.path.join(self._step_dir(step), "loop")
        if not isinstance(loop, dict) or "jaxcnn_format" not in loop:
            raise ValueError(f"{where}: not a jaxcnn loop state")
        if int(loop["jaxcnn_format"]) > FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{self._step_dir(step)} was written by a newer jaxcnn (checkpoint format "
                f"{loop['jaxcnn_format']}; this jaxcnn reads up to {FORMAT_VERSION}): upgrade jaxcnn "
                "or start a new run in another directory")
        return dict(loop)

    def saved_shapes(self, step: int) -> dict[str, tuple]:
        meta = self._manager.item_metadata(step)["state"]
        if meta is None:
            raise ValueError(f"{self._step_dir(step)}/state: no readable metadata")
        return tree_shapes(meta)

    def restore(self, step: int, state) -> tuple[Any, dict]:
        """`(state, loop)` of checkpoint `step`, `state` placed like the given TrainState.

        Raises CheckpointMismatchError (listing names and shapes) when the trees differ.
        """
        loop = self.read_loop(step)
        target = state_tree(state)
        saved = self.saved_shapes(step)
        where = self._step_dir(step)
        check_shapes(where, {k: v for k, v in saved.items() if not k.startswith("opt_state/")},
                     {k: v for k, v in tree_shapes(target).items() if not k.startswith("opt_state/")},
                     "parameters", "\nIs this checkpoint from another model? Use another directory.")
        check_shapes(where, saved, tree_shapes(target), "optimizer state",
                     "\nThe optimizer differs from the one that wrote the checkpoint: to start a new run "
                     "from these weights use jaxcnn.checkpoint.load_weights (params only).")
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(target))))
        if os.path.isdir(os.path.join(where, CALLBACK_ARRAYS)):
            loop["callback_arrays"] = jax.device_get(self._manager.restore(step, args=ocp.args.Composite(
                **{CALLBACK_ARRAYS: ocp.args.StandardRestore()}))[CALLBACK_ARRAYS])
        return state.replace(**out["state"]), loop

    def restore_weights(self, step: int, like: dict) -> dict:
        """`{"params", "batch_stats"}` of `step` only (any optimizer), shaped like `like`."""
        self.verify(step)
        saved = self.saved_shapes(step)
        check_shapes(self._step_dir(step),
                     {k: v for k, v in saved.items() if k.split("/")[0] in ("params", "batch_stats")},
                     tree_shapes(like), "parameters")
        abstract = _abstract(like)
        # Only the listed subtrees are read: the optimizer state may be of any shape or kind.
        with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as ckptr:
            return ckptr.restore(os.path.join(self._step_dir(step), "state"), args=ocp.args.PyTreeRestore(
                item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                partial_restore=True))

    def quarantine(self, step: int) -> str:
        """Move an unreadable checkpoint out of the way (to `corrupt/`), never deleting it."""
        dest = os.path.join(self.directory, "corrupt", f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.move(self._step_dir(step), dest)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxcnn_quarantine_{step}")
        self._manager.reload()
        return dest

    def verify(self, step: int) -> bool:
        """Check checkpoint `step`'s files against the checksums written with it.

        False when it has no checksum record (written by an older jaxcnn). Raises
        CheckpointCorruptError naming the file that is missing or differs, and CheckpointIOError
        (path and OS error) when a file cannot be read at all.
        """
        where = self._step_dir(step)
        try:
            return verify_checksums(where)
        except Corrupt as e:
            raise CheckpointCorruptError(f"{where}: checkpoint step {step} is corrupt: {e}") from None
        except OSError as e:
            raise (io_error(e, "read checkpoint", where) or e) from None

    def restore_latest(self, state) -> tuple[Any, dict] | None:
        """The newest intact checkpoint as `(state, loop)`, or None when there is none.

        Each candidate's files are checked against its checksums first. A damaged one (a checksum
        mismatch, a file truncated or missing, unreadable content) is reported in one line, moved
        to `corrupt/`, and the previous one is tried. An operating-system error (permission
        denied, I/O error) is not damage: it raises CheckpointIOError and nothing is moved. A tree
        mismatch or a newer format is an error too, not a fallback. Details go to `checkpoint.log`.
        """
        try:
            steps = sorted(self.all_steps(), reverse=True)
        except Exception as e:
            raise io_error(e, "read checkpoint", self.directory) or e
        bad = []
        for step in steps:
            with self.log.capturing():
                try:
                    verified = verify_checksums(self._step_dir(step))  # OSError: not damage
                    if not verified:
                        _check_complete(self._step_dir(step))
                    restored = self.restore(step, state)
                    if not verified and restored[1].get("checksummed"):
                        raise Corrupt(f"its checksum record {CHECKSUMS_FILE} is missing")
                except (CheckpointMismatchError, CheckpointFormatError, CheckpointIOError):
                    raise
                except Corrupt as e:
                    reason = str(e)
                except Exception as e:  # noqa: BLE001  (any other read failure: this one is unusable)
                    err = io_error(e, "read checkpoint", self._step_dir(step))
                    if err is not None:
                        raise err from None
                    self.log.write(f"restoring step {step} failed:\n" + formatted(e))
                    msg = (str(e).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0][:200]
                    reason = f"unreadable ({type(e).__name__}: {msg})"
                else:
                    if not verified:
                        say(f"checkpoint {self._step_dir(step)} has no checksums (written by an older "
                            "jaxcnn): restored without verifying its bytes")
                    if bad:
                        say(f"resuming from step {step}, the newest intact checkpoint "
                            f"(skipped damaged step(s) {', '.join(map(str, bad))})")
                    return restored
            dest = self.quarantine(step)
            bad.append(step)
            say(f"checkpoint step {step} is corrupt: {reason}; moved {self._step_dir(step)} to {dest}; "
                "trying the previous one")
        if bad:
            raise CheckpointCorruptError(
                f"{self.directory}: no intact checkpoint (damaged steps {bad} were moved to "
                f"{os.path.join(self.directory, 'corrupt')}); rerun to start from scratch")
        return None


# -- weights for inference and transfer ------------------------------------------------------------
def load_weights(trainer, path: str, step: int | str = "latest") -> int | None:
    """Put params and batch_stats from `path` into `trainer.state` (the optimizer state is kept).

    `path`: a run's checkpoint folder (then `step` is an int, "latest" or "best": the best epoch
    end by the metric the run tracked), one step's folder in it, or a weights folder written by
    `save_params` (`workdir/params`). The checkpoint's optimizer may differ.
    Returns the step loaded (None for a weights folder).
    """
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CheckpointNotFoundError(f"{path}: no checkpoint directory")
    like = {"params": trainer.state.params, "batch_stats": trainer.state.batch_stats}
    if os.path.isdir(os.path.join(path, "state")) and os.path.basename(path).isdigit():
        path, step = os.path.dirname(path), int(os.path.basename(path))  # one step's folder
    if weights_dir(path) is not None:
        saved = tree_shapes(restore_params(path))
        check_shapes(path, saved, tree_shapes(like), "parameters")
        weights, loaded = restore_params(path, like=like), None
    else:
        mgr = CheckpointManager(path, create=False)
        if step == "latest":
            loaded = mgr.latest_step()
        elif step == "best":
            loaded = best_step_by_metric(mgr)
        elif isinstance(step, (int, np.integer)):
            loaded = int(step)
        else:
            raise ValueError(f"step must be an int, 'latest' or 'best', got {step!r}")
        if loaded is None:
            raise CheckpointNotFoundError(f"{path}: holds no checkpoint")
        if loaded not in mgr.all_steps():
            raise CheckpointNotFoundError(f"{path}: no checkpoint for step {loaded}; "
                                          f"steps: {mgr.all_steps()}")
        weights = mgr.restore_weights(loaded, like)
    replicated = trainer.strategy.replicate(weights)
    trainer.state = trainer.state.replace(params=replicated["params"],
                                          batch_stats=replicated["batch_stats"])
    return loaded


def best_step_by_metric(mgr: CheckpointManager) -> int | None:
    """The best step on disk by the metric the run tracked (its name and mode are in the loop state).

    Among checkpoints saved with metrics (epoch ends); ties go to the later step, as in Orbax.
    """
    record = None
    for step in sorted(mgr.all_steps(), reverse=True):
        try:
            record = mgr.read_loop(step).get("best")
            break
        except (OSError, ValueError):
            continue
    if not record:
        raise CheckpointNotFoundError(f"{mgr.directory}: no best checkpoint recorded (the run tracked "
                                      "no metric, or saved none at an epoch end): use step='latest'")
    metric, sign = record["metric"], (1.0 if record.get("mode", "max") == "max" else -1.0)
    scored = [(sign * float(m[metric]), step) for step in mgr.all_steps()
              if (m := mgr.metrics(step)) and metric in m]
    if not scored:
        raise CheckpointNotFoundError(f"{mgr.directory}: no checkpoint holds the metric {metric!r}")
    return max(scored)[1]
