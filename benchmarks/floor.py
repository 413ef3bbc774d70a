"""The floor: each benchmark's train step as a multiple of this machine's matmul time, same FLOPs.

    python benchmarks/floor.py [--benchmarks n1,mnist_fast,cifar10_fast] [--reps 5]
                               [--cifar-batch 256] [--no-torch] [--no-keras] [--json out.json]

Measured in one process, round-robin (every measurement once per round, `--reps` rounds), so a
shared machine's load hits all alike; each number is the best round:

* the matmul rate: an n x n by n x n float32 product (n = 512 and 1024) in jax (jitted), numpy and
  torch; the floor is the best of them (FLOPs per second);
* one train step of each benchmark: jaxcnn's (the Trainer's step for N1 with Adam at batch 32;
  the recipe's step for `mnist_fast`, batch 256, and `cifar10_fast`, batch `--cifar-batch`:
  1024 in the recipe), the PyTorch twin's (same network, loss and optimizer) and, for N1,
  Keras' `train_on_batch`. Device-road gathers and augmentation are outside the step.

FLOPs per step are XLA's cost analysis of jaxcnn's compiled step (forward, gradients, optimizer;
convolutions as im2col matmuls count 2mnk). The twins compute the same network, so the same
count is used for them. `multiple` = step seconds / (FLOPs / floor rate): 1.0 is a step that
runs at the speed of one big matmul; the issue's goal for N1 is at most 1.5.

Both clocks are reported: wall (`perf_counter`) and CPU (`process_time`, user + system over all
threads: a library that spins idle threads pays for it here). On a machine shared with other
jobs the wall numbers move with the load; the CPU numbers and the side-by-side ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

BENCHMARKS = ("n1", "mnist_fast", "cifar10_fast")


def xla_flops(compiled) -> float:
    """FLOPs of one call of a compiled jax function (XLA's cost analysis)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0]
    return float(cost["flops"])


# -- jaxcnn steps ---------------------------------------------------------------------------------
def jax_step(name: str, batch_size: int, seed: int = 0):
    """(call, FLOPs) of one jaxcnn train step of benchmark `name` on random data."""
    import jax
    import jax.numpy as jnp

    from jaxcnn.models import get_model

    rng = np.random.default_rng(seed)
    if name == "n1":
        from jaxcnn.train import Trainer

        shape = (28, 28, 1)
        trainer = Trainer(get_model("mnist_cnn"), shape, optimizer="adam", compute_dtype="f32",
                          compilation_cache=False)
        state, make = trainer.state, trainer.make_train_step
    else:
        from jaxcnn.train.recipes import recipe as recipes
        from jaxcnn.train.recipes.state import init_state
        from jaxcnn.train.recipes.step import make_train_step

        recipe = recipes.RECIPES[name]
        shape = (28, 28, 1) if name == "mnist_fast" else (32, 32, 3)
        model = get_model("mnist_fast" if name == "mnist_fast" else "airbench")
        whiten = rng.integers(0, 256, (512, *shape), dtype=np.uint8) if recipe.whiten else None
        state = init_state(model, shape, recipe, 1000, 100, seed, whiten_images=whiten)
        make = lambda axis: make_train_step(recipe, 1000, jnp.float32)  # noqa: E731
    batch = {"image": jnp.asarray(rng.random((batch_size, *shape), np.float32)),
             "label": jnp.asarray(rng.integers(0, 10, batch_size).astype(np.int32))}
    step = jax.jit(make(None), donate_argnums=(0,))
    compiled = step.lower(state, batch).compile()
    box = [state]

    def call():
        box[0], metrics = compiled(box[0], batch)
        jax.block_until_ready(metrics)

    return call, xla_flops(compiled)


# -- PyTorch twins --------------------------------------------------------------------------------
def torch_step(name: str, batch_size: int, seed: int = 0):
    """One train step of the PyTorch twin of benchmark `name` (channels-last, CPU)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    if name == "n1":
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        lossf, shape, scale = nn.CrossEntropyLoss(), (1, 28, 28), 1.0
    elif name == "mnist_fast":
        layers, c = [], 1
        for i, w in enumerate((16, 32, 64)):
            bn = nn.BatchNorm2d(w, eps=1e-5, momentum=0.1)
            bn.weight.requires_grad_(False)
            layers += [nn.Conv2d(c, w, 3, bias=False), bn, nn.ReLU(), nn.MaxPool2d(2) if i < 2 else nn.AdaptiveMaxPool2d(1)]
            c = w
        net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, 10, bias=False))
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.02, momentum=0.9, nesterov=True)
        lossf, shape, scale = nn.CrossEntropyLoss(label_smoothing=0.1), (1, 28, 28), 0.125
    else:  # airbench94 (as benchmarks/cifar10_fast.py's twin; whitening frozen, no augmentation here)
        def conv(cin, cout):
            return nn.Conv2d(cin, cout, 3, padding="same", bias=False)

        def norm(w):
            bn = nn.BatchNorm2d(w, eps=1e-12, momentum=0.4)
            bn.weight.requires_grad_(False)
            return bn

        def group(cin, cout):
            return nn.Sequential(conv(cin, cout), nn.MaxPool2d(2), norm(cout), nn.GELU(), conv(cout, cout),
                                 norm(cout), nn.GELU())

        whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        whiten.weight.requires_grad_(False)
        net = nn.Sequential(whiten, nn.GELU(), group(24, 64), group(64, 256), group(256, 256), nn.MaxPool2d(3),
                            nn.Flatten(), nn.Linear(256, 10, bias=False))
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01, momentum=0.85, nesterov=True)
        lossf, shape, scale = nn.CrossEntropyLoss(label_smoothing=0.2, reduction="sum"), (3, 32, 32), 1 / 9
    net = net.to(memory_format=torch.channels_last).train()
    x = torch.rand(batch_size, *shape).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def call():
        loss = lossf(net(x) * scale, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return call


def keras_n1_step(batch_size: int, seed: int = 0):
    """One `train_on_batch` of the tutorial's N1 in Keras 3 (TensorFlow backend)."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x, y = rng.random((batch_size, 28, 28, 1), np.float32), rng.integers(0, 10, batch_size)
    return lambda: model.train_on_batch(x, y)


# -- matmuls --------------------------------------------------------------------------------------
def matmul_calls(sizes, use_torch: bool) -> dict:
    """name -> (call, FLOPs) of an n x n float32 matmul in each library."""
    import jax
    import jax.numpy as jnp

    out = {}
    for n in sizes:
        rng = np.random.default_rng(n)
        a, b = rng.standard_normal((n, n), np.float32), rng.standard_normal((n, n), np.float32)
        ja, jb = jnp.asarray(a), jnp.asarray(b)
        f = jax.jit(jnp.matmul).lower(ja, jb).compile()
        out[f"matmul_jax_{n}"] = (lambda f=f, ja=ja, jb=jb: f(ja, jb).block_until_ready(), 2.0 * n ** 3)
        out[f"matmul_numpy_{n}"] = (lambda a=a, b=b: a @ b, 2.0 * n ** 3)
        if use_torch:
            import torch

            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            out[f"matmul_torch_{n}"] = (lambda ta=ta, tb=tb: torch.mm(ta, tb), 2.0 * n ** 3)
    return out


def measure(calls: dict, reps: int, warmup: int = 2) -> dict:
    """name -> {"wall": [...], "cpu": [...]} seconds per call, the calls taken round-robin."""
    for call, _ in calls.values():
        for _ in range(warmup):
            call()
    samples = {k: {"wall": [], "cpu": []} for k in calls}
    for _ in range(reps):
        for name, (call, _) in calls.items():
            w, c = time.perf_counter(), time.process_time()
            call()
            samples[name]["cpu"].append(time.process_time() - c)
            samples[name]["wall"].append(time.perf_counter() - w)
    return samples


def summarize(calls: dict, samples: dict, batches: dict) -> dict:
    """Rates, the floor per clock, and every step's multiple of the floor."""
    best = {k: {clock: min(v[clock]) for clock in ("wall", "cpu")} for k, v in samples.items()}
    rates = {k: {clock: calls[k][1] / max(best[k][clock], 1e-12) / 1e9 for clock in ("wall", "cpu")}
             for k in calls if k.startswith("matmul_")}
    floor = {clock: max(r[clock] for r in rates.values()) for clock in ("wall", "cpu")}
    steps = {}
    for k in calls:
        if k.startswith("matmul_"):
            continue
        bench, framework = k.split(":")
        flops = calls[k][1]
        row = {"benchmark": bench, "framework": framework, "batch_size": batches[bench], "gflop_per_step": flops / 1e9}
        for clock in ("wall", "cpu"):
            row[f"{clock}_seconds_best"] = best[k][clock]
            row[f"{clock}_seconds_median"] = float(np.median(samples[k][clock]))
            row[f"{clock}_multiple_of_floor"] = best[k][clock] / (flops / (floor[clock] * 1e9))
        steps[k] = row
    return {"matmul_gflops": rates, "floor_gflops": floor, "steps": steps}


def table(result: dict) -> str:
    lines = ["| step | batch | GFLOP | wall s (best) | x floor (wall) | CPU s (best) | x floor (CPU) |",
             "|---|---|---|---|---|---|---|"]
    for k, r in result["steps"].items():
        lines.append(f"| {k} | {r['batch_size']} | {r['gflop_per_step']:.2f} | {r['wall_seconds_best']:.4f} | "
                     f"{r['wall_multiple_of_floor']:.2f} | {r['cpu_seconds_best']:.4f} | {r['cpu_multiple_of_floor']:.2f} |")
    floor = result["floor_gflops"]
    lines.append(f"\nfloor: {floor['wall']:.1f} GFLOP/s wall, {floor['cpu']:.1f} GFLOP/s per CPU-second; "
                 + ", ".join(f"{k} {v['wall']:.1f}/{v['cpu']:.1f}" for k, v in result["matmul_gflops"].items()))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--benchmarks", default=",".join(BENCHMARKS))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--cifar-batch", type=int, default=256, help="cifar10_fast's batch (the recipe's: 1024)")
    p.add_argument("--sizes", default="512,1024", help="matmul sizes n (n x n by n x n)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args(argv)
    names = [b for b in args.benchmarks.split(",") if b]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        p.error(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(BENCHMARKS)}")
    use_torch = not args.no_torch and _importable("torch")
    batches = {"n1": 32, "mnist_fast": 256, "cifar10_fast": args.cifar_batch}
    calls = matmul_calls([int(n) for n in args.sizes.split(",")], use_torch)
    for name in names:
        call, flops = jax_step(name, batches[name])
        calls[f"{name}:jaxcnn"] = (call, flops)
        if use_torch:
            calls[f"{name}:pytorch"] = (torch_step(name, batches[name]), flops)
        if name == "n1" and not args.no_keras and _importable("keras"):
            calls["n1:keras"] = (keras_n1_step(batches[name]), flops)
    samples = measure(calls, args.reps)
    result = {"machine": _machine(), "reps": args.reps, **summarize(calls, samples, batches),
              "samples": samples}
    print(table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _machine() -> dict:
    import jax

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
            "jax": jax.__version__, "device": str(jax.devices()[0])}


if __name__ == "__main__":
    main()
