"""Device strategies, multi-host start-up and `jaxcnn launch`.

Multi-device checks run in fresh interpreters (tests/_parallel_worker.py) with fake CPU devices:
this pytest process keeps its single device (see conftest.py).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings

import chex
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "_parallel_worker.py")
TOL = 1e-5


def _env(devices: int | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXCNN_") or k == "JAXCNN_DATA_DIR"}
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices or 1}"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _run(args, devices, timeout=600):
    proc = subprocess.run([sys.executable, WORKER, *args], env=_env(devices), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    """The worker's `steps` results on 8 fake devices (one interpreter for all step checks)."""
    out = tmp_path_factory.mktemp("steps") / "steps.json"
    _run(["steps", str(out)], devices=8)
    return json.loads(out.read_text())


# -- one step on 8 devices == one step on 1 device ------------------------------------------------
@pytest.mark.parametrize("case", ["n1/jit", "n1/pmap", "bn/jit", "bn/pmap", "dropout/jit"])
def test_step_on_8_devices_equals_1_device(eight_devices, case):
    """Batch 64, two SGD steps: loss, gradients, params (and BN stats) agree to 1e-5.

    n1 = mnist_cnn (N1); bn = N7-like BatchNorm model (the pmap strategy synchronizes its
    normalization statistics through `bn_axis_name`); dropout = N2-like model under sharded jit,
    whose masks are those of the global batch.
    """
    diffs = eight_devices["parity"][case]
    assert diffs["loss"] < TOL and diffs["grads"] < TOL and diffs["params"] < TOL, diffs
    assert diffs["batch_stats"] < TOL, diffs


def test_literal_jax_pmap_runs_the_same_step(eight_devices):
    assert eight_devices["jax.pmap_vs_pmap_strategy"] < TOL


def test_pmap_rng_per_device_masks_and_reproducible(eight_devices):
    rng = eight_devices["rng"]
    assert rng["devices"] == 8 and rng["distinct_masks"] == 8  # every device its own mask
    assert rng["same_seed_diff"] == 0.0  # same seed, same result, bit for bit
    assert rng["other_seed_diff"] > 1e-3  # the seed matters
    assert rng["vs_one_device_diff"] > 1e-4  # documented: pmap masks differ from 1-device masks


def test_batch_size_not_divisible_by_devices(eight_devices):
    errors = eight_devices["batch_errors"]
    for key in ("jit", "pmap", "fit"):
        assert errors[key] is not None, key
    assert "60 does not divide evenly over 8 devices" in errors["jit"]
    assert "multiple of 8, e.g. 56 or 64" in errors["jit"] and "multiple of 8" in errors["pmap"]
    assert "batch size 12" in errors["fit"] and "e.g. 8 or 16" in errors["fit"]


# -- two real processes == one process with the same 4 devices -------------------------------------
def test_two_processes_match_single_process_on_4_devices(tmp_path):
    """`jaxcnn launch` 2 processes x 2 devices: same params on both, equal to 1 process x 4."""
    from jaxcnn.launch import launch

    multi, single = tmp_path / "multi", tmp_path / "single"
    out = io.StringIO()
    rc = launch([WORKER, "train", str(multi)], processes=2, devices_per_process=2, timeout=300, out=out,
                env=_env(1))
    assert rc == 0, out.getvalue()[-4000:]
    _run(["train", str(single)], devices=4)

    results = [json.loads((multi / f"result_{i}.json").read_text()) for i in (0, 1)]
    ref = json.loads((single / "result_0.json").read_text())
    assert [r["process_index"] for r in results] == [0, 1]
    assert all(r["process_count"] == 2 and r["device_count"] == 4 for r in results)
    for r in results + [ref]:
        assert r["eval_count"] == 37  # every example once across hosts, padding masked
        assert r["predict_len"] == 37
    for r in results:
        assert r["evaluate"]["loss"] == pytest.approx(ref["evaluate"]["loss"], abs=TOL)
        assert r["evaluate"]["accuracy"] == ref["evaluate"]["accuracy"]
        assert r["predict_sum"] == pytest.approx(ref["predict_sum"], abs=1e-4)
    p0, p1, p = (np.load(d / f"params_{i}.npz") for d, i in ((multi, 0), (multi, 1), (single, 0)))
    assert set(p0) == set(p) and any("batch_stats" in k for k in p0)
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k])
        np.testing.assert_allclose(p0[k], p[k], atol=TOL)


