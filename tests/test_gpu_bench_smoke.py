"""benchmarks/gpu_bench.py and gpu.sh on the CPU: every part's code path in smoke mode, with
TensorFlow (and, in one run, PyTorch) made unimportable, as on the GPU machine."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from benchmarks import gpu_bench  # noqa: E402

BLOCKER = '''
import importlib.abc, os, sys
_BLOCKED = set(os.environ.get("BLOCK_MODULES", "").split(","))
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ImportError(f"{name} is blocked for this test")
        return None
sys.meta_path.insert(0, _Block())
'''


def _env(tmp_path, blocked, data_dir=None):
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, BLOCK_MODULES=",".join(blocked),
               PYTHONPATH=os.pathsep.join([str(site), ROOT, os.environ.get("PYTHONPATH", "")]),
               # gpu.sh runs `python3`: this interpreter's, as in an activated virtual environment
               PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    env.pop(gpu_bench.ALLOW_CPU_ENV, None)
    if data_dir:
        env["JAXCNN_DATA_DIR"] = data_dir
    return env


def test_blocker_blocks(tmp_path):
    env = _env(tmp_path, ["tensorflow"])
    r = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "blocked" in r.stderr


def test_smoke_run_writes_every_part(tmp_path, data_dir):
    """No TensorFlow, no torch: each jax part writes its record, torch parts say skipped, a part
    past its time limit leaves a timeout record, and the summary survives missing parts."""
    out = tmp_path / "gpu.json"
    env = _env(tmp_path, ["tensorflow", "torch"], data_dir)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_bench.py"), "--smoke",
                        "--out", str(out), "--limits", "plain_flax_loop=0.01"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["smoke"] and res["backend"] == "cpu"
    assert set(res["parts"]) == set(gpu_bench.PARTS)
    for name, (_, _, needs) in gpu_bench.PARTS.items():
        rec = res[name]
        if "torch" in needs:
            assert rec == {"skipped": "torch not importable"}, (name, rec)
        elif name == "plain_flax_loop":
            assert rec["error"].startswith("timeout after"), rec
        else:
            assert "error" not in rec and "skipped" not in rec, (name, json.dumps(rec)[:2000])
    n1 = res["n1_jaxcnn"]
    assert {"bf16_b32", "f32_b32"} <= set(n1) and n1["f32_b32"]["images_per_second"] > 0
    t = res["time_to_99"]
    assert t["needed_correct"] == gpu_bench.required_correct(t["target"], t["test_examples"])
    # integer counts in the curve; reached means the count got there
    assert all(isinstance(c, int) for _, _, c in t["curve"])
    if t["seconds"] is not None:
        assert t["curve"][-1][2] >= t["needed_correct"]
    assert res["ceiling"]["f32_matmul_TFLOPs"] > 0
    assert res["mnist_fast"]["test_accuracy_per_epoch"] and res["cifar10_fast"]["test_accuracy_per_epoch"]
    assert {"extract_float32", "finetune_float32"} <= set(res["vgg16"])
    assert "goals" in res["summary"] and not any(k.startswith("n1_b32_jaxcnn") for k in res["summary"])


def test_no_gpu_fails_fast(tmp_path):
    env = _env(tmp_path, ["tensorflow"])
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_bench.py"), "--out",
                        str(tmp_path / "x.json")], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "JAX sees no GPU" in r.stderr
    assert not (tmp_path / "x.json").exists()
    r = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu.sh")], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 3 and "JAX sees no GPU" in r.stderr


@pytest.mark.parametrize("target,n,need", [(0.99, 10000, 9900), (0.07, 100, 7), (0.94, 10000, 9400),
                                           (0.99, 320, 317), (0.3, 320, 96)])
def test_required_correct_is_exact(target, n, need):
    assert gpu_bench.required_correct(target, n) == need


def test_summary_compares_like_with_like():
    rec = lambda ips: {"images_per_second": ips}  # noqa: E731
    res = {"n1_jaxcnn": {"bf16_b128": rec(400), "f32_b128": rec(300)},
           "n1_pytorch": {"eager_bf16_b128": rec(200), "eager_f32_b128": rec(100), "compile_f32_b128": {"error": "x"}},
           "ceiling": {"images_per_second_bandwidth_bf16": 1000}}
    s = gpu_bench.summarize(res, (128,))
    assert s["n1_b128_jaxcnn_bf16_over_pytorch_eager_bf16"] == 2.0
    assert s["n1_b128_jaxcnn_f32_over_pytorch_eager_f32"] == 3.0
    assert not any("compile" in k for k in s) and s["best_jaxcnn"] == "n1_jaxcnn.bf16_b128"
    assert s["n1_bf16_b128_fraction_of_bandwidth_ceiling"] == 0.4
    empty = gpu_bench.summarize({"n1_jaxcnn": {"error": "timeout"}}, (128,))  # nothing measured: no crash
    assert "best_jaxcnn" not in empty and empty["goals"]["time to 99.0% < 0.5 s (N1)"] is None


def test_pytorch_parts_on_cpu():
    pytest.importorskip("torch")
    import numpy as np

    rng = np.random.default_rng(0)
    data = (rng.integers(0, 255, (64, 28, 28, 1), np.uint8), rng.integers(0, 10, 64).astype(np.int32),
            rng.integers(0, 255, (32, 28, 28, 1), np.uint8), rng.integers(0, 10, 32).astype(np.int32))
    for mode in ("eager_f32", "eager_bf16"):
        r = gpu_bench.pytorch_n1(data, 1, 32, mode)
        assert r["mode"] == mode and r["images_per_second"] > 0 and 0 <= r["test_accuracy"] <= 1
    import vgg16

    r = vgg16.bench_torch("finetune", "float32", 2, 32, 1, 1, peak=1e9)
    assert r["framework"].startswith("pytorch") and r["images_per_s"] > 0
