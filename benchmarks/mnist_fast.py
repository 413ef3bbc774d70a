"""MNIST to 99.0%: jaxcnn's `mnist_fast` recipe against the same recipe in Keras and PyTorch.

    python benchmarks/mnist_fast.py --seeds 0,1,2,3,4 --json benchmarks/results_mnist_fast_cpu_2core.json

Every run is a fresh process (seed-major, frameworks in turn, so load on a shared machine hits
all alike). Per run: wall seconds from process start to exit (imports, data, compilation
included, measured by the parent), training seconds to 99.0% test accuracy (test set scored after
each epoch, not timed; integer correct counts against ceil(0.99 n)) and the final accuracy.

The recipe (jaxcnn.speedrun.MNIST_FAST): 3 x [conv 3x3 VALID (16/32/64, no bias), BatchNorm
without scale (momentum 0.9, eps 1e-5), ReLU, 2x2 max pool (the last: global max)], dense 10 (no
bias) x 0.125; PyTorch's default init; SGD momentum 0.9 Nesterov, lr 0.2 peak, triangular
(0.02 -> 0.2 over 25% of the steps -> 0), label smoothing 0.1, batch 256, 3 epochs (drop the
last partial batch), a fresh shuffle each epoch. Keras runs on its TensorFlow backend.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

FRAMEWORKS = ("jaxcnn", "keras", "pytorch")


def _data(limit):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist")
    x, y, xt, yt = ds.x_train, ds.y_train.astype(np.int32), ds.x_test, ds.y_test.astype(np.int32)
    if limit:
        x, y, xt, yt = x[:limit], y[:limit], xt[: limit // 2], yt[: limit // 2]
    return x, y, xt, yt


def _recipe(smoke):
    import dataclasses

    from jaxcnn.speedrun import MNIST_FAST

    return dataclasses.replace(MNIST_FAST, batch_size=32) if smoke else MNIST_FAST


def _result(framework, curve, n_test, recipe, extra=None):
    """curve: [(cumulative train seconds, correct)] per epoch."""
    from jaxcnn.speedrun import required_correct

    need = required_correct(recipe.target, n_test)
    reached = next((t for t, c in curve if c >= need), None)
    return {"framework": framework, "train_seconds_to_target": reached, "target": recipe.target,
            "needed_correct": need, "test_examples": n_test, "train_seconds": curve[-1][0],
            "test_accuracy_per_epoch": [c / n_test for _, c in curve], "test_accuracy": curve[-1][1] / n_test,
            **(extra or {})}


def run_jax(seed=0, limit=None, smoke=False):
    import jax

    from jaxcnn import speedrun
    from jaxcnn.models import get_model

    x, y, xt, yt = _data(limit)
    recipe = _recipe(smoke)
    _, h = speedrun.train(get_model("mnist_fast"), x, y, xt, yt, recipe, seed=seed)
    curve = [(t, round(a * len(yt))) for t, a in zip(h["train_seconds"], h["val_accuracy"])]
    return _result("jaxcnn", curve, len(yt), recipe, {"device": str(jax.devices()[0]),
                                                      "compile_seconds": round(h["compile_seconds"], 2)})


def _steps(n: int, recipe) -> tuple[int, int]:
    """Steps per epoch and in all, as jaxcnn.speedrun counts them (a fractional last epoch)."""
    steps = n // recipe.batch_size
    return steps, max(1, math.ceil(steps * recipe.epochs))


def _lr_at(step, total, recipe):
    warm = max(1, int(total * recipe.warmup))
    if step < warm:
        return recipe.lr * (recipe.lr_start + (1 - recipe.lr_start) * step / warm)
    return recipe.lr * (1 + (recipe.lr_end - 1) * (step - warm) / max(1, total - warm))


def run_torch(seed=0, limit=None, smoke=False):
    import torch
    from torch import nn

    x, y, xt, yt = _data(limit)
    recipe = _recipe(smoke)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    layers, c = [], 1
    for i, w in enumerate((16, 32, 64)):
        bn = nn.BatchNorm2d(w, eps=1e-5, momentum=0.1)
        bn.weight.requires_grad_(False)
        layers += [nn.Conv2d(c, w, 3, bias=False), bn, nn.ReLU()]
        layers.append(nn.MaxPool2d(2) if i < 2 else nn.AdaptiveMaxPool2d(1))
        c = w
    head = nn.Linear(64, 10, bias=False)
    model = nn.Sequential(*layers, nn.Flatten(), head).to(dev).to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    lossf = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    xd = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dev)
    yd = torch.from_numpy(y.astype(np.int64)).to(dev)
    xtd = torch.from_numpy(xt.transpose(0, 3, 1, 2).copy()).to(dev)
    ytd = torch.from_numpy(yt.astype(np.int64)).to(dev)
    steps, total = _steps(len(x), recipe)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    trained, curve, step = 0.0, [], 0
    for _ in range(math.ceil(total / steps)):
        order = torch.randperm(len(x), generator=gen).to(dev)
        model.train()
        sync()
        t0 = time.perf_counter()
        for s in range(min(steps, total - step)):
            rows = order[s * recipe.batch_size:(s + 1) * recipe.batch_size]
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, recipe)
            loss = lossf(model(xd[rows].float().div_(255.0)) * 0.125, yd[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        sync()
        trained += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(xtd[i:i + 1000].float() / 255.0).argmax(1) == ytd[i:i + 1000]).sum())
                          for i in range(0, len(xtd), 1000))
        curve.append((trained, correct))
    return _result("pytorch", curve, len(yt), recipe, {"device": dev, "torch": torch.__version__})


def run_keras(seed=0, limit=None, smoke=False):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    x, y, xt, yt = _data(limit)
    recipe = _recipe(smoke)
    keras.utils.set_random_seed(seed)

    def torch_init(fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        return keras.initializers.RandomUniform(-bound, bound, seed=seed)

    inputs = keras.Input((28, 28, 1))
    h, c = keras.layers.Rescaling(1.0 / 255.0)(inputs), 1
    for i, w in enumerate((16, 32, 64)):
        h = keras.layers.Conv2D(w, 3, use_bias=False, kernel_initializer=torch_init(9 * c))(h)
        h = keras.layers.BatchNormalization(scale=False, momentum=0.9, epsilon=1e-5)(h)
        h = keras.layers.ReLU()(h)
        h = keras.layers.MaxPooling2D(2)(h) if i < 2 else keras.layers.GlobalMaxPooling2D()(h)
        c = w
    h = keras.layers.Dense(10, use_bias=False, kernel_initializer=torch_init(64))(h)
    model = keras.Model(inputs, keras.layers.Rescaling(0.125)(h))
    steps, total = _steps(len(x), recipe)

    class Triangular(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            ops = keras.ops
            step = ops.cast(step, "float32")
            warm = float(max(1, int(total * recipe.warmup)))
            up = recipe.lr * (recipe.lr_start + (1 - recipe.lr_start) * step / warm)
            down = recipe.lr * (1 + (recipe.lr_end - 1) * (step - warm) / max(1.0, total - warm))
            return ops.where(step < warm, up, down)

    model.compile(optimizer=keras.optimizers.SGD(Triangular(), momentum=recipe.momentum, nesterov=True),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing))
    y1 = np.eye(10, dtype=np.float32)[y]
    rng = np.random.default_rng(seed)
    trained, curve = 0.0, []
    for epoch in range(math.ceil(total / steps)):
        rows = rng.permutation(len(x))[: min(steps, total - epoch * steps) * recipe.batch_size]
        xe, ye = x[rows], y1[rows]
        t0 = time.perf_counter()
        model.fit(xe, ye, batch_size=recipe.batch_size, epochs=1, shuffle=False, verbose=0)
        trained += time.perf_counter() - t0
        correct = int((model.predict(xt, batch_size=1000, verbose=0).argmax(1) == yt).sum())
        curve.append((trained, correct))
    return _result("keras", curve, len(yt), recipe, {"keras": keras.__version__, "backend": keras.backend.backend()})


RUNNERS = {"jaxcnn": run_jax, "keras": run_keras, "pytorch": run_torch}


def summarize(runs: list[dict]) -> dict:
    """Per framework: mean/min of training seconds to target (over the runs that reached it),
    how many reached it, mean/min wall seconds; and jaxcnn's means over the faster peer's."""
    out = {}
    for fw in sorted({r["framework"] for r in runs}):
        rs = [r for r in runs if r["framework"] == fw and "error" not in r]
        hit = [r["train_seconds_to_target"] for r in rs if r.get("train_seconds_to_target") is not None]
        walls = [r["wall_seconds"] for r in rs if r.get("wall_seconds") is not None]
        out[fw] = {"runs": len(rs), "reached_target": len(hit),
                   "train_seconds_to_target_mean": round(float(np.mean(hit)), 3) if hit else None,
                   "train_seconds_to_target_min": round(float(np.min(hit)), 3) if hit else None,
                   "wall_seconds_mean": round(float(np.mean(walls)), 2) if walls else None,
                   "wall_seconds_min": round(float(np.min(walls)), 2) if walls else None,
                   "test_accuracy_mean": round(float(np.mean([r["test_accuracy"] for r in rs])), 4) if rs else None}
    ours = out.get("jaxcnn", {})
    peers = [v for k, v in out.items() if k != "jaxcnn" and v.get("train_seconds_to_target_mean")]
    if ours.get("train_seconds_to_target_mean") and peers:
        fastest = min(peers, key=lambda v: v["train_seconds_to_target_mean"])
        out["jaxcnn_over_faster_peer_train_seconds"] = round(
            ours["train_seconds_to_target_mean"] / fastest["train_seconds_to_target_mean"], 3)
        walls = [v["wall_seconds_mean"] for v in peers if v.get("wall_seconds_mean")]
        if ours.get("wall_seconds_mean") and walls:
            out["jaxcnn_over_faster_peer_wall_seconds"] = round(ours["wall_seconds_mean"] / min(walls), 3)
    return out


def run_one(framework: str, seed: int, limit=None, smoke=False, timeout=None) -> dict:
    """One run in a fresh process; adds the wall seconds from its start to its exit."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--seed", str(seed)]
    cmd += (["--limit", str(limit)] if limit else []) + (["--smoke"] if smoke else [])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"framework": framework, "seed": seed, "error": f"timeout after {timeout}s"}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"framework": framework, "seed": seed, "error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
    return {**json.loads(lines[-1]), "seed": seed, "wall_seconds": round(wall, 2)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--limit", type=int, help="first N train (N/2 test) examples: smoke runs")
    p.add_argument("--smoke", action="store_true", help="batch 32 (with --limit: a quick check)")
    p.add_argument("--json", help="write runs + summary here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(RUNNERS[args.worker](seed=args.seed, limit=args.limit, smoke=args.smoke)), flush=True)
        return None
    runs = []
    for seed in map(int, args.seeds.split(",")):
        for fw in args.frameworks.split(","):
            r = run_one(fw, seed, args.limit, args.smoke)
            print(json.dumps(r)[:400], file=sys.stderr, flush=True)
            runs.append(r)
            report = {"machine": _machine(), "runs": runs, "summary": summarize(runs)}
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(report, f, indent=1)
    print(json.dumps(report["summary"], indent=1))
    return report


def _machine():
    import platform

    return {"host": platform.node(), "cpu_count": os.cpu_count(), "load_average_at_write": os.getloadavg()}


if __name__ == "__main__":
    main()
