"""How checkpoint failures are reported: one line on the screen, the details in a log file.

`io_error` tells an operating-system error (permission denied, a full disk: not the checkpoint's
fault) from damage, however Orbax and TensorStore spell it. `DetailLog` and `route_details` send
Orbax's log records and TensorStore's stray tracebacks to `checkpoint.log` in the checkpoint
folder instead of the screen, so a failure shows as the one line `say` prints.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import sys
import threading
import time
import traceback

import jax

from jaxcnn.checkpoint.errors import CheckpointIOError

LOG_FILE = "checkpoint.log"  # in the checkpoint folder: details (tracebacks, Orbax's messages)
# How TensorStore / Orbax spell an operating-system error that is not the checkpoint's fault.
_IO_PATTERN = re.compile(r"PERMISSION_DENIED|Permission denied|No space left|Disk quota|File too large|"
                         r"Read-only file system|Input/output error|RESOURCE_EXHAUSTED|\[OS error \d+")
_OS_ERROR = re.compile(r"os_error_code='(\d+)'|\[OS error (\d+)|\[Errno (\d+)\]")
_TS_PATH = re.compile(r'"(/[^"]+)"')


def say(msg: str) -> None:
    """One line on stderr from process 0, prefixed `jaxcnn.checkpoint:`."""
    if jax.process_index() == 0:
        print(f"jaxcnn.checkpoint: {msg}", file=sys.stderr, flush=True)


def formatted(e: BaseException) -> str:
    """`e`'s traceback as text, for the log file."""
    return "".join(traceback.format_exception(e))


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def io_error(e: BaseException, action: str, where: str) -> CheckpointIOError | None:
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


class DetailLog:
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


_detail_log: DetailLog | None = None  # where the newest manager sends details
_previous_unraisablehook = None


def _unraisable(u) -> None:
    """`sys.unraisablehook`: TensorStore's and asyncio's reports (callbacks of a failed read or
    write, into an event loop Orbax has closed) go to the newest manager's log file; any other
    goes to the previous hook."""
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
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        if not any(k in text.lower() for k in ("tensorstore", "orbax", "ocdbt")):
            return True
        _detail_log.write(f"{record.levelname} {text}")
        return False


def route_details(log: DetailLog) -> None:
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
