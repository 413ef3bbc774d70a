"""One live run per folder: a lock file naming its owner, so two jobs never interleave checkpoints.

    with FolderLock("runs/mnist_cnn"):      # or lock = FolderLock(d).acquire(); ...; lock.release()
        ...

The lock is `<folder>/.jaxcnn.lock`, a JSON record of the owner (pid, host, process start time,
command). While held, the file is also `flock`ed: the kernel drops that lock when the owner
exits in any way (SIGKILL included), so a lock file left by a dead run is recognized at once and
taken over with a message naming it. Where the filesystem has no `flock`, the record decides: a
pid that no longer runs on this host (or now belongs to a later process) is stale; a lock from
another host is refused, with the file to delete if that run is gone.

The same process may take a folder's lock again (a notebook retrying a `fit` that raised before
releasing it): the new holder takes it over. Released on `release()`, on leaving the `with`, and
at interpreter exit. Stdlib only, so every layer may use it.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import socket
import sys
import time

from jaxcnn.errors import UsageError
from jaxcnn.log import logger

LOCK_FILE = ".jaxcnn.lock"
_held: dict[str, "FolderLock"] = {}  # real path of the lock file -> this process's holder


class FolderBusyError(UsageError):
    """Another live run holds the folder's lock."""


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of `pid` from /proc, or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    """Whether `pid` still runs on this host as the process that wrote the lock."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        pass
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, now_started = stat
    return state != "Z" and (started is None or now_started == started)


def _owner() -> dict:
    stat = _proc_stat(os.getpid())
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": stat[1] if stat else None,
            "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "command": " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])[:200]}


def _describe(record: dict | None) -> str:
    if not record:
        return "an unknown process"
    text = f"pid {record.get('pid')} on host {record.get('host')}"
    if record.get("since"):
        text += f", since {record['since']}"
    if record.get("command"):
        text += f": {record['command']}"
    return text


def _read(fd: int) -> dict | None:
    """The owner record in the open lock file; None when empty or unreadable (a holder writing it)."""
    try:
        raw = os.pread(fd, 4096, 0)
        record = json.loads(raw.decode("utf8")) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _flock(fd: int) -> bool | None:
    """True: locked; False: another open file holds it; None: the filesystem has no flock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP, ENOSYS...


class FolderLock:
    """The lock of one folder (see the module docstring). `what` names the folder in messages."""

    def __init__(self, folder: str, what: str = "folder"):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.what = what
        self._fd: int | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        return f"FolderLock({self.folder!r}, held={self.held})"

    @property
    def held(self) -> bool:
        return self._fd is not None and self._pid == os.getpid()

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> "FolderLock":
        """Take the lock, or raise FolderBusyError naming the live owner. Returns self."""
        if self.held:
            return self
        os.makedirs(self.folder, exist_ok=True)
        key = os.path.realpath(self.path)
        earlier = _held.pop(key, None)
        if earlier is not None and earlier.held:  # this process holds it already: take it over
            self._fd, self._pid, earlier._fd = earlier._fd, os.getpid(), None
            _held[key] = self
            return self
        for _ in range(10):  # retried only when a releasing holder removed the file meanwhile
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if self._take(fd):
                    self._fd, self._pid = fd, os.getpid()
                    _held[key] = self
                    return self
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise FolderBusyError(f"{self.folder}: could not take the lock {self.path} (it keeps changing)")

    def _take(self, fd: int) -> bool:
        """Lock the open file `fd`: True when taken, False when it was unlinked meanwhile (retry)."""
        locked = _flock(fd)
        previous = _read(fd)
        if locked is False:
            self._busy(previous)
        if locked is None and previous and previous.get("pid") != os.getpid():
            host, pid = previous.get("host"), previous.get("pid")  # unusable values: a damaged record, stale
            if (isinstance(host, str) and host != socket.gethostname()) or (
                    isinstance(pid, int) and pid > 0 and _alive(pid, previous.get("started"))):
                self._busy(previous)
        try:  # the path must still name the file locked (a holder unlinks it before letting go)
            if os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                return False
        except FileNotFoundError:
            return False
        if previous and previous.get("pid") != os.getpid():
            logger.warning("%s: took over the lock left by %s (that process is no longer running)",
                           self.folder, _describe(previous))
        data = json.dumps(_owner()).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
        return True

    def _busy(self, record: dict | None) -> None:
        raise FolderBusyError(
            f"{self.folder}: this {self.what} is in use by another run ({_describe(record)}); wait for it to "
            f"finish or stop it, or use another {self.what} (if that run is gone, delete {self.path})")

    def moved_to(self, folder: str) -> None:
        """The locked folder was renamed to `folder` (its lock file with it): still held, under that name."""
        key = os.path.realpath(self.path)
        if _held.get(key) is self:
            del _held[key]
        self.folder, self.path = os.fspath(folder), os.path.join(os.fspath(folder), LOCK_FILE)
        if self.held:
            _held[os.path.realpath(self.path)] = self

    def release(self) -> None:
        """Let go: the lock file is removed (while still locked, so no waiter locks a dead file)."""
        fd, self._fd = self._fd, None
        if fd is None or self._pid != os.getpid():  # a forked child never releases its parent's lock
            return
        key = os.path.realpath(self.path)
        if _held.get(key) is self:
            del _held[key]
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass  # moved or removed with its folder: nothing left to clean
        finally:
            os.close(fd)


class NoLock:
    """What processes other than 0 of a multi-process run hold: nothing (process 0 holds the lock)."""

    held = False

    def __enter__(self) -> "NoLock":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def acquire(self) -> "NoLock":
        return self

    def moved_to(self, folder: str) -> None:
        pass

    def release(self) -> None:
        pass


@atexit.register
def _release_all() -> None:
    for lock in list(_held.values()):
        lock.release()
