"""jaxcnn vs PyTorch on one accelerator: N1, the fast MNIST/CIFAR-10 recipes and VGG16.

    bash benchmarks/gpu.sh            # or: python benchmarks/gpu_bench.py --out gpu.json [--smoke]

No TensorFlow needed: MNIST comes from the IDX files (`$JAXCNN_DATA_DIR/mnist` or the copy bundled
with jaxcnn), CIFAR-10 from the JPEG copy in `$JAXCNN_DATA_DIR`.

Every part runs in its own process with its own time limit, all under one budget (`--budget`,
default 450 s), in order of importance; the JSON file is rewritten after every part (and after
every record a part emits), so a run that is cut off keeps what it measured. A part that runs
past its limit leaves {"error": "timeout ..."} and the records it emitted before. Parts:

- `n1_jaxcnn`: `Trainer.fit(road="device")`, N1 MNIST CNN, Adam, f32 and bf16 at batch 32, 128
  and 1024: seconds per epoch (the first, which compiles, apart), images/second, test accuracy.
- `time_to_99`: device road, bf16, batch 128; after each chunk of steps the test set is scored on
  the device (integer correct counts, not timed): training seconds until >= ceil(0.99 n) correct.
- `ceiling`: measured memory bandwidth and f32/bf16 matmul rates (random operands), and the N1
  images/second they allow under a rough traffic model.
- `n1_pytorch`: the same net in PyTorch, data on the device: f32 eager, bf16 autocast eager,
  f32 and bf16 under `torch.compile`.
- `mnist_fast`, `mnist_fast_pytorch`, `cifar10_fast`, `cifar10_fast_pytorch`: the record-style
  recipes (jaxcnn.speedrun) and their PyTorch twins: training seconds to the target accuracy.
- `vgg16`, `vgg16_pytorch`: VGG16 at 224x224, feature extraction and fine-tuning, at a GPU-sized
  batch, against the measured matmul rate.
- `plain_flax_loop`: flax TrainState + optax + one `jax.jit` step per batch from host arrays.

The summary compares like with like: jaxcnn bf16 with PyTorch autocast bf16, f32 with f32
(eager and compiled), at the same batch size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch shares the GPU

import numpy as np  # noqa: E402

from jaxcnn.speedrun import required_correct  # noqa: E402  (ceil(target * n), exactly)

# N1 per image: forward activations (conv1 26x26x32, pool 13x13x32, conv2 11x11x64, pool 5x5x64,
# dense 64, logits 10) and forward multiply-adds x2 (conv1, conv2, dense1, logits).
N1_ACTIVATIONS = 26 * 26 * 32 + 13 * 13 * 32 + 11 * 11 * 64 + 5 * 5 * 64 + 64 + 10
N1_FORWARD_FLOPS = 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 288 + 1600 * 64 + 64 * 10)

ALLOW_CPU_ENV = "JAXCNN_GPU_BENCH_ALLOW_CPU"


def load_mnist(limit=None):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist")
    x, y, xt, yt = ds.x_train, ds.y_train.astype(np.int32), ds.x_test, ds.y_test.astype(np.int32)
    if limit:
        x, y, xt, yt = x[:limit], y[:limit], xt[: limit // 2], yt[: limit // 2]
    return x, y, xt, yt


def sync(tree):
    import jax

    jax.block_until_ready(tree)


def _steady(secs):
    return float(np.median(secs[1:])) if len(secs) > 1 else secs[0]


# -- parts -------------------------------------------------------------------------------------
def jaxcnn_device(data, epochs, batch_size, precision):
    """N1 through `Trainer.fit(road="device")`, about 6 dispatches per epoch."""
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer

    x, y, xt, yt = data
    steps = len(x) // batch_size
    k = max(1, math.ceil(steps / 6))
    t = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", compute_dtype=precision, data_backend="numpy")
    hist = t.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, road="device", steps_per_call=k)
    secs = hist["seconds"]
    steady = _steady(secs)
    acc = t.evaluate(xt, yt, batch_size=1000)["accuracy"]
    return {"epoch_seconds": [round(s, 4) for s in secs], "steady_epoch_seconds": round(steady, 4),
            "train_seconds_all_epochs_after_compile": round(sum(secs[1:]) + steady, 4),
            "images_per_second": round(steps * batch_size / steady), "test_accuracy": round(acc, 4),
            "road": t.road, "precision": precision, "batch_size": batch_size, "steps_per_call": k}


def n1_jaxcnn(args, emit):
    data = load_mnist(args.limit)
    for batch in args.n1_batches:
        for precision in ("bf16", "f32"):
            emit(f"{precision}_b{batch}", jaxcnn_device(data, args.epochs, batch, precision))


def time_to_accuracy(data, batch_size, precision, target=0.99, max_epochs=10):
    """Device road; after each chunk the test set is scored on the device (not timed)."""
    import jax
    import jax.numpy as jnp

    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer
    from jaxcnn.train.ondevice import DeviceRoad, normalize_images
    from jaxcnn.train.step import predict_logits

    x, y, xt, yt = data
    t = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", compute_dtype=precision, data_backend="numpy")
    steps = len(x) // batch_size
    road = DeviceRoad(t, x, y, batch_size, steps_per_call=max(1, math.ceil(steps / 6)))
    xt_d, yt_d = jax.device_put(xt), jax.device_put(yt)
    need = required_correct(target, len(yt))

    @jax.jit
    def n_correct(state, images, labels):  # the test set is an argument, not a baked-in constant
        logits = predict_logits(state, normalize_images(images), t.compute_dtype)
        return jnp.sum(logits.argmax(-1) == labels, dtype=jnp.int32)

    # compile every chunk shape and the scoring on a copy of the state (the chunk donates it),
    # then start again from the initial state, so no compile is timed
    initial = jax.tree.map(jnp.copy, t.state)
    for _, block in road.chunks(0):
        road.run_chunk(block, 0)
    int(n_correct(t.state, xt_d, yt_d))
    t.state = initial
    trained, curve = 0.0, []
    for epoch in range(max_epochs):
        for lo, block in road.chunks(epoch):
            t0 = time.perf_counter()
            road.run_chunk(block, epoch)
            sync(t.state)
            trained += time.perf_counter() - t0
            correct = int(n_correct(t.state, xt_d, yt_d))
            curve.append((round(epoch + (lo + len(block)) / road.steps, 3), round(trained, 4), correct))
            if correct >= need:
                return {"target": target, "needed_correct": need, "test_examples": len(yt),
                        "seconds": round(trained, 4), "epochs": curve[-1][0], "curve": curve,
                        "precision": precision, "batch_size": batch_size}
    return {"target": target, "needed_correct": need, "test_examples": len(yt), "seconds": None,
            "curve": curve, "note": f"not reached in {max_epochs} epochs"}


def time_to_99(args, emit):
    target, epochs = (0.3, 2) if args.smoke else (0.99, 10)
    emit(None, time_to_accuracy(load_mnist(args.limit), args.batch_size, "bf16", target, epochs))


def plain_flax_loop(args, emit):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.max_pool(nn.relu(nn.Conv(32, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
            x = nn.max_pool(nn.relu(nn.Conv(64, (3, 3), padding="VALID")(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
            return nn.Dense(10)(x)

    x, y, _, _ = load_mnist(args.limit)
    batch_size, model = args.batch_size, CNN()
    state = train_state.TrainState.create(apply_fn=model.apply, tx=optax.adam(1e-3, eps=1e-7),
                                          params=model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"])

    def step(state, images, labels):
        def loss_fn(p):
            logits = state.apply_fn({"params": p}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

    step = jax.jit(step, donate_argnums=(0,))
    steps = len(x) // batch_size
    secs = []
    for epoch in range(args.epochs):
        order = np.random.default_rng(epoch).permutation(len(x))
        t0 = time.perf_counter()
        for s in range(steps):
            rows = order[s * batch_size:(s + 1) * batch_size]
            state = step(state, x[rows].astype(np.float32) / 255.0, y[rows])
        sync(state)
        secs.append(time.perf_counter() - t0)
    steady = _steady(secs)
    emit(None, {"epoch_seconds": [round(s, 4) for s in secs], "steady_epoch_seconds": round(steady, 4),
                "images_per_second": round(steps * batch_size / steady), "batch_size": batch_size})


def pytorch_n1(data, epochs, batch_size, mode):
    """N1 in PyTorch with the data on the device. `mode`: eager_f32 | eager_bf16 | compile_f32 | compile_bf16
    (bf16: `torch.autocast`, the counterpart of jaxcnn's bf16 compute with float32 params)."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    x, y, xt, yt = data
    xd = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)  # uint8 on the device
    yd = torch.from_numpy(y.astype(np.int64)).to(dev)
    lossf = nn.CrossEntropyLoss()
    compiled, bf16 = mode.startswith("compile"), mode.endswith("bf16")
    fwd = torch.compile(model) if compiled else model

    def step(rows):
        images = xd[rows].float().div_(255.0)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = lossf(fwd(images), yd[rows])
        loss.backward()
        opt.step()

    def synchronize():
        if dev == "cuda":
            torch.cuda.synchronize()

    steps = len(x) // batch_size
    secs = []
    for _ in range(epochs):
        order = torch.randperm(len(x), device=dev)
        synchronize()
        t0 = time.perf_counter()
        for s in range(steps):
            step(order[s * batch_size:(s + 1) * batch_size])
        synchronize()
        secs.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        xtd = torch.from_numpy(xt.transpose(0, 3, 1, 2).copy()).to(dev).float() / 255.0
        correct = int((model(xtd).argmax(1).cpu() == torch.from_numpy(yt.astype(np.int64))).sum())
    steady = _steady(secs)
    return {"epoch_seconds": [round(s, 4) for s in secs], "steady_epoch_seconds": round(steady, 4),
            "images_per_second": round(steps * batch_size / steady), "test_accuracy": round(correct / len(yt), 4),
            "torch": torch.__version__, "device": dev, "mode": mode, "batch_size": batch_size}


