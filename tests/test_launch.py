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


# -- a user's script joins the job by itself ---------------------------------------------------------
USER_SCRIPT = """\
import logging
logging.basicConfig(level=logging.INFO)  # as many scripts do, before anything else

import os, sys
import flax.linen as nn
import jax
import numpy as np
from jaxcnn.train import Trainer

class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(4, (3, 3))(x))
        x = nn.Dropout(0.25, deterministic=not train)(x.reshape((x.shape[0], -1)))
        return nn.Dense(3)(x)

if os.environ.get("START_JAX_FIRST"):
    jax.numpy.zeros(1)  # JAX starts alone before the Trainer could join the job
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.uint8)
y = rng.integers(0, 3, 64).astype(np.int32)
trainer = Trainer(Tiny(), (8, 8, 1), optimizer="adam", seed=1)
trainer.fit(x, y, epochs=2, batch_size=16, verbose=2)
print(f"process {jax.process_index()} of {jax.process_count()}", flush=True)
flat = {jax.tree_util.keystr(k): np.asarray(v)
        for k, v in jax.tree_util.tree_leaves_with_path(jax.device_get(trainer.state.params))}
np.savez(os.path.join(sys.argv[1], f"params_{jax.process_index()}.npz"), **flat)
"""


def _user_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXCNN_") or k == "JAXCNN_DATA_DIR"}
    env.update(PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu", **extra)
    env.pop("XLA_FLAGS", None)
    return env


def _launch_user_script(tmp_path, **env):
    script = tmp_path / "my_train.py"
    script.write_text(USER_SCRIPT)
    return subprocess.run([sys.executable, "-m", "jaxcnn.cli", "launch", "--processes", "2", "--timeout", "400",
                           "--", str(script), str(tmp_path)], env=_user_env(**env), cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_users_script_joins_the_job_and_equals_a_two_device_run(tmp_path):
    """`jaxcnn launch --processes 2 -- script.py`, the script only builds a Trainer and fits: both
    processes are one job of 2, their params equal a 1-process run on 2 fake devices; the output
    has one epoch-line format (the script configured root logging) and no gloo lines."""
    import numpy as np

    out = _launch_user_script(tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "[0] process 0 of 2" in text and "[1] process 1 of 2" in text, text[-4000:]
    assert [ln.split(" - ")[0] for ln in text.splitlines() if "Epoch" in ln] == ["[0] Epoch 1/2", "[0] Epoch 2/2"], text
    assert "INFO:jaxcnn" not in text and "Gloo" not in text, text

    single = tmp_path / "single"
    single.mkdir()
    proc = subprocess.run([sys.executable, str(tmp_path / "my_train.py"), str(single)], cwd=tmp_path,
                          env=_user_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "process 0 of 1" in proc.stdout, proc.stderr[-4000:]
    p0, p1, p = (np.load(d / f"params_{i}.npz") for d, i in ((tmp_path, 0), (tmp_path, 1), (single, 0)))
    assert set(p0) == set(p) == {"['Conv_0']['bias']", "['Conv_0']['kernel']", "['Dense_0']['bias']",
                                 "['Dense_0']['kernel']"}
    for k in p:
        np.testing.assert_array_equal(p0[k], p1[k])
        np.testing.assert_allclose(p0[k], p[k], atol=1e-6)


@pytest.mark.slow
def test_a_launched_process_that_started_jax_alone_fails_with_one_line(tmp_path):
    out = _launch_user_script(tmp_path, START_JAX_FIRST="1")
    assert out.returncode == 1, out.stdout[-4000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(("[0]", "[1]"))]
    assert sorted(ln[:4] for ln in lines) == ["[0] ", "[1] "], out.stdout  # one line each, no traceback
    for i, line in enumerate(sorted(lines)):
        assert line.startswith(f"[{i}] jaxcnn: error: this process was launched as process {i} of 2"), line
        assert "jaxcnn.parallel.initialize()" in line
    assert not list(tmp_path.glob("params_*.npz"))  # nobody trained alone


def test_auto_initialize_joins_only_launched_processes_and_names_the_fix(monkeypatch, capsys):
    """In this process JAX has started alone: as a launched process it must refuse to go on."""
    import jax

    from jaxcnn import parallel
    from jaxcnn.train import Trainer

    jax.devices()  # JAX's backend has started (as in any test process)

    for var in ("JAXCNN_COORDINATOR", "JAXCNN_NUM_PROCESSES", "JAXCNN_PROCESS_ID", "JAXCNN_DISTRIBUTED",
                "JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "SLURM_STEP_NODELIST", "OMPI_COMM_WORLD_SIZE",
                "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    assert parallel.auto_initialize() is False  # not launched: nothing to join
    monkeypatch.setenv("JAXCNN_NUM_PROCESSES", "1")
    assert parallel.auto_initialize() is False

    monkeypatch.setenv("JAXCNN_COORDINATOR", "localhost:1")
    monkeypatch.setenv("JAXCNN_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAXCNN_PROCESS_ID", "1")
    for start in (parallel.auto_initialize, parallel.make_mesh, lambda: Trainer(object(), (4, 4, 1)),
                  parallel.initialize):
        with pytest.raises(parallel.LaunchError, match=r"launched as process 1 of 2, but JAX started alone .*"
                                                       r"call jaxcnn.parallel.initialize\(\) at the top"):
            start()
    monkeypatch.setenv("JAXCNN_DISTRIBUTED", "0")  # separate jobs on purpose
    assert parallel.auto_initialize() is False

    for var in ("JAXCNN_COORDINATOR", "JAXCNN_NUM_PROCESSES", "JAXCNN_PROCESS_ID", "JAXCNN_DISTRIBUTED"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # srun with 4 tasks
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node1")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert parallel.launched_processes() == 4
    with pytest.raises(parallel.LaunchError, match="launched as one of 4 processes") as info:
        parallel.auto_initialize()
    for var in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host0:1234")  # a count only JAX can tell
    with pytest.raises(parallel.LaunchError, match="launched as one of several processes"):
        parallel.auto_initialize()

    # Uncaught in a script: the one line, as the command line shows errors; JAXCNN_DEBUG: the traceback.
    monkeypatch.delenv("JAXCNN_DEBUG", raising=False)
    sys.excepthook(type(info.value), info.value, info.value.__traceback__)
    assert capsys.readouterr().err == f"jaxcnn: error: {info.value}\n"
    monkeypatch.setenv("JAXCNN_DEBUG", "1")
    sys.excepthook(type(info.value), info.value, info.value.__traceback__)
    assert "Traceback (most recent call last)" in capsys.readouterr().err
