"""Stopping a user's own `Trainer.fit` with SIGTERM or Ctrl-C: a checkpoint is saved, then a
documented exception (`Preempted`, a SystemExit with status 143; `Interrupted`, a
KeyboardInterrupt, 130), no temporary checkpoint folder is left, and the next run resumes bitwise.

In-process (fast): the signal is raised by a callback at a chosen step. As a user's script
(slow): tests/ckpt_worker.py --uncaught, signalled from outside, against an uninterrupted run.
"""

import glob
import importlib.util
import os
import re
import signal
import subprocess
import sys

import chex
import numpy as np
import pytest

from jaxcnn import checkpoint
from jaxcnn.train import Trainer
from jaxcnn.train.callbacks import CSVLogger, EarlyStopping, ReduceLROnPlateau
from tests.helpers import Tiny

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, N = 16, 64  # 4 steps per epoch


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (N, 12, 12, 1), dtype=np.uint8), rng.integers(0, 10, N).astype(np.int32)


class _SignalAt:
    """Raises `sig` in this process after global step `step` (as a user's Ctrl-C or a scheduler)."""

    def __init__(self, sig, step):
        self.sig, self.step = sig, step

    def on_step_end(self, trainer, epoch, step):
        if trainer.global_step == self.step:
            signal.raise_signal(self.sig)


def _fit(workdir, *extra, epochs=2):
    x, y = _data()
    trainer = Trainer(Tiny(), (12, 12, 1), optimizer="adam", seed=0, data_backend="numpy")
    ckpt = checkpoint.CheckpointCallback(os.path.join(workdir, "ckpt"), every_n_steps=100, async_save=True,
                                         best_metric=None, verbose=False)
    callbacks = [ckpt, CSVLogger(os.path.join(workdir, "log.csv")),
                 ReduceLROnPlateau("loss", factor=0.5, patience=0, min_delta=1e9),
                 # best = the first epoch (the loss falls): its weights come back at the end
                 EarlyStopping("loss", mode="max", patience=10, restore_best_weights=True), *extra]
    trainer.fit(x, y, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=callbacks)
    return trainer


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return workdir, _fit(workdir, epochs=3)


@pytest.mark.parametrize("sig, stopped", [(signal.SIGINT, checkpoint.Interrupted),
                                          # the fast tier's SIGTERM: test_checkpoint.py's worker
                                          pytest.param(signal.SIGTERM, checkpoint.Preempted, marks=pytest.mark.slow)])
def test_a_signal_saves_then_raises_and_the_rerun_resumes_bitwise(sig, stopped, tmp_path, uninterrupted):
    # Step 10: mid-epoch 3, after ReduceLROnPlateau lowered the rate (its state is saved too).
    with pytest.raises(stopped) as e:
        _fit(tmp_path, _SignalAt(sig, 10), epochs=3)
    assert isinstance(e.value, checkpoint.TrainingStopped)
    assert isinstance(e.value, KeyboardInterrupt if sig == signal.SIGINT else SystemExit)
    assert e.value.exit_code == 128 + sig and e.value.checkpoint.endswith(os.path.join("ckpt", "10"))
    assert signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL)  # handlers put back
    ckdir = tmp_path / "ckpt"
    assert checkpoint.CheckpointManager(str(ckdir), create=False).all_steps() == [4, 8, 10]
    assert not glob.glob(str(ckdir / "*orbax-checkpoint-tmp*"))
    resumed = _fit(tmp_path, epochs=3)
    ref_dir, ref = uninterrupted
    chex.assert_trees_all_equal(resumed.state.params, ref.state.params)  # epoch 1's, from the checkpoint
    assert dict(resumed.history) | {"seconds": 0} == dict(ref.history) | {"seconds": 0}
    assert resumed.history["learning_rate"] == [0.001, 0.001, 0.0005]
    strip = lambda p: [r.split(",")[:3] + r.split(",")[4:] for r in open(p).read().splitlines()]  # noqa: E731
    assert strip(tmp_path / "log.csv") == strip(ref_dir / "log.csv")


# -- a user's script, signalled from outside ----------------------------------------------------------
_spec = importlib.util.spec_from_file_location("ckpt_worker", os.path.join(HERE, "ckpt_worker.py"))
worker = sys.modules.setdefault("ckpt_worker", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(worker)


def _script(workdir, env, *args):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "ckpt_worker.py"), str(workdir), "--uncaught",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def script_env(tmp_path_factory, data_dir):
    return dict(os.environ, PYTHONPATH=os.path.dirname(HERE), JAXCNN_DATA_DIR=data_dir, JAX_PLATFORMS="cpu",
                JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("xla_cache")),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


@pytest.fixture(scope="module")
def script_reference(tmp_path_factory, script_env):
    workdir = tmp_path_factory.mktemp("script_reference")
    out, err = _script(workdir, script_env).communicate(timeout=600)
    assert "DONE" in out, err[-3000:]
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_users_script_stopped_by_a_signal_exits_cleanly_and_resumes_bitwise(sig, tmp_path, script_env,
                                                                             script_reference):
    from tests.test_checkpoint import assert_same_run

    proc = _script(tmp_path, script_env, "--step-sleep", "0.15")
    for line in proc.stdout:
        if line == f"STEP {worker.STEPS_PER_EPOCH + 3}\n":
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=300)
    name = "SIGTERM" if sig == signal.SIGTERM else r"Ctrl-C \(SIGINT\)"
    assert glob.glob(str(tmp_path / "checkpoints" / "1*")), err[-3000:]
    saved = max(int(os.path.basename(p)) for p in glob.glob(str(tmp_path / "checkpoints" / "[0-9]*")))
    assert re.search(rf"{name}: saved checkpoint \S+/checkpoints/{saved} ", err), err[-3000:]
    if sig == signal.SIGTERM:  # SIGTERM's default made clean: status 143, no traceback
        assert proc.returncode == checkpoint.SIGTERM_EXIT_CODE and "Traceback" not in err, err[-3000:]
    else:  # Ctrl-C: a KeyboardInterrupt, uncaught: Python's traceback and status 1 (exit_on_stop: 130)
        assert proc.returncode == 1, err[-3000:]
        assert "jaxcnn.checkpoint.errors.Interrupted: Ctrl-C (SIGINT): saved checkpoint" in err, err[-3000:]
    assert not glob.glob(str(tmp_path / "checkpoints" / "*orbax-checkpoint-tmp*"))
    out, err = _script(tmp_path, script_env).communicate(timeout=600)
    assert "DONE" in out and f"checkpoints/{saved}: epoch 2" in err, err[-3000:]
    assert_same_run(tmp_path, script_reference)


def test_exit_on_stop_ends_a_script_with_the_signals_status_and_nothing_else():
    @checkpoint.exit_on_stop()
    def main(exc):
        raise exc

    for exc, code in [(checkpoint.Interrupted("Ctrl-C"), 130), (checkpoint.Preempted("SIGTERM"), 143)]:
        with pytest.raises(SystemExit) as e:
            main(exc)
        assert e.value.code == code and e.value.__cause__ is None and type(e.value) is SystemExit
    with pytest.raises(ValueError), checkpoint.exit_on_stop():
        raise ValueError("not a stop")
    with pytest.raises(KeyboardInterrupt), checkpoint.exit_on_stop():  # a plain Ctrl-C (no checkpoint)
        raise KeyboardInterrupt