def test_two_processes_stream_disjoint_records_and_match_the_in_memory_run(tmp_path):
    """Streamed from a prepared dataset under `jaxcnn launch` (2 processes x 1 device): in each
    epoch the processes read disjoint records that together are the whole split, and the run
    equals a 1-process in-memory run on 2 devices."""
    from jaxcnn.launch import launch

    prepared, multi, single = tmp_path / "prepared", tmp_path / "multi", tmp_path / "single"
    _run(["prepare", str(prepared)], devices=1)
    out = io.StringIO()
    rc = launch([WORKER, "train", str(multi)], processes=2, devices_per_process=1, timeout=300, out=out,
                env=dict(_env(1), WORKER_PREPARED=str(prepared)))
    assert rc == 0, out.getvalue()[-4000:]
    _run(["train", str(single)], devices=2)
    results = [json.loads((multi / f"result_{i}.json").read_text()) for i in (0, 1)]
    ref = json.loads((single / "result_0.json").read_text())
    reads = [r["train_reads"] for r in results]
    assert len(reads[0]) == len(reads[1]) == 96  # 2 epochs x 6 steps x 8 examples per process
    for epoch in (0, 1):
        a, b = (set(r[epoch * 48:(epoch + 1) * 48]) for r in reads)
        assert len(a) == len(b) == 48 and not a & b and a | b == set(range(96))
    for r in results:
        assert r["eval_count"] == 37 and r["predict_len"] == 37
        assert r["evaluate"]["accuracy"] == ref["evaluate"]["accuracy"]
        assert r["evaluate"]["loss"] == pytest.approx(ref["evaluate"]["loss"], abs=TOL)
    p0, p = np.load(multi / "params_0.npz"), np.load(single / "params_0.npz")
    for k in p:
        np.testing.assert_allclose(p0[k], p[k], atol=TOL)


# -- launch: output, failures ------------------------------------------------------------------------
def test_launch_prefixes_output_and_stops_others_on_failure(tmp_path, capsys):
    """Process 1 fails: process 0 (which would wait forever) is stopped, the status comes back."""
    from jaxcnn.cli import main

    script = tmp_path / "job.py"
    script.write_text(
        "import os, sys, time\n"
        "pid = int(os.environ['JAXCNN_PROCESS_ID'])\n"
        "print(f'hello from {pid} of {os.environ[\"JAXCNN_NUM_PROCESSES\"]}', "
        "os.environ['XLA_FLAGS'].split()[-1], flush=True)\n"
        "if pid == 1:\n    sys.exit(3)\n"
        "time.sleep(600)\n")
    rc = main(["launch", "--processes", "2", "--devices-per-process", "3", "--timeout", "120", "--", str(script)])
    text = capsys.readouterr().out
    assert rc == 3, text
    assert "[0] hello from 0 of 2 --xla_force_host_platform_device_count=3" in text
    assert "[1] hello from 1 of 2" in text
    assert "process 1 exited with status 3" in text


def test_launch_success_and_command_forms(tmp_path):
    from jaxcnn.launch import command_for, launch, process_env

    script = tmp_path / "ok.py"
    script.write_text("print('ok')\n")
    out = io.StringIO()
    assert launch([str(script)], processes=2, out=out) == 0
    assert sorted(out.getvalue().splitlines()) == ["[0] ok", "[1] ok"]
    assert command_for(["train", "mnist_cnn"])[1:] == ["-m", "jaxcnn.cli", "train", "mnist_cnn"]
    env = process_env(1, 4, 2, 1234, base={"XLA_FLAGS": "--foo --xla_force_host_platform_device_count=8"})
    assert env["XLA_FLAGS"] == "--foo --xla_force_host_platform_device_count=2"
    assert (env["JAXCNN_COORDINATOR"], env["JAXCNN_NUM_PROCESSES"], env["JAXCNN_PROCESS_ID"]) == (
        "localhost:1234", "4", "1")
    with pytest.raises(ValueError, match="nothing to launch"):
        command_for([])


