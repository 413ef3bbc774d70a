"""The checkpoint errors, and `Preempted` (a run that stopped on SIGTERM after saving).

They live apart so that the CLI and callers can catch them without loading Orbax's machinery.
"""

from __future__ import annotations

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
