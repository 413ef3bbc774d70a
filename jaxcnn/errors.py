"""How the command line reports errors: one line (plus a hint), exit 2 for bad input, 1 for failures.

The library raises ordinary exceptions with messages that name the file and the problem;
`guard` turns them into `jaxcnn: error: <message>` on stderr and an exit status. `--debug` on
the command line (or `JAXCNN_DEBUG=1`) lets the exception through, traceback and all.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

DEBUG_ENV = "JAXCNN_DEBUG"
HINT = "(add --debug or set JAXCNN_DEBUG=1 to see the traceback)"


class UsageError(ValueError):
    """A bad argument, config value or workdir: the user's to fix (exit status 2)."""


# Exceptions that mean "the input is wrong" (exit 2); anything else is a failure (exit 1).
# DataError, CheckpointMismatchError and unknown names (KeyError) derive from these.
_INPUT_ERRORS = (UsageError, ValueError, KeyError, FileNotFoundError, NotADirectoryError,
                 IsADirectoryError, FileExistsError)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def debug_requested(argv: list[str] | None = None) -> bool:
    """`--debug` before any `--` in `argv`, or JAXCNN_DEBUG set to something other than 0/empty."""
    if os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off"):
        return True
    if argv:
        head = argv[: argv.index("--")] if "--" in argv else argv
        return "--debug" in head
    return False


def strip_debug(argv: list[str]) -> list[str]:
    """`argv` without the `--debug` flags that precede any `--` (the rest belongs to a child command)."""
    cut = argv.index("--") if "--" in argv else len(argv)
    return [a for a in argv[:cut] if a != "--debug"] + argv[cut:]


def exit_code(exc: BaseException) -> int:
    code = getattr(exc, "exit_code", None)  # checkpoint.Preempted carries its own (143)
    if isinstance(code, int):
        return code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 2 if isinstance(exc, _INPUT_ERRORS) else 1


def _raised_by_jaxcnn(exc: BaseException) -> bool:
    """Whether `exc` is one of ours or was raised in jaxcnn's own code (its message is written for
    the user), rather than deep inside a dependency."""
    if type(exc).__module__.split(".")[0] == "jaxcnn":
        return True
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb.tb_frame, tb.tb_next
    return last is not None and os.path.abspath(last.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep)


def describe(exc: BaseException) -> str:
    """The message: `<file>: <problem>` for OS errors; our own messages as written (they name
    the file); foreign exceptions' first line with their type, since their tails can be long."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc.args[0]) if isinstance(exc, KeyError) and len(exc.args) == 1 else str(exc)
    text = text.strip() or type(exc).__name__
    if _raised_by_jaxcnn(exc):
        return text
    lines = text.splitlines()
    more = f" (and {len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return f"{type(exc).__name__}: {lines[0]}{more}"


def report(exc: BaseException, prog: str = "jaxcnn", file=None) -> int:
    """Print the one-line error and hint for `exc`; return its exit status."""
    file = file or sys.stderr
    code = exit_code(exc)
    if getattr(exc, "exit_code", None) is None:  # Preempted has printed its own message
        print(f"{prog}: error: {describe(exc)}", file=file)
        if not isinstance(exc, KeyboardInterrupt):
            print(f"{prog}: {HINT}", file=file)
    file.flush()
    return code


def guard(fn: Callable[[], object], *, debug: bool = False, prog: str = "jaxcnn") -> tuple[object, int]:
    """Run `fn()`; return (its result, 0), or (None, status) after reporting its exception.

    SystemExit passes through (argparse's own usage errors); with `debug` everything does.
    """
    if debug:
        return fn(), 0
    try:
        return fn(), 0
    except SystemExit:
        raise
    except (Exception, KeyboardInterrupt) as e:  # noqa: BLE001 - the point: no traceback on screen
        return None, report(e, prog)
