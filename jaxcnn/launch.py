"""Run N local processes as one multi-host JAX job: rehearse a cluster run on one machine.

    jaxcnn launch --processes 2 --devices-per-process 2 -- train mnist_cnn --epochs 1
    jaxcnn launch --processes 2 -- path/to/script.py ARGS      # any script that calls
                                                               # jaxcnn.parallel.initialize()

Each process gets JAXCNN_COORDINATOR (localhost, a free port), JAXCNN_NUM_PROCESSES,
JAXCNN_PROCESS_ID, JAX_PLATFORMS=cpu and XLA_FLAGS with K fake CPU devices. Their output is
streamed line by line, prefixed with `[i]`. If one process fails, the others are stopped and
the launch returns its exit status.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def process_env(process_id: int, processes: int, devices_per_process: int, port: int,
                base: dict | None = None) -> dict:
    """The environment of local process `process_id` of a `processes`-process job."""
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


def _pump(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(f"{prefix}{line if line.endswith(chr(10)) else line + chr(10)}")
        out.flush()
    stream.close()


def launch(args: list[str], processes: int, devices_per_process: int = 1, port: int | None = None,
           timeout: float | None = None, out=None, env: dict | None = None) -> int:
    """Start `processes` local processes running `args`; 0 if all succeed, else the first failure's code.

    On a failure (non-zero exit) or `timeout` seconds, the remaining processes are terminated.
    `env` is the base environment (default: this process's).
    """
    if processes < 1 or devices_per_process < 1:
        raise ValueError(f"need at least one process and one device each, got {processes} x {devices_per_process}")
    out = sys.stdout if out is None else out
    port = port or free_port()
    cmd = command_for(args)
    procs = []
    threads = []
    for i in range(processes):
        p = subprocess.Popen(cmd, env=process_env(i, processes, devices_per_process, port, env),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                             start_new_session=True)
        procs.append(p)
        t = threading.Thread(target=_pump, args=(p.stdout, f"[{i}] ", out), daemon=True)
        t.start()
        threads.append(t)
    deadline = None if timeout is None else time.monotonic() + timeout
    status = 0
    try:
        while True:
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
    except KeyboardInterrupt:
        status = 130
    finally:
        _stop(procs)
        for t in threads:
            t.join(timeout=5)
        out.flush()
    return status


def _stop(procs, grace: float = 5.0) -> None:
    """SIGTERM each still-running process group, then SIGKILL what is left after `grace` seconds."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + grace
    for p in alive:
        try:
            p.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
