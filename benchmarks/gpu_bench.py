"""N1 on MNIST on one accelerator: jaxcnn's device road vs a plain per-step Flax loop vs PyTorch.

    bash benchmarks/gpu.sh            # or: python benchmarks/gpu_bench.py [--epochs 5] [--out gpu.json]

No TensorFlow needed: MNIST comes from the IDX files (`$JAXCNN_DATA_DIR/mnist` or the copy bundled
with jaxcnn). Measured, all at batch 128 for `--epochs` epochs unless said:

- `jaxcnn_device_{bf16,f32}`: `Trainer.fit(road="device")`: data on the device, many steps per
  dispatch; seconds per epoch (the first epoch, which compiles, reported apart), images/second.
- `jaxcnn_device_bf16_b1024`: the same at batch 1024 (goal: >= 1 million images/s).
- `time_to_99`: device road, bf16, batch 128, test accuracy checked on the device after every
  chunk of steps (eval time not counted): training seconds until test accuracy >= 0.99.
- `plain_flax_loop`: flax TrainState + optax + one `jax.jit` step per batch, batches sliced from
  host numpy arrays each step (the per-step road without jaxcnn's machinery).
- `pytorch_{eager,amp_bf16,compile}`: the same net in PyTorch, data on the device, eager f32,
  autocast bf16, and `torch.compile` (where it works).
- `ceiling`: measured device memory bandwidth (a large copy) and matmul throughput, and the
  images/second they allow for N1 under a rough traffic model (see `ceiling()`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # PyTorch shares the GPU

import numpy as np  # noqa: E402

# N1 per image: forward activations (conv1 26x26x32, pool 13x13x32, conv2 11x11x64, pool 5x5x64,
# dense 64, logits 10) and forward multiply-adds x2 (conv1, conv2, dense1, logits).
N1_ACTIVATIONS = 26 * 26 * 32 + 13 * 13 * 32 + 11 * 11 * 64 + 5 * 5 * 64 + 64 + 10
N1_FORWARD_FLOPS = 2 * (26 * 26 * 32 * 9 + 11 * 11 * 64 * 288 + 1600 * 64 + 64 * 10)


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


def jaxcnn_device(data, epochs, batch_size, precision, steps_per_call):
    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer

    x, y, xt, yt = data
    t = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", compute_dtype=precision, data_backend="numpy")
    hist = t.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, road="device", steps_per_call=steps_per_call)
    secs = hist["seconds"]
    steady = float(np.median(secs[1:])) if len(secs) > 1 else secs[0]
    n = len(x) // batch_size * batch_size
    acc = t.evaluate(xt, yt, batch_size=1000)["accuracy"]
    return {"epoch_seconds": [round(s, 4) for s in secs], "steady_epoch_seconds": round(steady, 4),
            "train_seconds_all_epochs_after_compile": round(sum(secs[1:]) + steady, 4),
            "images_per_second": round(n / steady), "test_accuracy": round(acc, 4), "road": t.road,
            "precision": precision, "batch_size": batch_size, "steps_per_call": steps_per_call}


def time_to_accuracy(data, batch_size, precision, steps_per_call, target=0.99, max_epochs=10):
    """Device road; after each chunk, test accuracy on the device (not timed)."""
    import jax
    import jax.numpy as jnp

    from jaxcnn.models import get_model
    from jaxcnn.train import Trainer
    from jaxcnn.train.ondevice import DeviceRoad, normalize_images
    from jaxcnn.train.step import predict_logits

    x, y, xt, yt = data
    t = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", compute_dtype=precision, data_backend="numpy")
    road = DeviceRoad(t, x, y, batch_size, steps_per_call=steps_per_call)
    xt_d, yt_d = jax.device_put(xt), jax.device_put(yt)

    @jax.jit
    def accuracy(state):
        logits = predict_logits(state, normalize_images(xt_d), t.compute_dtype)
        return jnp.mean(logits.argmax(-1) == yt_d)

    # compile every chunk shape and the eval on a copy of the state (the chunk donates it), then
    # start again from the initial state, so no compile is timed
    initial = jax.tree.map(jnp.copy, t.state)
    for _, block in road.chunks(0):
        road.run_chunk(block, 0)
    float(accuracy(t.state))
    t.state = initial
    trained, curve = 0.0, []
    for epoch in range(max_epochs):
        for lo, block in road.chunks(epoch):
            t0 = time.perf_counter()
            road.run_chunk(block, epoch)
            sync(t.state)
            trained += time.perf_counter() - t0
            acc = float(accuracy(t.state))
            curve.append((round(epoch + (lo + len(block)) / road.steps, 3), round(trained, 4), round(acc, 4)))
            if acc >= target:
                return {"target": target, "seconds": round(trained, 4), "epochs": curve[-1][0], "curve": curve,
                        "precision": precision, "batch_size": batch_size}
    return {"target": target, "seconds": None, "curve": curve, "note": f"not reached in {max_epochs} epochs"}


def plain_flax_loop(data, epochs, batch_size):
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

    x, y, xt, yt = data
    model = CNN()
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
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(x))
        t0 = time.perf_counter()
        for s in range(steps):
            rows = order[s * batch_size:(s + 1) * batch_size]
            state = step(state, x[rows].astype(np.float32) / 255.0, y[rows])
        sync(state)
        secs.append(time.perf_counter() - t0)
    steady = float(np.median(secs[1:])) if len(secs) > 1 else secs[0]
    return {"epoch_seconds": [round(s, 4) for s in secs], "steady_epoch_seconds": round(steady, 4),
            "images_per_second": round(steps * batch_size / steady), "batch_size": batch_size}


def pytorch(data, epochs, batch_size, mode):
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    x, y, xt, yt = data
    xd = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)  # uint8 on the device
    yd = torch.from_numpy(y.astype(np.int64)).to(dev)
    lossf = nn.CrossEntropyLoss()
    fwd = torch.compile(model) if mode == "compile" else model

    def step(rows):
        images = xd[rows].float().div_(255.0)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=(mode == "amp_bf16")):
            loss = lossf(fwd(images), yd[rows])
        loss.backward()
        opt.step()

    steps = len(x) // batch_size
    secs = []
    for epoch in range(epochs):
        order = torch.randperm(len(x), device=dev)
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(steps):
            step(order[s * batch_size:(s + 1) * batch_size])
        if dev == "cuda":
            torch.cuda.synchronize()
        secs.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        xtd = torch.from_numpy(xt.transpose(0, 3, 1, 2).copy()).to(dev).float() / 255.0
        acc = float((model(xtd).argmax(1).cpu() == torch.from_numpy(yt.astype(np.int64))).float().mean())
    steady = float(np.median(secs[1:])) if len(secs) > 1 else secs[0]
    return {"epoch_seconds": [round(s, 4) for s in secs], "steady_epoch_seconds": round(steady, 4),
            "images_per_second": round(steps * batch_size / steady), "test_accuracy": round(acc, 4),
            "torch": torch.__version__, "device": dev, "mode": mode, "batch_size": batch_size}


def ceiling(smoke=False):
    """Measured bandwidth and bf16 matmul rate, and the N1 images/s they allow.

    Traffic model (a floor): per image, the forward writes its activations once and the backward
    reads them and writes and reads their gradients: ~4 x activations x bytes per element. Compute:
    training ~ 3 x forward FLOPs.
    """
    import jax
    import jax.numpy as jnp

    n = (1 << 22) if smoke else (1 << 28)  # 16 MiB / 1 GiB of float32
    a = jnp.ones((n,), jnp.float32)
    copy = jax.jit(lambda v: v * 1.0001)
    copy(a).block_until_ready()
    t0 = time.perf_counter()
    reps = 3 if smoke else 20
    for _ in range(reps):
        b = copy(a)
    b.block_until_ready()
    bw = 2 * 4 * n * reps / (time.perf_counter() - t0)
    m = 1024 if smoke else 8192
    mat = jnp.ones((m, m), jnp.bfloat16)
    mm = jax.jit(lambda p, q: p @ q)
    mm(mat, mat).block_until_ready()
    t0 = time.perf_counter()
    for _ in range(reps):
        c = mm(mat, mat)
    c.block_until_ready()
    flops = 2 * m ** 3 * reps / (time.perf_counter() - t0)
    return {"bandwidth_GBps": round(bw / 1e9, 1), "bf16_matmul_TFLOPs": round(flops / 1e12, 1),
            "n1_activations_per_image": N1_ACTIVATIONS, "n1_train_flops_per_image": 3 * N1_FORWARD_FLOPS,
            "images_per_second_bandwidth_bf16": round(bw / (4 * N1_ACTIVATIONS * 2)),
            "images_per_second_bandwidth_f32": round(bw / (4 * N1_ACTIVATIONS * 4)),
            "images_per_second_compute_bf16": round(flops / (3 * N1_FORWARD_FLOPS))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps-per-call", type=int, default=78, help="468 steps/epoch at batch 128 = 6 calls")
    p.add_argument("--skip", default="", help="comma-separated parts to leave out")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check the script runs (e.g. on CPU)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    import jax

    data = load_mnist(640 if args.smoke else None)
    epochs, B, K = (2 if args.smoke else args.epochs), args.batch_size, args.steps_per_call
    if args.smoke:  # 20 steps an epoch on CPU, where scanned convs are slow
        B, K = 32, 8
    res = {"device": str(jax.devices()[0]), "jax": jax.__version__, "train_images": len(data[0]),
           "epochs": epochs, "smoke": args.smoke}
    parts = {
        "jaxcnn_device_bf16": lambda: jaxcnn_device(data, epochs, B, "bf16", K),
        "jaxcnn_device_f32": lambda: jaxcnn_device(data, epochs, B, "f32", K),
        "jaxcnn_device_bf16_b1024": lambda: jaxcnn_device(data, epochs, 1024 if not args.smoke else 64, "bf16",
                                                          29 if not args.smoke else 4),
        "time_to_99": lambda: time_to_accuracy(data, B, "bf16", K, target=0.99 if not args.smoke else 0.3,
                                               max_epochs=10 if not args.smoke else 2),
        "plain_flax_loop": lambda: plain_flax_loop(data, epochs, B),
        "pytorch_eager": lambda: pytorch(data, epochs, B, "eager"),
        "pytorch_amp_bf16": lambda: pytorch(data, epochs, B, "amp_bf16"),
        "pytorch_compile": lambda: pytorch(data, epochs, B, "compile"),
        "ceiling": lambda: ceiling(args.smoke),
    }
    for name, fn in parts.items():
        if name in skip or (name.startswith("pytorch") and not _has("torch")):
            continue
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as e:  # noqa: BLE001  (one failing part must not lose the others' numbers)
            res[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        print(f"{name}: {json.dumps(res[name])[:300]} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr, flush=True)
    best = max((v.get("images_per_second", 0), k) for k, v in res.items() if isinstance(v, dict) and k.startswith("jaxcnn"))
    summary = {"best_jaxcnn": best[1], "best_jaxcnn_images_per_second": best[0]}
    for k, v in res.items():
        if isinstance(v, dict) and v.get("images_per_second") and not k.startswith("jaxcnn"):
            summary[f"jaxcnn_device_bf16_over_{k}"] = round(
                res.get("jaxcnn_device_bf16", {}).get("images_per_second", 0) / v["images_per_second"], 2)
    c = res.get("ceiling", {})
    if "images_per_second_bandwidth_bf16" in c and "jaxcnn_device_bf16" in res:
        for k in ("jaxcnn_device_bf16", "jaxcnn_device_bf16_b1024"):
            if res.get(k, {}).get("images_per_second"):
                summary[f"{k}_fraction_of_bandwidth_ceiling"] = round(
                    res[k]["images_per_second"] / c["images_per_second_bandwidth_bf16"], 3)
    summary["goals"] = {
        ">=1M images/s at batch 1024 bf16": res.get("jaxcnn_device_bf16_b1024", {}).get("images_per_second"),
        "5 epochs of N1 < 1 s training (batch 128, bf16)":
            res.get("jaxcnn_device_bf16", {}).get("train_seconds_all_epochs_after_compile"),
        "time to 99.0% < 0.5 s": res.get("time_to_99", {}).get("seconds")}
    res["summary"] = summary
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def _has(m):
    import importlib.util

    return importlib.util.find_spec(m) is not None


if __name__ == "__main__":
    main()
