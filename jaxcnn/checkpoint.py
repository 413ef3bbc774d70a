"""Orbax checkpoints behind one module: resumable training runs, best-model tracking, weights.

Two kinds of files:

* A run's checkpoint folder (`workdir/checkpoints/` under `train_and_evaluate`), written by
  `CheckpointCallback` through `CheckpointManager` (Orbax's manager): one sub-folder per global
  step holding `state/` (params, batch_stats, opt_state, step, rng) and `loop/` (JSON: epoch,
  position in the epoch, data seed, history, the epoch's metric sums so far, `jaxcnn_format`).
  The last `max_to_keep` are kept, plus the best by `best_metric`. Orbax writes each step into
  `<step>.orbax-checkpoint-tmp` and renames it when complete, so a folder named `<step>` is
  always a finished checkpoint; leftovers of a killed save are removed on the next start.
* A weights folder (`workdir/params`): `save_params` / `restore_params` (params, batch_stats).

    ckpt = CheckpointCallback("runs/x/checkpoints", every_n_steps=100, best_metric="val_accuracy")
    trainer.fit(x, y, epochs=10, callbacks=[ckpt])   # resumes from the latest checkpoint, if any
    load_weights(trainer, "runs/x/checkpoints", step="best")  # inference / transfer

`import jaxcnn.checkpoint` needs neither TensorFlow nor (until used) Orbax.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1  # the `jaxcnn_format` in each checkpoint's loop state; raise it on layout changes
SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, what shells and schedulers expect of a job ended by SIGTERM


class CheckpointError(Exception):
    """Base class of checkpoint problems."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint where one was asked for."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """The checkpoint's tree (names, shapes) or run settings do not fit this model / run."""


class CheckpointFormatError(CheckpointError):
    """The checkpoint was written by a newer jaxcnn (a `jaxcnn_format` this one cannot read)."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint's bytes are damaged (a checksum mismatch, a file truncated or missing), or,
    from `restore_latest`, no intact checkpoint is left."""


class CheckpointIOError(CheckpointError, OSError):
    """Reading or writing a checkpoint failed for a reason outside it (permission denied, a missing
    mount, a full disk): nothing is moved or deleted; fix the cause and rerun.

    `path` is the file or folder, `errno` / `strerror` the operating system's error; the message
    names both and what was being done (`filename` stays None, so it is printed as written).
    """

    def __init__(self, message: str, path: str | None = None, os_errno: int | None = None,
                 strerror: str | None = None):
        super().__init__(message)
        self.path, self.errno, self.strerror = path, os_errno, strerror

    def __str__(self) -> str:
        return self.args[0]


class Preempted(Exception):
    """Training stopped on SIGTERM after writing a checkpoint; rerun the same command to resume.

    The CLI exits with `exit_code` (143 = 128 + SIGTERM).
    """

    exit_code = SIGTERM_EXIT_CODE


def _ocp():
    import orbax.checkpoint as ocp

    return ocp


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(f"jaxcnn.checkpoint: {msg}", file=sys.stderr, flush=True)


# -- final weights (a plain Orbax folder) -----------------------------------------------------------
def _checkpointer():
    return _ocp().StandardCheckpointer()


def save_params(path: str, params, batch_stats=None) -> None:
    """Save `{"params", "batch_stats"}` as an Orbax checkpoint at `path` (replaced if present)."""
    path = os.path.abspath(path)
    tree = {"params": jax.device_get(params), "batch_stats": jax.device_get(batch_stats or {})}
    ckptr = _checkpointer()
    ckptr.save(path, tree, force=True)
    ckptr.wait_until_finished()


def restore_params(path: str, like=None) -> dict:
    """Restore `{"params", "batch_stats"}` from `path`; `like` (a tree of arrays) fixes structure."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no checkpoint directory")
    ckptr = _checkpointer()
    if like is None:
        return ckptr.restore(path)
    target = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), like)
    return ckptr.restore(path, target)


# -- tree comparison -------------------------------------------------------------------------------
def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _shapes(tree) -> dict[str, tuple]:
    """`{"params/conv1/kernel": shape}` for every leaf (dict keys, attributes and indices alike)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): tuple(np.shape(leaf) if not hasattr(leaf, "shape")
                                                         else leaf.shape) for path, leaf in leaves}