def n1_pytorch(args, emit):
    data = load_mnist(args.limit)
    for batch in args.n1_batches:
        for mode in args.torch_modes:
            try:
                emit(f"{mode}_b{batch}", pytorch_n1(data, args.epochs, batch, mode))
            except Exception as e:  # noqa: BLE001  (torch.compile may be unavailable; keep the others)
                emit(f"{mode}_b{batch}", _error(e))


def ceiling(args, emit):
    """Measured bandwidth and f32/bf16 matmul rates (random operands), and the N1 images/s they allow.

    Traffic model (a floor): per image, the forward writes its activations once and the backward
    reads them and writes and reads their gradients: ~4 x activations x bytes per element. Compute:
    training ~ 3 x forward FLOPs.
    """
    import jax
    import jax.numpy as jnp

    smoke = args.smoke
    key = jax.random.PRNGKey(0)
    n = (1 << 22) if smoke else (1 << 28)  # 16 MiB / 1 GiB of float32
    a = jax.random.normal(key, (n,), jnp.float32)
    scale = jax.jit(lambda v: v * 1.0001)
    scale(a).block_until_ready()
    reps = 3 if smoke else 20
    t0 = time.perf_counter()
    for _ in range(reps):
        b = scale(a)
    b.block_until_ready()
    bw = 2 * 4 * n * reps / (time.perf_counter() - t0)
    del a, b
    m = 512 if smoke else 8192
    out = {"bandwidth_GBps": round(bw / 1e9, 1)}
    mm = jax.jit(lambda p, q: p @ q)
    for name, dtype in (("f32", jnp.float32), ("bf16", jnp.bfloat16)):
        p, q = (jax.random.normal(k, (m, m), jnp.float32).astype(dtype) for k in jax.random.split(key))
        mm(p, q).block_until_ready()
        best = float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            mm(p, q).block_until_ready()
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_matmul_TFLOPs"] = round(2 * m ** 3 / best / 1e12, 2)
    out.update({"matmul_size": m, "n1_activations_per_image": N1_ACTIVATIONS,
                "n1_train_flops_per_image": 3 * N1_FORWARD_FLOPS,
                "images_per_second_bandwidth_bf16": round(bw / (4 * N1_ACTIVATIONS * 2)),
                "images_per_second_bandwidth_f32": round(bw / (4 * N1_ACTIVATIONS * 4)),
                "images_per_second_compute_bf16": round(out["bf16_matmul_TFLOPs"] * 1e12 / (3 * N1_FORWARD_FLOPS))})
    emit(None, out)


