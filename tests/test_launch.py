"""`jaxcnn launch` under signals: SIGTERM reaches every process, the launcher waits, no orphans.

The launched processes are small Python scripts (no JAX) that behave like a training run:
on SIGTERM they "save a checkpoint" (write a file after a short delay) and exit 143, or, for
the grace-period test, ignore SIGTERM.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JOB = """\
import os, signal, sys, time
rank, out = os.environ["JAXCNN_PROCESS_ID"], sys.argv[1]
mode = sys.argv[2]

def on_term(signum, frame):
    if mode == "ignore":
        return
    time.sleep(0.5)  # writing the checkpoint
    open(os.path.join(out, f"saved-{rank}"), "w").write("ok")
    sys.exit(143)

signal.signal(signal.SIGTERM, on_term)
print(f"PID {os.getpid()}", flush=True)
while True:
    time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def _start_launcher(tmp_path, mode, grace, cli=False):
    """Two processes of JOB under `launch(...)`, or under `jaxcnn launch --grace` with `cli`."""
    script = tmp_path / "job.py"
    script.write_text(JOB)
    job = [str(script), str(tmp_path), mode]
    if cli:
        command = [sys.executable, "-m", "jaxcnn.cli", "launch", "--processes", "2", "--grace", str(grace), "--", *job]
    else:
        command = [sys.executable, "-c", f"import sys; from jaxcnn.launch import launch; "
                                         f"sys.exit(launch({job!r}, processes=2, grace={grace}))"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids, lines = [], []
    for line in proc.stdout:  # both processes running, their handlers installed
        lines.append(line)
        if " PID " in line:
            pids.append(int(line.split()[-1]))
        if len(pids) == 2:
            break
    assert len(pids) == 2, "".join(lines)
    return proc, pids, lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_every_process_and_the_launcher_waits_for_their_checkpoints(tmp_path, sig):
    proc, pids, lines = _start_launcher(tmp_path, "save", grace=60)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 128 + sig, text  # 143 for SIGTERM, 130 for SIGINT
    assert sorted(os.listdir(tmp_path)) == ["job.py", "saved-0", "saved-1"], text
    assert f"{signal.Signals(sig).name}: sent SIGTERM to 2 process(es)" in text
    assert not any(_alive(p) for p in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("cli", [False, True], ids=["launch", "jaxcnn-launch-grace"])
def test_a_process_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path, cli):
    grace = 1.5 if cli else 1  # the command line's --grace, not its default of 120 s
    proc, pids, lines = _start_launcher(tmp_path, "ignore", grace=grace, cli=cli)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    text = "".join(lines) + out
    assert proc.returncode == 143, text
    assert f"process 0 did not exit within {grace}s; killing it" in text and "process 1 did not exit" in text
    assert not any(_alive(p) for p in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_no_process_outlives_a_killed_launcher(tmp_path):
    proc, pids, _ = _start_launcher(tmp_path, "save", grace=60)
    proc.kill()  # SIGKILL: no handler runs in the launcher
    proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    assert sorted(os.listdir(tmp_path)) == ["job.py", "saved-0", "saved-1"]  # they saved on the way out
