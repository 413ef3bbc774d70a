"""Quiet start-up: the command line shows its own results and errors, not its libraries' noise.

On a CPU host TensorFlow, XLA, absl and gloo write start-up lines that say nothing to a user
("failed call to cuInit ... (303)", "Could not find cuda drivers", oneDNN notes, "All log
messages before absl::InitializeLog() ...", "[Gloo] Rank 0 is connected ..."). They come from
native code writing straight to file descriptor 2, before and regardless of
TF_CPP_MIN_LOG_LEVEL, so no setting turns them all off. `install()` (the command line, unless
`--verbose`/`--debug`) therefore routes descriptor 2 through a small filter process that drops
exactly the lines `is_noise` names and passes everything else on; Python's own `sys.stderr`
keeps writing to the terminal directly (progress bars, errors, `isatty()` unchanged). A
separate process rather than a thread, so that a crashing process's last native words (a
failed check, an abort) still reach the terminal. Which backend JAX picks is never touched.
`jaxcnn launch` drops the same lines from its processes' output (`launch(quiet=...)`).
"""

from __future__ import annotations

import atexit
import io
import os
import re
import select
import signal
import subprocess
import sys
import warnings

VERBOSE_ENV = "JAXCNN_VERBOSE"

# One pattern per kind of line; each matches from the start of a line.
_ABSL = r"\d{4} \d\d:\d\d:[\d.]+ +\d+ [\w.+-]+:\d+\] "  # absl C++ log line after its level letter
_TF_OLD = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: "  # TensorFlow's older log line prefix
_CUDA_PROBE = (r"(.*failed call to cuInit|.*[Cc]ould not find cuda drivers|.*Unable to register cu(DNN|FFT|BLAS) "
               r"factory|.*TF-TRT Warning|.*computation placer already registered)")
NOISE = re.compile("|".join([
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rf"[IW]{_ABSL}",  # INFO and WARNING lines of TensorFlow/XLA internals (oneDNN notes, CPU features)
    rf"E{_ABSL}{_CUDA_PROBE}",  # CUDA probing on a host without a GPU (other errors are shown)
    rf"{_TF_OLD}[IW] ",
    rf"{_TF_OLD}E {_CUDA_PROBE}",
    r"To enable the following instructions: .*rebuild TensorFlow",  # 2nd line of a CPU-feature note
    r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
    r"\[Gloo\] Rank \d+ is connected to \d+ peer ranks",
]))

# Python warnings of the same kind: about the libraries' plans, nothing the user can act on.
_PY_WARNINGS = (r"\s*Warning: tf\.lite\.Interpreter is deprecated",)


def is_noise(line: str) -> bool:
    """Whether one output line is library start-up noise (see NOISE)."""
    return NOISE.match(line.lstrip("\r")) is not None


def verbose_requested(argv: list[str] | None = None) -> bool:
    """`--verbose` or `--debug` before any `--` in `argv`, or JAXCNN_VERBOSE / JAXCNN_DEBUG set."""
    for name in (VERBOSE_ENV, "JAXCNN_DEBUG"):
        if os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return True
    head = (argv[: argv.index("--")] if "--" in argv else argv) if argv else []
    return "--verbose" in head or "--debug" in head


def strip_verbose(argv: list[str]) -> list[str]:
    """`argv` without the `--verbose` flags that precede any `--` (the rest is a child command's)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return [a for a in argv[:cut] if a != "--verbose"] + argv[cut:]


_installed: dict = {}


def install() -> bool:
    """Quiet this process's start-up noise (the command line calls it first); True if filtering.

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless set (it must precede TensorFlow's import), ignores the
    Python warnings in `_PY_WARNINGS`, and filters descriptor 2 (POSIX; elsewhere only the
    first two). Idempotent; undone at exit.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for message in _PY_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if _installed or os.name != "posix":
        return bool(_installed)
    try:
        original = os.dup(2)
    except OSError:  # no stderr at all: nothing to quiet
        return False
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")])))
    read, write = os.pipe()
    try:
        # Its own session: Ctrl-C at the terminal reaches this process, not the filter, which ends
        # when the last writer of the pipe is gone (after draining what they wrote).
        proc = subprocess.Popen([sys.executable, "-c", "from jaxcnn.quiet import _filter_process; _filter_process()"],
                                stdin=read, stdout=original, stderr=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    except OSError:
        os.close(read), os.close(write), os.close(original)
        return False
    os.close(read)
    sys.stderr.flush()
    os.dup2(write, 2)
    os.close(write)
    previous = sys.stderr
    encoding = getattr(previous, "encoding", None) or "utf-8"
    sys.stderr = io.TextIOWrapper(io.FileIO(original, "w", closefd=False), encoding=encoding,
                                  errors="backslashreplace", line_buffering=True, write_through=True)
    _installed.update(proc=proc, original=original, previous=previous)
    atexit.register(uninstall)
    return True


def uninstall(timeout: float = 5.0) -> None:
    """Give descriptor 2 and `sys.stderr` back and let the filter drain (at exit)."""
    if not _installed:
        return
    proc, original, previous = _installed.pop("proc"), _installed.pop("original"), _installed.pop("previous")
    _installed.clear()
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    sys.stderr = previous
    os.dup2(original, 2)  # closes this process's end of the pipe: the filter sees its end
    os.close(original)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:  # a child of ours still holds the pipe; the filter ends with it
        pass


def _filter_process() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the command; this ends after it
    filter_main()


def filter_main(read_fd: int = 0, write_fd: int = 1, wait: float = 0.1) -> None:
    """The filter: lines from `read_fd` to `write_fd`, noise left out, until end of input.

    A partial line (a prompt, a progress bar) is passed on once nothing more came for `wait`
    seconds.
    """
    pending = b""
    while True:
        ready, _, _ = select.select([read_fd], [], [], wait if pending else None)
        if not ready:
            _write(write_fd, pending)
            pending = b""
            continue
        chunk = os.read(read_fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        _write(write_fd, b"".join(line + b"\n" for line in lines
                                  if not is_noise(line.decode("utf-8", "replace"))))
        if b"\r" in pending:  # a native progress display: its finished updates go at once
            done, pending = pending.rsplit(b"\r", 1)
            _write(write_fd, done + b"\r")
    if pending and not is_noise(pending.decode("utf-8", "replace")):
        _write(write_fd, pending)


def _write(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data):]
        except InterruptedError:
            continue
        except OSError:  # the terminal went away: keep draining so that writers never block
            return
