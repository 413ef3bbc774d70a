"""SIGTERM (preemption) and SIGINT (Ctrl-C) as a flag the training loop checks at step ends, so it
can save a checkpoint and stop cleanly (`Preempted` / `Interrupted`, jaxcnn.checkpoint.errors).

With one process, `StopFlag` owns both handlers; with several, JAX's preemption service owns
SIGTERM and `preempted` asks it for the step all processes agree on (`jaxcnn launch` turns a
Ctrl-C into SIGTERM for every process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils

from jaxcnn.checkpoint.errors import TrainingStopped

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """SIGTERM / SIGINT set `flag` to the signal's number (the loop saves and stops at the next
    step end); the previous handlers are put back by `uninstall`.

    A second signal does what the previous handler would have done (SIGTERM: terminate; SIGINT:
    KeyboardInterrupt at once), so a process whose loop no longer checks the flag (it hangs in a
    save, or crashed) can still be stopped.
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals = tuple(signals)
        self.flag: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self.flag = None
        for sig in self.signals:
            current = signal.getsignal(sig)
            # A handler left by an earlier fit that crashed is ours too: chain to what it replaced.
            previous = getattr(current, "_jaxcnn_previous", current)
            self._previous[sig] = signal.SIG_DFL if previous is None else previous
            signal.signal(sig, self._handler(sig))

    def _handler(self, sig: int):
        def handler(signum, frame):
            if self.flag is not None:  # the second signal: what the previous handler would do
                previous = self._previous.get(signum, signal.SIG_DFL)
                self.uninstall()
                if callable(previous):
                    previous(signum, frame)
                elif previous != signal.SIG_IGN:
                    os.kill(os.getpid(), signum)
                return
            self.flag = signum

        handler._jaxcnn_previous = self._previous[sig]
        return handler

    def uninstall(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)


SigtermFlag = StopFlag  # the earlier name


def preempted(flag: StopFlag, step: int) -> int | None:
    """The stop signal once one arrived (SIGTERM or SIGINT), else None; with several processes,
    SIGTERM at the step they all agree on."""
    if jax.process_count() == 1:
        return flag.flag
    try:
        return signal.SIGTERM if multihost_utils.reached_preemption_sync_point(step) else None
    except RuntimeError:  # no preemption service (jax.distributed not initialized with it)
        return None


class exit_on_stop(contextlib.ContextDecorator):
    """For scripts: a run stopped by SIGTERM or Ctrl-C (checkpoint saved, its message printed)
    ends the process with 143 / 130 and no traceback, as a shell and a scheduler expect.

        with jaxcnn.checkpoint.exit_on_stop():        # or @exit_on_stop() on main()
            trainer.fit(x, y, callbacks=[CheckpointCallback("ckpt")])

    Without it `Preempted` already exits 143 quietly (it is a SystemExit); `Interrupted` is a
    KeyboardInterrupt, which Python reports with a traceback and status 1.
    """

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, TrainingStopped):
            sys.stdout.flush()
            raise SystemExit(exc.exit_code) from None
        return False