def mnist_fast(args, emit):
    import mnist_fast as bench

    emit(None, bench.run_jax(seed=0, limit=args.limit, smoke=args.smoke))


def mnist_fast_pytorch(args, emit):
    import mnist_fast as bench

    emit(None, bench.run_torch(seed=0, limit=args.limit, smoke=args.smoke))


def cifar10_fast(args, emit):
    import cifar10_fast as bench

    emit(None, bench.run_jax(seed=0, limit=args.limit, smoke=args.smoke))


def cifar10_fast_pytorch(args, emit):
    import cifar10_fast as bench

    emit(None, bench.run_torch(seed=0, limit=args.limit, smoke=args.smoke))


def _vgg_args(args, framework):
    size, batch, iters = (32, 2, 1) if args.smoke else (224, 64, 5)
    return ["--size", str(size), "--batch", str(batch), "--iters", str(iters), "--modes", "extract,finetune",
            "--framework", framework] + (["--matmul", "256", "--dtypes", "float32"] if args.smoke else [])


def vgg16(args, emit):
    import vgg16 as bench

    for r in bench.main(_vgg_args(args, "jaxcnn"))["results"]:
        emit(f"{r['mode']}_{r['dtype']}", r)


def vgg16_pytorch(args, emit):
    import vgg16 as bench

    for r in bench.main(_vgg_args(args, "pytorch"))["results"]:
        emit(f"{r['mode']}_{r['dtype']}", r)