# -- start-up ------------------------------------------------------------------------------------------
_CLUSTER_VARS = ("JAXCNN_COORDINATOR", "JAXCNN_NUM_PROCESSES", "JAXCNN_PROCESS_ID", "JAXCNN_DISTRIBUTED",
                 "JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES",
                 "TPU_PROCESS_ADDRESSES")


def test_initialize_is_a_no_op_on_one_process(monkeypatch):
    from jaxcnn import parallel

    for var in _CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    assert parallel.initialize() is False
    monkeypatch.setenv("JAXCNN_NUM_PROCESSES", "1")
    assert parallel.initialize() is False
    monkeypatch.setenv("SLURM_JOB_ID", "7")  # a one-task SLURM job is one process
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.delenv("JAXCNN_NUM_PROCESSES")
    assert parallel.initialize() is False


def test_initialize_rejects_incomplete_settings(monkeypatch):
    from jaxcnn import parallel

    for var in _CLUSTER_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JAXCNN_NUM_PROCESSES", "2")
    with pytest.raises(ValueError, match="JAXCNN_COORDINATOR"):
        parallel.initialize()
    with pytest.raises(ValueError, match="process id 2 is not in 0..1"):
        parallel.initialize(coordinator_address="localhost:1", process_id=2)


def test_fake_devices_flag_in_a_fresh_process():
    code = "from jaxcnn.parallel import setup; setup(fake_devices=3); import jax; print(jax.device_count())"
    env = _env(1)
    env.pop("XLA_FLAGS")
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.stdout.strip() == "3", proc.stderr[-2000:]


# -- strategies in this (1-device) process ---------------------------------------------------------
def test_get_strategy():
    from jaxcnn import parallel

    assert isinstance(parallel.get_strategy(), parallel.DataParallel)
    assert isinstance(parallel.get_strategy("pmap"), parallel.PmapParallel)
    with pytest.raises(ValueError, match="known: jit, pmap"):
        parallel.get_strategy("tpu")


def test_trainer_with_pmap_strategy_matches_jit_on_one_device():
    """The Trainer's public behaviour is the same under both strategies (state, evaluate, predict)."""
    from tests._parallel_worker import BnDropoutCNN

    from jaxcnn.train import Trainer

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 12, 12, 3)).astype(np.uint8)
    y = rng.integers(0, 2, 40).astype(np.int32)
    runs = {}
    for strategy in ("jit", "pmap"):
        # SGD: Adam's first updates amplify float rounding in near-zero gradients to ~lr.
        t = Trainer(BnDropoutCNN(dropout=0.0), (12, 12, 3), loss="binary_crossentropy", optimizer="sgd",
                    strategy=strategy, data_backend="numpy")
        t.fit(x, y, epochs=1, batch_size=8, verbose=0)
        runs[strategy] = (t.state.params, t.evaluate(x, y, batch_size=16), t.predict(x[:13], batch_size=5))
    (pj, ej, yj), (pp, ep, yp) = runs["jit"], runs["pmap"]
    chex.assert_trees_all_close(pj, pp, atol=TOL)
    assert ep["loss"] == pytest.approx(ej["loss"], abs=TOL) and ep["accuracy"] == ej["accuracy"]
    chex.assert_shape([yj, yp], (13, 1))
    chex.assert_trees_all_close(yj, yp, atol=TOL)


def test_pmap_warns_when_batchnorm_cannot_be_synchronized():
    import flax.linen as nn

    from jaxcnn.models.layers import BatchNorm
    from jaxcnn.train import Trainer

    class PlainBn(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(2)(BatchNorm(use_running_average=not train)(x.reshape((x.shape[0], -1))))

    with pytest.warns(UserWarning, match="bn_axis_name"):
        Trainer(PlainBn(), (4, 4, 1), strategy="pmap")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(PlainBn(), (4, 4, 1), strategy="jit")