def tree_differences(saved: dict[str, tuple], expected: dict[str, tuple], limit: int = 20) -> list[str]:
    """Lines naming leaves missing on either side or of different shapes (at most `limit`)."""
    lines = []
    for name in sorted(set(saved) | set(expected)):
        if name not in saved:
            lines.append(f"  {name}: model {expected[name]}, not in checkpoint")
        elif name not in expected:
            lines.append(f"  {name}: checkpoint {saved[name]}, not in model")
        elif tuple(saved[name]) != tuple(expected[name]):
            lines.append(f"  {name}: checkpoint {saved[name]} vs model {expected[name]}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"  ... and {len(lines) - limit} more"]
    return lines


def _check_tree(where: str, saved: dict, expected: dict, what: str, hint: str = "") -> None:
    diffs = tree_differences(saved, expected)
    if diffs:
        raise CheckpointMismatchError(f"{where}: the checkpoint's {what} do not match the model's "
                                      f"({len(diffs)} differences):\n" + "\n".join(diffs) + hint)


# -- checksums, I/O errors and the log file ---------------------------------------------------------
CHECKSUMS_FILE = "jaxcnn_checksums.json"  # in each step's folder: sha256 of every other file in it
LOG_FILE = "checkpoint.log"  # in the checkpoint folder: details (tracebacks, Orbax's messages)
_TMP_SUFFIX = ".orbax-checkpoint-tmp"
# Orbax's commit bookkeeping in a step's folder, rewritten as the folder is renamed (timestamps):
# not covered. Everything the restore reads (state/, loop/, metrics/) is.
_UNCHECKED = (CHECKSUMS_FILE, "_CHECKPOINT_METADATA", "commit_success.txt")
# How TensorStore / Orbax spell an operating-system error that is not the checkpoint's fault.
_IO_PATTERN = re.compile(r"PERMISSION_DENIED|Permission denied|No space left|Disk quota|File too large|"
                         r"Read-only file system|Input/output error|RESOURCE_EXHAUSTED|\[OS error \d+")
_OS_ERROR = re.compile(r"os_error_code='(\d+)'|\[OS error (\d+)|\[Errno (\d+)\]")
_TS_PATH = re.compile(r'"(/[^"]+)"')


class _Corrupt(Exception):
    """This checkpoint's bytes are not what was written (internal: restore_latest falls back)."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _raise(e: OSError):
    raise e


def file_checksums(root: str) -> dict[str, str]:
    """`{relative path: sha256}` of every file under `root` but the checksum record and Orbax's
    commit bookkeeping at its top.

    Reads every byte, so an unreadable file raises its OSError here, before any restore starts.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel not in _UNCHECKED:
                out[rel] = _sha256(path)
    return out


def _record_digest(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def write_checksums(root: str) -> None:
    """Write `root/jaxcnn_checksums.json`: the sha256 of every file under `root`."""
    files = file_checksums(root)
    record = {"algorithm": "sha256", "files": files, "record_sha256": _record_digest(files)}
    with open(os.path.join(root, CHECKSUMS_FILE), "w") as f:
        json.dump(record, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _what(rel: str) -> str:
    """What a file in a step's folder holds, for messages."""
    if rel.startswith("state/") and "/d/" in rel:
        return "array data"
    if rel.startswith("state/"):
        return "array metadata"
    if rel.startswith("loop/"):
        return "loop state"
    return "checkpoint metadata"


def verify_checksums(root: str) -> bool:
    """Check every file of a step's folder against its checksum record.

    Returns False when there is no record (a checkpoint from an older jaxcnn). Raises OSError when
    a file cannot be read and `_Corrupt` (naming the file) when one is missing or differs.
    """
    digests = file_checksums(root)
    path = os.path.join(root, CHECKSUMS_FILE)
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        raw = f.read()
    try:
        record = json.loads(raw)
        files = record["files"]
        ok = _record_digest(files) == record["record_sha256"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise _Corrupt(f"its checksum record {CHECKSUMS_FILE} is damaged")
    for rel, digest in sorted(files.items()):
        if rel not in digests:
            raise _Corrupt(f"{rel} ({_what(rel)}) is missing")
        if digests[rel] != digest:
            raise _Corrupt(f"{rel} ({_what(rel)}) does not match its checksum")
    return True


def _io_error(e: BaseException, action: str, where: str) -> CheckpointIOError | None:
    """A CheckpointIOError (one line: path, OS error) if `e` is an operating-system error, else None."""
    if isinstance(e, CheckpointIOError):
        return e
    if isinstance(e, OSError) and e.errno is not None:
        path = e.filename or where
        return CheckpointIOError(f"{path}: cannot {action}: {e.strerror or os.strerror(e.errno)}",
                                 path, e.errno, e.strerror)
    text = " ".join(str(x) for x in _chain(e))
    if not _IO_PATTERN.search(text):
        return None
    m = _OS_ERROR.search(text)
    code = int(next(g for g in m.groups() if g)) if m else None
    reason = os.strerror(code) if code else next(
        (p for p in ("Permission denied", "No space left on device", "File too large", "Disk quota exceeded",
                     "Read-only file system", "Input/output error") if p in text), "I/O error")
    paths = _TS_PATH.findall(text)  # TensorStore names the database, then the file
    path = paths[-1] if paths else where
    return CheckpointIOError(f"{path}: cannot {action}: {reason}", path, code, reason)


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


class _DetailLog:
    """Sends Orbax's log records, and tracebacks Python would print as 'Exception ignored in ...'
    (TensorStore coroutines of a failed read), to `LOG_FILE` instead of the screen."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOG_FILE)
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        if jax.process_index() != 0:
            return
        with self._lock:
            try:
                with open(self.path, "a") as f:
                    f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text.rstrip()}\n")
            except OSError:
                pass  # the details are lost, the one-line message on the screen is not

    def filter(self, record: logging.LogRecord) -> bool:
        """A logging filter: Orbax's records go to the file, others pass."""
        if "orbax" not in record.pathname:
            return True
        if record.levelno >= logging.WARNING:
            msg = record.getMessage()
            if record.exc_info:
                import traceback

                msg += "\n" + "".join(traceback.format_exception(*record.exc_info))
            self.write(f"{record.levelname} {msg}")
        return False

    @contextlib.contextmanager
    def capturing(self):
        """Reports of this block's failures (TensorStore coroutines of a failed read) go to the file."""
        global _detail_log
        _detail_log = self
        try:
            yield self
        finally:
            gc.collect()  # the coroutines of a failed read are collected (and reported) here


_detail_log: _DetailLog | None = None  # where the newest manager sends details
_previous_unraisablehook = None


def _unraisable(u) -> None:
    """`sys.unraisablehook`: TensorStore's and asyncio's reports (callbacks of a failed read or
    write, into an event loop Orbax has closed) go to the newest manager's log file; any other
    goes to the previous hook."""
    import traceback

    text = "".join(traceback.format_exception(u.exc_type, u.exc_value, u.exc_traceback))
    if _detail_log is not None and any(k in text for k in ("asyncio", "tensorstore", "orbax")):
        _detail_log.write(f"Exception ignored in {u.object!r}:\n{text}")
    else:
        (_previous_unraisablehook or sys.__unraisablehook__)(u)


class _AsyncioToLog(logging.Filter):
    """On the `asyncio` logger: "exception was never retrieved" reports about a failed Orbax
    write (a gathered TensorStore future, collected whenever the garbage collector runs, even
    after the manager is closed) go to the newest manager's log file; any other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _detail_log is None:
            return True
        text = record.getMessage()
        if record.exc_info:
            import traceback

            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if not any(k in text.lower() for k in ("tensorstore", "orbax", "ocdbt")):
            return True
        _detail_log.write(f"{record.levelname} {text}")
        return False


def _route_details(log: _DetailLog) -> None:
    """Send Orbax's log records and TensorStore's stray tracebacks (unraisable, or logged by
    asyncio) to `log` from now on."""
    global _detail_log, _previous_unraisablehook
    _detail_log = log
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _AsyncioToLog) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_AsyncioToLog())
    if sys.unraisablehook is not _unraisable:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _unraisable


# -- the manager -----------------------------------------------------------------------------------
def state_tree(state) -> dict:
    """The parts of a TrainState that a checkpoint holds (apply_fn and tx are code, not data)."""
    return {"params": state.params, "batch_stats": state.batch_stats, "opt_state": state.opt_state,
            "step": state.step, "rng": state.rng}


def _abstract(tree):
    return jax.tree.map(_ocp().utils.to_shape_dtype_struct, tree)


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
        ocp = _ocp()
        from orbax.checkpoint import checkpoint_managers as cm

        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be at least 1, got {max_to_keep}")
        self.directory = os.path.abspath(directory)
        if not create and not os.path.isdir(self.directory):
            raise CheckpointNotFoundError(f"{self.directory}: no checkpoint directory")
        self.best_metric, self.best_mode = best_metric, best_mode
        policies = [cm.LatestN(max_to_keep)]
        best_fn = None
        if best_metric:
            best_fn = lambda m: float(m[best_metric])  # noqa: E731
            policies.append(cm.BestN(get_metric_fn=best_fn, reverse=best_mode == "min", n=1,
                                     keep_checkpoints_without_metrics=False))
        self.async_save = async_save
        self._saving: int | None = None  # the step whose save is in flight
        self.log = _DetailLog(self.directory)
        logging.getLogger("absl").addFilter(self.log)  # Orbax's messages go to the log file
        _route_details(self.log)
        # Orbax saves in a background thread even when `async_save` is off (then `save` waits):
        # its post-finalization callback runs when every file is written, before the folder is
        # renamed to `<step>`, so the checksum record is part of the atomic commit.
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=True, cleanup_tmp_directories=create, create=create,
            read_only=not create, best_fn=best_fn, best_mode=best_mode,
            preservation_policy=cm.AnyPreservationPolicy(policies),
            async_options=ocp.AsyncOptions(post_finalization_callback=self._record_checksums))
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options,
                item_handlers={"state": ocp.StandardCheckpointHandler(), "loop": ocp.JsonCheckpointHandler()})
        except Exception as e:
            logging.getLogger("absl").removeFilter(self.log)
            raise _io_error(e, "open checkpoint directory", self.directory) or e

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
    def save(self, step: int, state, loop: dict, metrics: dict | None = None) -> None:
        """Start saving `state` (a TrainState) and `loop` (JSON-able) as checkpoint `step`.

        A write failure (disk full, permission) raises CheckpointIOError naming the path, here or
        from the next `save` / `wait`; the checkpoints already on disk are left as they are.
        """
        ocp = _ocp()
        # `checksummed`: a restore that finds no checksum record knows it was lost, not never made.
        loop = {"jaxcnn_format": FORMAT_VERSION, "checksummed": True, **loop}
        if metrics is not None and self.best_metric and self.best_metric not in metrics:
            metrics = None
        self.wait()  # a failure of the previous save is reported as that save's
        self._saving = step
        with self._write_errors(step):
            self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state_tree(state)),
                                                             loop=ocp.args.JsonSave(loop)),
                               metrics=metrics, force=True)
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
            err = _io_error(e, "write checkpoint" + ("" if step is None else f" step {step}"), where)
            if err is None:
                raise
            import traceback

            self.log.write(f"saving step {step} failed:\n" + "".join(traceback.format_exception(e)))
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
        """The loop state of `step`, with its format version checked."""
        path = os.path.join(self._step_dir(step), "loop", "metadata")
        with open(path) as f:
            loop = json.load(f)
        if not isinstance(loop, dict) or "jaxcnn_format" not in loop:
            raise ValueError(f"{path}: not a jaxcnn loop state")
        if int(loop["jaxcnn_format"]) > FORMAT_VERSION:
            raise CheckpointFormatError(
                f"{self._step_dir(step)} was written by a newer jaxcnn (checkpoint format "
                f"{loop['jaxcnn_format']}; this jaxcnn reads up to {FORMAT_VERSION}): upgrade jaxcnn "
                "or start a new run in another directory")
        return loop

    def saved_shapes(self, step: int) -> dict[str, tuple]:
        meta = self._manager.item_metadata(step)["state"]
        if meta is None:
            raise ValueError(f"{self._step_dir(step)}/state: no readable metadata")
        return _shapes(meta)

    def restore(self, step: int, state) -> tuple[Any, dict]:
        """`(state, loop)` of checkpoint `step`, `state` placed like the given TrainState.

        Raises CheckpointMismatchError (listing names and shapes) when the trees differ.
        """
        ocp = _ocp()
        loop = self.read_loop(step)
        target = state_tree(state)
        saved = self.saved_shapes(step)
        where = self._step_dir(step)
        _check_tree(where, {k: v for k, v in saved.items() if not k.startswith("opt_state/")},
                    {k: v for k, v in _shapes(target).items() if not k.startswith("opt_state/")},
                    "parameters", "\nIs this checkpoint from another model? Use another directory.")
        _check_tree(where, saved, _shapes(target), "optimizer state",
                    "\nThe optimizer differs from the one that wrote the checkpoint: to start a new run "
                    "from these weights use jaxcnn.checkpoint.load_weights (params only).")
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(_abstract(target)), loop=ocp.args.JsonRestore()))
        return state.replace(**out["state"]), loop

    def restore_weights(self, step: int, like: dict) -> dict:
        """`{"params", "batch_stats"}` of `step` only (any optimizer), shaped like `like`."""
        ocp = _ocp()
        self.verify(step)
        saved = self.saved_shapes(step)
        _check_tree(self._step_dir(step),
                    {k: v for k, v in saved.items() if k.split("/")[0] in ("params", "batch_stats")},
                    _shapes(like), "parameters")
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
            from jax.experimental import multihost_utils

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
        except _Corrupt as e:
            raise CheckpointCorruptError(f"{where}: checkpoint step {step} is corrupt: {e}") from None
        except OSError as e:
            raise (_io_error(e, "read checkpoint", where) or e) from None

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
            raise _io_error(e, "read checkpoint", self.directory) or e
        bad = []
        for step in steps:
            with self.log.capturing():
                try:
                    verified = verify_checksums(self._step_dir(step))  # OSError: not damage
                    restored = self.restore(step, state)
                    if not verified and restored[1].get("checksummed"):
                        raise _Corrupt(f"its checksum record {CHECKSUMS_FILE} is missing")
                except (CheckpointMismatchError, CheckpointFormatError, CheckpointIOError):
                    raise
                except _Corrupt as e:
                    reason = str(e)
                except Exception as e:  # noqa: BLE001  (any other read failure: this one is unusable)
                    err = _io_error(e, "read checkpoint", self._step_dir(step))
                    if err is not None:
                        raise err from None
                    import traceback

                    self.log.write(f"restoring step {step} failed:\n" + "".join(traceback.format_exception(e)))
                    msg = (str(e).strip().splitlines() or [""])[0].split(" [tensorstore_spec")[0][:200]
                    reason = f"unreadable ({type(e).__name__}: {msg})"
                else:
                    if not verified:
                        _log(f"checkpoint {self._step_dir(step)} has no checksums (written by an older "
                             "jaxcnn): restored without verifying its bytes")
                    if bad:
                        _log(f"resuming from step {step}, the newest intact checkpoint "
                             f"(skipped damaged step(s) {', '.join(map(str, bad))})")
                    return restored
            dest = self.quarantine(step)
            bad.append(step)
            _log(f"checkpoint step {step} is corrupt: {reason}; moved {self._step_dir(step)} to {dest}; "
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
    if os.path.isfile(os.path.join(path, "_CHECKPOINT_METADATA")) and not os.path.isdir(
            os.path.join(path, "state")):
        saved = _shapes(restore_params(path))
        _check_tree(path, saved, _shapes(like), "parameters")
        weights, loaded = restore_params(path, like=like), None
    else:
        mgr = CheckpointManager(path, create=False)
        if step == "latest":
            loaded = mgr.latest_step()
        elif step == "best":
            loaded = _best_step_from_metrics(mgr)
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


def _best_step_from_metrics(mgr: CheckpointManager) -> int | None:
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


# -- the training callback -------------------------------------------------------------------------
class _SigtermFlag:
    """SIGTERM sets a flag (the loop saves and stops at the next step end); restored afterwards.

    A second SIGTERM does what the previous handler would have done (by default: terminate), so
    a process whose loop no longer checks the flag (it crashed, or hangs) can still be stopped.
    """

    def __init__(self):
        self.flag = False
        self._previous = None
        self._installed = False

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return
        self.flag = False
        current = signal.getsignal(signal.SIGTERM)
        # A handler left by an earlier fit that crashed is ours too: chain to what it replaced.
        previous = getattr(current, "_jaxcnn_previous", current)
        self._previous = signal.SIG_DFL if previous is None else previous

        def handler(signum, frame):
            if self.flag:
                signal.signal(signal.SIGTERM, self._previous)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            self.flag = True

        handler._jaxcnn_previous = self._previous
        signal.signal(signal.SIGTERM, handler)
        self._installed = True

    def uninstall(self):
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


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


class CheckpointCallback:
    """Saves the whole run every `every_n_steps` (global) steps and/or at each epoch end; resumes it.

    On `on_train_begin` (with `resume=True`) the newest intact checkpoint in `directory` is
    restored into the trainer (`Trainer.restore_run`): the state, whose step gives `fit` its epoch
    and position in the epoch, the history and the interrupted epoch's metric sums, so `fit`
    continues with the same data order as an uninterrupted run. Step intervals count the global
    step (`trainer.global_step`), also on the device road, which reports once per chunk.
    SIGTERM (preemption) makes the next step end save, wait for the write, and raise `Preempted`.
    """

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
        self._sigterm = _SigtermFlag()
        self._last_saved = None
        self._step = 0  # the global step at the last hook

    # hooks
    def on_train_begin(self, trainer) -> None:
        _quiet_orbax_warnings()
        self.manager = CheckpointManager(self.directory, max_to_keep=self.max_to_keep,
                                         best_metric=self.best_metric, best_mode=self.best_mode,
                                         async_save=self.async_save)
        self.resumed_from = None
        if self.resume:
            self._restore(trainer)
        elif self.manager.all_steps():
            raise CheckpointError(f"{self.directory} already holds checkpoints (steps "
                                  f"{self.manager.all_steps()}) and resume=False: use another directory")
        self._step = int(trainer.state.step)  # the loop's position derives from it, resumed or not
        if jax.process_count() == 1:  # with several, JAX's preemption service owns SIGTERM
            self._sigterm.install()

    def _preemption(self) -> bool:
        """True once SIGTERM arrived; with several processes, at the step they all agree on."""
        if jax.process_count() == 1:
            return self._sigterm.flag
        from jax.experimental import multihost_utils

        try:
            return multihost_utils.reached_preemption_sync_point(self._step)
        except RuntimeError:  # no preemption service (jax.distributed not initialized with it)
            return False

    def on_step_end(self, trainer, epoch: int, step: int) -> None:
        # The pipeline road calls this after every step, the device road after each chunk of
        # steps: save once an `every_n_steps` boundary of the global step is crossed.
        before, self._step = self._step, trainer.global_step
        if self._preemption():
            self._preempt(trainer, epoch, step)
        if (self.every_n_steps and self._step // self.every_n_steps > before // self.every_n_steps
                and not (self.save_on_epoch_end and step == trainer.steps_per_epoch)):
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
        preempted = self._sigterm.flag
        if self.save_on_epoch_end or preempted:
            self._save(trainer, epoch + 1, 0, metrics={k: float(v) for k, v in logs.items()})
        if preempted:
            self._preempt(trainer, epoch + 1, 0)

    def on_train_end(self, trainer) -> None:
        self._sigterm.uninstall()
        if self.manager is not None:
            self.manager.wait()
            self.manager.close()

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
        trainer.restore_run(state, history=loop.get("history", {}),
                            epoch_sums=None if sums is None else {k: np.asarray(v, np.float64)
                                                                  for k, v in sums.items()})
        self.best = loop.get("best")
        self.resumed_from = self._last_saved = int(loop["global_step"])
        if self.verbose:
            _log(f"resuming from {os.path.join(self.directory, str(loop['global_step']))}: epoch "
                 f"{loop['epoch'] + 1}, step {loop['step_in_epoch']} of the epoch")

    def _save(self, trainer, epoch: int, step_in_epoch: int, metrics: dict | None = None) -> int:
        global_step = trainer.global_step
        if global_step == self._last_saved:
            return global_step
        info = getattr(trainer, "fit_info", {})
        loop = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "seed": trainer.seed, **info,
                "epoch_sums": _epoch_sums_json(trainer.epoch_metric_sums()) if step_in_epoch else None,
                "history": dict(trainer.history), "best": self.best, "saved_at": time.time()}
        self.manager.save(global_step, trainer.state, json.loads(json.dumps(loop, default=float)),
                          metrics=metrics)
        self._last_saved = global_step
        return global_step

    def _preempt(self, trainer, epoch: int, step_in_epoch: int) -> None:
        global_step = self._save(trainer, epoch, step_in_epoch)
        self.manager.wait()
        self.manager.close()
        self._sigterm.uninstall()
        msg = (f"SIGTERM: saved checkpoint {os.path.join(self.directory, str(global_step))} (epoch "
               f"{epoch + 1}, step {step_in_epoch}); rerun the same command to resume")
        _log(msg)
        raise Preempted(msg)
