"""Run N local processes as one multi-host JAX job: rehearse a cluster run on one machine.

    jaxcnn launch --processes 2 --devices-per-process 2 -- train mnist_cnn --epochs 1
    jaxcnn launch --processes 2 -- path/to/script.py ARGS      # a script that builds a Trainer

Each process gets JAXCNN_COORDINATOR (localhost, a free port), JAXCNN_NUM_PROCESSES,
JAXCNN_PROCESS_ID, JAX_PLATFORMS=cpu and XLA_FLAGS with K fake CPU devices; from them jaxcnn
joins the processes into one jax.distributed job before first use (`Trainer`, any strategy:
`jaxcnn.parallel.auto_initialize`), so a script needs no start-up code of its own. Their output
is streamed line by line, prefixed with `[i]`, without the libraries' start-up noise
(`jaxcnn.quiet`; `quiet=False` keeps it). If one process fails, the others are stopped and the
launch returns its exit status.

SIGTERM or SIGINT (Ctrl-C) to the launcher is forwarded to every process as SIGTERM, which makes
a training run write a checkpoint and exit; the launcher waits for them up to `grace` seconds,
kills what is left, and exits 128 + the signal (143 for SIGTERM). A second signal kills at once.
On Linux each process also gets SIGTERM if the launcher itself dies (SIGKILL included), so no
process outlives it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from jaxcnn import quiet as quiet_output

DEFAULT_GRACE = 120.0  # seconds the processes get to write their checkpoints after a signal


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(process_id: int, processes: int, devices_per_process: int, port: int,
                base: dict | None = None, verbose: bool = False) -> dict:
    """The environment of local process `process_id` of a `processes`-process job (`verbose`:
    jaxcnn commands in it show the libraries' start-up messages too)."""
    env = dict(os.environ if base is None else base)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env.update({
        "JAXCNN_COORDINATOR": f"localhost:{port}",
        "JAXCNN_NUM_PROCESSES": str(processes),
        "JAXCNN_PROCESS_ID": str(process_id),
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": " ".join(flags + [f"--xla_force_host_platform_device_count={devices_per_process}"]),
        "PYTHONUNBUFFERED": "1",
    })
    if verbose:
        env[quiet_output.VERBOSE_ENV] = "1"
    return env


def command_for(args: list[str]) -> list[str]:
    """`script.py ...` runs the script, `python ...` runs as given; anything else is a jaxcnn subcommand."""
    if not args:
        raise ValueError("nothing to launch: give a jaxcnn subcommand or a script after `--`")
    if args[0].endswith(".py"):
        return [sys.executable, *args]
    if os.path.basename(args[0]).startswith("python"):
        return [sys.executable, *args[1:]]
    return [sys.executable, "-m", "jaxcnn.cli", *args]


def _pump(stream, prefix: str, out, quiet: bool = True) -> None:
    for line in iter(stream.readline, ""):
        if quiet and quiet_output.is_noise(line):
            continue
        out.write(f"{prefix}{line if line.endswith(chr(10)) else line + chr(10)}")
        out.flush()
    stream.close()


class _Signals:
    """SIGTERM/SIGINT handlers (main thread only) that record the signal instead of dying."""

    def __init__(self):
        self.received: list[int] = []
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, lambda signum, frame: self.received.append(signum))
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _die_with_parent():  # pragma: no cover  (runs in the child, between fork and exec)
    """The child gets SIGTERM when the launcher dies, however it dies (Linux prctl PR_SET_PDEATHSIG)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM, 0, 0, 0)


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # loaded before any fork
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def launch(args: list[str], processes: int, devices_per_process: int = 1, port: int | None = None,
           timeout: float | None = None, out=None, env: dict | None = None,
           grace: float = DEFAULT_GRACE, quiet: bool = True) -> int:
    """Start `processes` local processes running `args`; 0 if all succeed, else the first failure's code.

    On a failure (non-zero exit) or `timeout` seconds, the remaining processes are terminated.
    On SIGTERM/SIGINT every process gets SIGTERM and up to `grace` seconds to save and exit;
    then the launch returns 128 + the signal number. `env` is the base environment (default:
    this process's). `quiet`: leave the libraries' start-up noise out of the output.
    """
    if processes < 1 or devices_per_process < 1:
        raise ValueError(f"need at least one process and one device each, got {processes} x {devices_per_process}")
    out = sys.stdout if out is None else out
    port = port or free_port()
    cmd = command_for(args)
    procs = []
    threads = []
    status = 0
    with _Signals() as signals:
        try:
            for i in range(processes):
                procs.append(subprocess.Popen(
                    cmd, env=process_env(i, processes, devices_per_process, port, env, verbose=not quiet),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True,
                    preexec_fn=_die_with_parent if _PRCTL is not None else None))
            for i, p in enumerate(procs):  # after the forks: no thread of ours runs during one
                t = threading.Thread(target=_pump, args=(p.stdout, f"[{i}] ", out, quiet), daemon=True)
                t.start()
                threads.append(t)
            deadline = None if timeout is None else time.monotonic() + timeout
            while not signals.received:
                codes = [p.poll() for p in procs]
                failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    i, status = failed[0]
                    out.write(f"jaxcnn launch: process {i} exited with status {status}; stopping the others\n")
                    break
                if all(c == 0 for c in codes):
                    break
                if deadline is not None and time.monotonic() > deadline:
                    out.write(f"jaxcnn launch: timed out after {timeout:.0f}s; stopping all processes\n")
                    status = 124
                    break
                time.sleep(0.1)
        except KeyboardInterrupt:  # not the main thread: no handler of ours
            signals.received.append(signal.SIGINT)
        finally:
            if signals.received:
                signum = signals.received[0]
                alive = sum(p.poll() is None for p in procs)
                out.write(f"jaxcnn launch: {signal.Signals(signum).name}: sent SIGTERM to {alive} process(es); "
                          f"waiting up to {grace:.0f}s for them to save and exit\n")
                out.flush()
                status = 128 + signum
            _stop(procs, grace if signals.received else 5.0, out=out, hurry=lambda: len(signals.received) > 1)
            for t in threads:
                t.join(timeout=5)
            out.flush()
    return status


def _stop(procs, grace: float = 5.0, out=None, hurry=lambda: False) -> None:
    """SIGTERM each still-running process group, then SIGKILL what is left after `grace` seconds
    (at once when `hurry()` turns true: a second signal)."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + grace
    while any(p.poll() is None for p in alive) and time.monotonic() < end and not hurry():
        time.sleep(0.05)
    for i, p in enumerate(procs):
        if p in alive and p.poll() is None:
            if out is not None:
                out.write(f"jaxcnn launch: process {i} did not exit within {grace:g}s; killing it\n")
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p in alive:
            p.wait()