# name -> (function, seconds allowed on a GPU, modules it needs); run in this order.
PARTS = {
    "n1_jaxcnn": (n1_jaxcnn, 90, ()),
    "time_to_99": (time_to_99, 40, ()),
    "ceiling": (ceiling, 20, ()),
    "n1_pytorch": (n1_pytorch, 90, ("torch",)),
    "mnist_fast": (mnist_fast, 35, ()),
    "mnist_fast_pytorch": (mnist_fast_pytorch, 35, ("torch",)),
    "cifar10_fast": (cifar10_fast, 90, ()),  # first CIFAR-10 load decodes the JPEGs (cached after)
    "cifar10_fast_pytorch": (cifar10_fast_pytorch, 45, ("torch",)),
    "vgg16": (vgg16, 50, ()),
    "vgg16_pytorch": (vgg16_pytorch, 40, ("torch",)),
    "plain_flax_loop": (plain_flax_loop, 25, ()),
}


# -- running the parts -------------------------------------------------------------------------
def _error(e: BaseException) -> dict:
    return {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}


def _has(module: str) -> bool:
    import importlib

    try:
        importlib.import_module(module)
        return True
    except Exception:  # noqa: BLE001  (missing, or broken: either way the part cannot run)
        return False


def write_json(path: str, obj) -> None:
    """Atomic: a reader (or a cut-off run) sees the previous file or the new one, never half."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def run_part_here(name: str, args, out_path: str) -> None:
    """Child process: run one part, rewriting `out_path` after every record it emits."""
    record: dict = {}

    def emit(key, value):
        if key is None:
            record.update(value)
        else:
            record[key] = value
        write_json(out_path, record)

    t0 = time.perf_counter()
    try:
        PARTS[name][0](args, emit)
    except Exception as e:  # noqa: BLE001
        record.update(_error(e))
    record["part_seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out_path, record)


def run_part(name: str, argv: list, limit: float) -> dict:
    """Run part `name` in a fresh process for at most `limit` seconds; its record, or what it left."""
    fd, path = tempfile.mkstemp(prefix=f"gpu_bench_{name}_", suffix=".json")
    os.close(fd)
    os.unlink(path)
    cmd = [sys.executable, os.path.abspath(__file__), "--part", name, "--part-out", path] + argv
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=max(limit, 0.001))
        status = None if proc.returncode == 0 else f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        status = f"timeout after {limit:.0f}s"
    record = {}
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
        os.unlink(path)
    if status:
        record["error"] = status + (f"; {record['error']}" if "error" in record else "")
        record["log_tail"] = log.decode(errors="replace")[-1500:]
    record.setdefault("part_seconds", round(time.perf_counter() - t0, 2))
    return record


def _rate(res, part, key):
    r = res.get(part, {}).get(key)
    return r.get("images_per_second") if isinstance(r, dict) else None


def summarize(res: dict, batches) -> dict:
    """Ratios of like with like (precision, batch); only where both sides measured."""
    s: dict = {}
    jax_rates = [(v.get("images_per_second"), f"n1_jaxcnn.{k}") for k, v in res.get("n1_jaxcnn", {}).items()
                 if isinstance(v, dict) and v.get("images_per_second")]
    if jax_rates:
        best = max(jax_rates)
        s["best_jaxcnn"], s["best_jaxcnn_images_per_second"] = best[1], best[0]
    for b in batches:
        for ours, theirs in (("f32", "eager_f32"), ("f32", "compile_f32"), ("bf16", "eager_bf16"),
                             ("bf16", "compile_bf16")):
            a, t = _rate(res, "n1_jaxcnn", f"{ours}_b{b}"), _rate(res, "n1_pytorch", f"{theirs}_b{b}")
            if a and t:
                s[f"n1_b{b}_jaxcnn_{ours}_over_pytorch_{theirs}"] = round(a / t, 2)
    c = res.get("ceiling", {})
    for b in batches:
        for p in ("bf16", "f32"):
            a = _rate(res, "n1_jaxcnn", f"{p}_b{b}")
            if a and c.get(f"images_per_second_bandwidth_{p}"):
                s[f"n1_{p}_b{b}_fraction_of_bandwidth_ceiling"] = round(a / c[f"images_per_second_bandwidth_{p}"], 3)
    for task in ("mnist_fast", "cifar10_fast"):
        a, t = res.get(task, {}).get("train_seconds_to_target"), res.get(f"{task}_pytorch", {}).get(
            "train_seconds_to_target")
        if a and t:
            s[f"{task}_jaxcnn_over_pytorch_seconds_to_target"] = round(a / t, 3)
    for key, v in res.get("vgg16", {}).items():
        t = res.get("vgg16_pytorch", {}).get(key)
        if isinstance(v, dict) and isinstance(t, dict) and v.get("images_per_s") and t.get("images_per_s"):
            s[f"vgg16_{key}_jaxcnn_over_pytorch"] = round(v["images_per_s"] / t["images_per_s"], 2)
    s["goals"] = {
        ">=1M images/s at batch 1024 bf16": _rate(res, "n1_jaxcnn", "bf16_b1024"),
        "time to 99.0% < 0.5 s (N1)": res.get("time_to_99", {}).get("seconds"),
        "mnist_fast to 99.0% < 0.5 s": res.get("mnist_fast", {}).get("train_seconds_to_target"),
        "cifar10_fast to 94% < 3 s": res.get("cifar10_fast", {}).get("train_seconds_to_target")}
    return s


def check_backend(smoke: bool) -> str:
    """The JAX backend; exits with a message when it is not a GPU/TPU, unless allowed."""
    import jax

    backend = jax.default_backend()
    if backend == "cpu" and not smoke and os.environ.get(ALLOW_CPU_ENV) != "1":
        sys.exit(f"gpu_bench: JAX sees no GPU (backend 'cpu', devices {jax.devices()}): the CUDA plugin "
                 f"failed to load or no GPU is visible. Fix jax[cuda] first; --smoke or {ALLOW_CPU_ENV}=1 "
                 "runs on the CPU anyway.")
    return backend


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128, help="batch of time_to_99 and plain_flax_loop")
    p.add_argument("--only", default="", help="comma-separated parts to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out")
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all parts together")
    p.add_argument("--limits", default="", help="per-part limits, e.g. n1_jaxcnn=60,ceiling=5")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs (e.g. on CPU)")
    p.add_argument("--out", default="gpu_results.json")
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--part-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.limit = 640 if args.smoke else None
    args.n1_batches = (32,) if args.smoke else (32, 128, 1024)
    args.torch_modes = ("eager_f32", "eager_bf16") if args.smoke else (
        "eager_f32", "eager_bf16", "compile_f32", "compile_bf16")
    if args.smoke:
        args.epochs, args.batch_size = 2, 32
    if args.part:
        return run_part_here(args.part, args, args.part_out)

    import jax

    backend = check_backend(args.smoke)
    only = set(filter(None, args.only.split(",")))
    skip = set(filter(None, args.skip.split(",")))
    unknown = (only | skip) - set(PARTS)
    if unknown:
        sys.exit(f"gpu_bench: unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
    limits = {k: float(v) for k, v in (kv.split("=") for kv in filter(None, args.limits.split(",")))}
    child_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
    res = {"device": str(jax.devices()[0]), "backend": backend, "jax": jax.__version__, "epochs": args.epochs,
           "smoke": args.smoke, "budget_seconds": args.budget, "parts": list(PARTS)}
    write_json(args.out, res)
    # smoke runs check code paths on a (possibly busy) CPU: generous limits
    deadline = time.perf_counter() + (max(args.budget, 3600) if args.smoke else args.budget)
    for name, (_, limit, needs) in PARTS.items():
        if (only and name not in only) or name in skip:
            res[name] = {"skipped": "not selected"}
        elif missing := [m for m in needs if not _has(m)]:
            res[name] = {"skipped": f"{', '.join(missing)} not importable"}
        elif (left := deadline - time.perf_counter()) < 1:
            res[name] = {"skipped": "run budget spent"}
        else:
            res[name] = run_part(name, child_argv, min(limits.get(name, limit * (10 if args.smoke else 1)), left))
        res["summary"] = summarize(res, args.n1_batches)
        write_json(args.out, res)
        print(f"{name}: {json.dumps(res[name])[:300]}", file=sys.stderr, flush=True)
    print(json.dumps(res["summary"], indent=2))
    return res


if __name__ == "__main__":
    main()
