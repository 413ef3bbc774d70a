"""One live run per workdir (jaxcnn.lock): a live owner refuses a second run, a dead one's lock is taken over.

The owner is a real second process (a sleeping holder); "dead" is that process killed with SIGKILL.
"""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from jaxcnn import lock as lock_mod
from jaxcnn.lock import LOCK_FILE, FolderBusyError, FolderLock
from jaxcnn.run import RunFolder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLDER = ("import sys, time\nfrom jaxcnn.lock import FolderLock\n"
          "FolderLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(120)\n")


def hold(folder):
    """A process that takes `folder`'s lock and sleeps; returns once it holds it."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def holder(tmp_path):
    proc = hold(tmp_path / "run")
    yield proc
    if proc.poll() is None:
        kill(proc)


def test_a_live_lock_refuses_a_second_run_in_one_line_naming_pid_and_host(tmp_path, holder):
    with pytest.raises(FolderBusyError) as e:
        FolderLock(tmp_path / "run").acquire()
    msg = str(e.value)
    assert f"pid {holder.pid} on host {socket.gethostname()}" in msg and "\n" not in msg
    assert os.path.join(str(tmp_path / "run"), LOCK_FILE) in msg  # the file to delete if that run is gone
    record = json.loads((tmp_path / "run" / LOCK_FILE).read_text())
    assert record["pid"] == holder.pid and record["host"] == socket.gethostname()


def test_the_lock_of_a_killed_run_is_taken_over_with_a_message(tmp_path, holder, capsys):
    kill(holder)  # SIGKILL: no chance to clean up; its record stays in the file
    assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == holder.pid
    with FolderLock(tmp_path / "run") as held:
        assert held.held
        assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert f"took over the lock left by pid {holder.pid}" in err and "no longer running" in err
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released: the file is gone


def test_without_flock_the_record_decides(tmp_path, monkeypatch, capsys):
    """A filesystem without flock: a dead pid's lock is stale, a live pid's (or another host's) is not."""
    monkeypatch.setattr(lock_mod, "_flock", lambda fd: None)
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        path = folder / LOCK_FILE
        for pid, host in ((sleeper.pid, socket.gethostname()), (dead.pid, "elsewhere")):
            path.write_text(json.dumps({"pid": pid, "host": host}))
            with pytest.raises(FolderBusyError, match=f"pid {pid} on host {host}"):
                FolderLock(folder).acquire()
        path.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
        FolderLock(folder).acquire().release()
        assert f"took over the lock left by pid {dead.pid}" in capsys.readouterr().err
    finally:
        kill(sleeper)


def test_released_on_exceptions_and_retaken_by_the_same_process(tmp_path):
    with pytest.raises(RuntimeError):
        with FolderLock(tmp_path):
            raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()
    first = FolderLock(tmp_path).acquire()  # e.g. a fit that raised before releasing it
    second = FolderLock(tmp_path).acquire()  # the same process retrying: takes it over
    assert second.held and not first.held
    first.release()  # the superseded holder lets nothing go
    assert (tmp_path / LOCK_FILE).exists()
    second.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_fresh_moves_the_run_aside_and_keeps_the_workdir_locked(tmp_path):
    work = tmp_path / "run"
    folder = RunFolder(str(work))
    with folder.lock():
        (work / "history.json").write_text("{}")
        aside = folder.move_aside("t")
        assert aside and not os.path.exists(os.path.join(aside, LOCK_FILE))
        with open(work / LOCK_FILE) as f:  # the new folder's lock file is locked by this process
            with pytest.raises(BlockingIOError):
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert not (work / LOCK_FILE).exists()
    assert RunFolder(str(tmp_path / "empty")).move_aside() is None  # nothing but a lock: nothing to move


def test_train_and_evaluate_refuses_a_workdir_in_use(tmp_path, holder):
    from jaxcnn.config import ExperimentConfig
    from jaxcnn.experiment import train_and_evaluate

    config = ExperimentConfig(name="t", model="mnist_cnn", train_limit=8, test_limit=8)
    with pytest.raises(FolderBusyError, match=f"workdir is in use by another run \\(pid {holder.pid}"):
        train_and_evaluate(config, str(tmp_path / "run"), verbose=0)
    assert not (tmp_path / "run" / "config.json").exists()  # refused before anything was written


@pytest.fixture(scope="module")
def tiny_trainer():
    from jaxcnn.train import Trainer
    from tests.helpers import Tiny

    return Trainer(Tiny(), (8, 8, 1))


@pytest.mark.slow  # builds a Trainer (about a second)
def test_fit_with_checkpoints_refuses_a_checkpoint_directory_in_use(tmp_path, tiny_trainer):
    from jaxcnn.train.callbacks import CheckpointCallback

    other = hold(tmp_path / "run" / "checkpoints")
    try:
        trainer = tiny_trainer
        x, y = np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, np.int32)
        with pytest.raises(FolderBusyError, match=f"checkpoint directory is in use by another run \\(pid {other.pid}"):
            trainer.fit(x, y, batch_size=8, verbose=0,
                        callbacks=[CheckpointCallback(str(tmp_path / "run" / "checkpoints"))])
        assert int(trainer.state.step) == 0 and not any(p.isdigit() for p in os.listdir(tmp_path / "run" / "checkpoints"))
    finally:
        kill(other)


@pytest.mark.slow
def test_the_cli_refuses_a_second_train_on_a_live_workdir_in_one_line(tmp_path, holder, data_dir):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAXCNN_DATA_DIR=data_dir, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "train", "mnist_cnn", "--workdir",
                           str(tmp_path / "run"), "--epochs", "1", "--limit", "64"],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and f"in use by another run (pid {holder.pid} on host" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_fit_with_a_checkpoint_directory_that_is_a_file_stops_before_training(tmp_path, tiny_trainer):
    """Issue 30 item 4: refused before the first step, not at the first save after an epoch."""
    from jaxcnn.checkpoint import CheckpointError
    from jaxcnn.train.callbacks import CheckpointCallback

    (tmp_path / "checkpoints").write_text("")
    with pytest.raises(CheckpointError, match="checkpoints: exists and is not a directory"):
        tiny_trainer.fit(np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, np.int32), batch_size=8, verbose=0,
                         callbacks=[CheckpointCallback(str(tmp_path / "checkpoints"))])
    assert int(tiny_trainer.state.step) == 0 and os.path.isfile(tmp_path / "checkpoints")


@pytest.mark.parametrize("flock", [True, False])
def test_a_lock_file_with_damaged_content_is_taken_over(tmp_path, monkeypatch, flock):
    """A record cut short by a crash mid-write (or any bytes): no owner can be alive behind it."""
    if not flock:
        monkeypatch.setattr(lock_mod, "_flock", lambda fd: None)
    for content in (b"", b'{"pid": ', b"\xff\xfe", b'{"pid": "x", "host": null}', b"[1, 2]"):
        (tmp_path / LOCK_FILE).write_bytes(content)
        with FolderLock(tmp_path) as held:
            assert held.held and json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
