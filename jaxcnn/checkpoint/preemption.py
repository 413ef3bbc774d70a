"""SIGTERM (preemption) as a flag the training loop checks at step ends, so it can save and stop.

With one process, `SigtermFlag` owns the handler; with several, JAX's preemption service does and
`preempted` asks it for the step all processes agree on.
"""

from __future__ import annotations

import os
import signal
import threading

import jax
from jax.experimental import multihost_utils


class SigtermFlag:
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


def preempted(flag: SigtermFlag, step: int) -> bool:
    """True once SIGTERM arrived; with several processes, at the step they all agree on."""
    if jax.process_count() == 1:
        return flag.flag
    try:
        return multihost_utils.reached_preemption_sync_point(step)
    except RuntimeError:  # no preemption service (jax.distributed not initialized with it)
        return False
