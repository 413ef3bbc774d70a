"""The checkpoint errors, and `Preempted` / `Interrupted` (a run that stopped on SIGTERM / Ctrl-C
after saving a checkpoint).

They live apart so that the CLI and callers can catch them without loading Orbax's machinery.
"""

from __future__ import annotations

SIGTERM_EXIT_CODE = 143  # 128 + SIGTERM, what shells and schedulers expect of a job ended by SIGTERM
SIGINT_EXIT_CODE = 130  # 128 + SIGINT (Ctrl-C)


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


class TrainingStopped(BaseException):
    """Training stopped on a signal after writing a checkpoint (`Preempted` for SIGTERM,
    `Interrupted` for Ctrl-C); rerun the same script or command to resume it bitwise.

    `exit_code` is what a shell expects of a job ended by that signal (128 + its number),
    `checkpoint` the folder written. Catch `TrainingStopped` to handle both.
    """

    exit_code = 1
    checkpoint: str | None = None


class Preempted(TrainingStopped, SystemExit):
    """SIGTERM (a scheduler's preemption, `kill`): the checkpoint is written, then the process
    ends like SIGTERM's default, with status 143 and no traceback: a `SystemExit` that
    `finally` blocks and `except Preempted` see, and `except Exception` does not swallow."""

    exit_code = SIGTERM_EXIT_CODE

    def __init__(self, message: str = "", checkpoint: str | None = None):
        BaseException.__init__(self, message)
        self.code, self.checkpoint = self.exit_code, checkpoint

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Interrupted(TrainingStopped, KeyboardInterrupt):
    """Ctrl-C (SIGINT): the checkpoint is written, then a `KeyboardInterrupt`, as Python does on
    Ctrl-C (a script's `except KeyboardInterrupt` keeps working; a notebook shows it as usual;
    uncaught, Python prints its traceback and exits 1: `exit_on_stop` makes that 130 and quiet).
    The CLI exits 130 with one line."""

    exit_code = SIGINT_EXIT_CODE

    def __init__(self, message: str = "", checkpoint: str | None = None):
        super().__init__(message)
        self.checkpoint = checkpoint
