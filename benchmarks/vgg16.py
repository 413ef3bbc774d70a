"""VGG16 speed at 224x224: frozen-base feature extraction, head-only training on the frozen base,
and full fine-tuning, in float32 and bfloat16, against the device's measured matmul rate.

    python benchmarks/vgg16.py --batch 4 --iters 3 --json out.json
    python benchmarks/vgg16.py --dtypes float32 --modes extract,finetune --keras   # + tf_keras peer
    python benchmarks/vgg16.py --framework pytorch      # the same net and modes in PyTorch

Defaults fit the device: batch 64 and an 8192^2 reference matmul on a GPU/TPU, batch 4 and 2048^2
on a CPU (a small matmul or batch leaves most of a GPU idle and understates both rates).

Work per image is counted from the architecture (multiply-adds of every conv and dense layer,
x2 for FLOPs): the conv base is ~15.3 GMACs, the full network ~15.5 GMACs (~31 GFLOP). A training
step is counted as 3x the forward (forward, gradient w.r.t. activations, w.r.t. weights); with
the base frozen, the step is counted as the base's forward plus 3x the head's, since XLA drops
the frozen layers' backward pass as dead code (`xla_gflop_per_image`, XLA's own count of the
compiled step, shows it). `ratio` is achieved FLOP/s over the best rate of one large matmul in
the same dtype on the same device (an attainable peak, not the datasheet one). Compilation is
kept out of the timings (warm-up steps first); the best step time is reported beside the median.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxcnn.models.transfer import TransferModel  # noqa: E402
from jaxcnn.models.vgg import VGG16, VGG16_BLOCKS  # noqa: E402
from jaxcnn.train import create_train_state, make_train_step  # noqa: E402
from jaxcnn.transfer import make_transfer_optimizer  # noqa: E402


def vgg16_macs(size: int = 224, include_top: bool = True, num_classes: int = 1000) -> int:
    """Multiply-adds of one VGG16 forward pass at `size`x`size`x3."""
    macs, h, c = 0, size, 3
    for _, n_convs, filters in VGG16_BLOCKS:
        for _ in range(n_convs):
            macs += h * h * 9 * c * filters
            c = filters
        h //= 2
    if include_top:
        macs += h * h * c * 4096 + 4096 * 4096 + 4096 * num_classes
    return macs


def head_a_macs(size: int, num_classes: int) -> int:
    h = size // 32
    return h * h * 512 * 256 + 256 * num_classes


def matmul_peak(dtype, n: int = 2048, iters: int = 5) -> float:
    """Best FLOP/s of an n x n matmul of random operands in `dtype` (the reference for `ratio`)."""
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.normal(size=(n, n)), dtype) for _ in range(2))
    f = jax.jit(lambda x, y: x @ y)
    return 2 * n ** 3 / min(_times(lambda: f(a, b), 1, iters))


def torch_matmul_peak(dtype_name: str, n: int, iters: int = 5) -> float:
    """The same reference in PyTorch on its device."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    g = torch.Generator(device="cpu").manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(dev, dtype) for _ in range(2))
    return 2 * n ** 3 / min(_torch_times(lambda: a @ b, 1, iters, dev))


def _torch_times(fn, warmup: int, iters: int, dev: str) -> list[float]:
    import torch

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def torch_vgg16(num_classes: int, size: int, include_head: bool):
    """VGG16's conv base (+ head "a": Flatten, Dense 256 relu, Dropout 0.5, Dense) in torch.nn."""
    import torch.nn as nn

    layers, c = [], 3
    for _, n_convs, filters in VGG16_BLOCKS:
        for _ in range(n_convs):
            layers += [nn.Conv2d(c, filters, 3, padding=1), nn.ReLU(inplace=True)]
            c = filters
        layers.append(nn.MaxPool2d(2))
    if include_head:
        h = size // 32
        layers += [nn.Flatten(), nn.Linear(h * h * 512, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
                   nn.Linear(256, num_classes)]
    return nn.Sequential(*layers)


def bench_torch(mode: str, dtype_name: str, batch: int, size: int, iters: int, warmup: int,
                peak: float, num_classes: int = 10) -> dict:
    """The same work in PyTorch eager (channels-last), float32 or autocast bfloat16."""
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = torch_vgg16(num_classes, size, mode != "extract").to(dev).to(memory_format=torch.channels_last)
    images = torch.randn(batch, 3, size, size, device=dev).mul_(60).to(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch,), device=dev)
    bf16 = dtype_name == "bfloat16"
    base_macs, head_macs = vgg16_macs(size, include_top=False), head_a_macs(size, num_classes)
    if mode == "extract":
        model.eval()

        def run():
            with torch.no_grad(), torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                return model(images)

        flop = 2 * base_macs
    else:
        if mode == "frozen_train":
            for layer in list(model)[:-5]:
                layer.requires_grad_(False)
        opt = torch.optim.Adam([q for q in model.parameters() if q.requires_grad], lr=1e-4)
        lossf = torch.nn.CrossEntropyLoss()

        def run():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                loss = lossf(model(images), labels)
            loss.backward()
            opt.step()

        flop = 2 * (base_macs + 3 * head_macs if mode == "frozen_train" else 3 * (base_macs + head_macs))
    times = _torch_times(run, warmup, iters, dev)
    seconds = min(times)
    achieved = flop * batch / seconds
    return {"mode": mode, "dtype": dtype_name, "framework": f"pytorch {torch.__version__} eager", "batch": batch,
            "size": size, "device": dev, "seconds_per_step_best": round(seconds, 4),
            "seconds_per_step_median": round(float(np.median(times)), 4),
            "images_per_s": round(batch / seconds, 3), "gflop_per_image": round(flop / 1e9, 2),
            "achieved_gflops": round(achieved / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
            "ratio": round(achieved / peak, 3)}


def _times(fn, warmup: int, iters: int) -> list[float]:
    """Seconds of each of `iters` calls after `warmup` (compilation) calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        out.append(time.perf_counter() - t)
    return out


def _xla_flops(jitted, *args) -> float | None:
    try:
        cost = jitted.lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost["flops"])
    except Exception:  # cost analysis is backend-dependent
        return None


def bench(mode: str, dtype_name: str, batch: int, size: int, iters: int, warmup: int,
          peak: float, num_classes: int = 10) -> dict:
    dtype = {"float32": None, "bfloat16": jnp.bfloat16}[dtype_name]
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(0, 60, (batch, size, size, 3)), jnp.float32)
    base_macs = vgg16_macs(size, include_top=False)
    head_macs = head_a_macs(size, num_classes)
    if mode == "extract":
        model = VGG16(include_top=False, dtype=dtype)
        variables = jax.jit(model.init)(jax.random.PRNGKey(0), images[:1])
        apply = jax.jit(lambda v, x: model.apply(v, x.astype(dtype or jnp.float32)))
        xla = _xla_flops(apply, variables, images)
        times = _times(lambda: apply(variables, images), warmup, iters)
        flop = 2 * base_macs
    else:
        model = TransferModel("vgg16", "a", num_classes, dtype=dtype)
        shape = (size, size, 3)
        params = jax.jit(model.init)(jax.random.PRNGKey(0), images[:1])["params"]
        trainable = ("head",) if mode == "frozen_train" else ("head", "base")
        tx = make_transfer_optimizer(optax.adam(1e-4), params, trainable)
        state = create_train_state(model, shape, tx, params=params)
        step = jax.jit(make_train_step("sparse_categorical_crossentropy", compute_dtype=dtype),
                       donate_argnums=0)
        batch_ = {"image": images, "label": jnp.asarray(rng.integers(0, num_classes, batch), jnp.int32)}
        box = [state]

        def run():
            box[0], metrics = step(box[0], batch_)
            return metrics

        xla = _xla_flops(step, state, batch_)
        times = _times(run, warmup, iters)
        flop = 2 * (base_macs + 3 * head_macs if mode == "frozen_train" else 3 * (base_macs + head_macs))
    seconds = min(times)  # best step: the least disturbed by other work on the machine
    achieved = flop * batch / seconds
    return {"mode": mode, "dtype": dtype_name, "framework": "jaxcnn", "batch": batch, "size": size,
            "seconds_per_step_best": round(seconds, 4),
            "seconds_per_step_median": round(float(np.median(times)), 4),
            "images_per_s": round(batch / seconds, 3),
            "gflop_per_image": round(flop / 1e9, 2),
            "xla_gflop_per_image": None if xla is None else round(xla / batch / 1e9, 2),
            "achieved_gflops": round(achieved / 1e9, 1),
            "matmul_peak_gflops": round(peak / 1e9, 1), "ratio": round(achieved / peak, 3)}


def bench_keras(mode: str, batch: int, size: int, iters: int, warmup: int, peak: float,
                num_classes: int = 10) -> dict:
    """The same work in tf_keras (TensorFlow backend, float32): the peer to compare with."""
    import tensorflow as tf
    import tf_keras

    tf.config.set_visible_devices([], "GPU")
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(0, 60, (batch, size, size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, num_classes, batch))
    base = tf_keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    base_macs, head_macs = vgg16_macs(size, include_top=False), head_a_macs(size, num_classes)
    if mode == "extract":
        fn = tf.function(lambda x: base(x, training=False), jit_compile=False)
        run = lambda: fn(images).numpy()  # noqa: E731
        flop = 2 * base_macs
    else:
        base.trainable = mode == "finetune"
        model = tf_keras.Sequential([base, tf_keras.layers.Flatten(),
                                     tf_keras.layers.Dense(256, activation="relu"),
                                     tf_keras.layers.Dropout(0.5), tf_keras.layers.Dense(num_classes)])
        model.compile(optimizer=tf_keras.optimizers.Adam(1e-4),
                      loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        run = lambda: model.train_on_batch(images, labels)  # noqa: E731
        flop = 2 * (base_macs + 3 * head_macs if mode == "frozen_train" else 3 * (base_macs + head_macs))
    times = _times(run, warmup, iters)
    seconds = min(times)
    achieved = flop * batch / seconds
    return {"mode": mode, "dtype": "float32", "framework": "tf_keras", "batch": batch, "size": size,
            "seconds_per_step_best": round(seconds, 4),
            "seconds_per_step_median": round(float(np.median(times)), 4),
            "images_per_s": round(batch / seconds, 3), "gflop_per_image": round(flop / 1e9, 2),
            "achieved_gflops": round(achieved / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
            "ratio": round(achieved / peak, 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, help="default: 64 on a GPU/TPU, 4 on a CPU")
    ap.add_argument("--matmul", type=int, help="reference matmul size (default: 8192 on a GPU/TPU, 2048 on a CPU)")
    ap.add_argument("--framework", choices=("jaxcnn", "pytorch"), default="jaxcnn")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--modes", default="extract,frozen_train,finetune")
    ap.add_argument("--keras", action="store_true",
                    help="also time the same modes in tf_keras (float32) as the peer")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args(argv)
    dev = jax.devices()[0]
    big = dev.platform != "cpu"
    args.batch = args.batch or (64 if big else 4)
    args.matmul = args.matmul or (8192 if big else 2048)
    report = {"device": f"{dev.platform}: {dev.device_kind}", "devices": jax.device_count(),
              "jax": jax.__version__, "host": platform.processor() or platform.machine(),
              "vgg16_gmacs_per_image": round(vgg16_macs(args.size) / 1e9, 2),
              "vgg16_base_gmacs_per_image": round(vgg16_macs(args.size, False) / 1e9, 2),
              "results": []}
    if args.framework == "pytorch":
        for dtype in args.dtypes.split(","):
            peak = torch_matmul_peak(dtype, args.matmul)
            for mode in args.modes.split(","):
                r = bench_torch(mode, dtype, args.batch, args.size, args.iters, args.warmup, peak)
                print(json.dumps(r), flush=True)
                report["results"].append(r)
        return _finish(report, args, lambda d: torch_matmul_peak(d, args.matmul))
    for dtype in args.dtypes.split(","):
        peak = matmul_peak({"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype], args.matmul)
        for mode in args.modes.split(","):
            r = bench(mode, dtype, args.batch, args.size, args.iters, args.warmup, peak)
            print(json.dumps(r), flush=True)
            report["results"].append(r)
    if args.keras:
        peak = matmul_peak(jnp.float32, args.matmul)
        for mode in args.modes.split(","):
            r = bench_keras(mode, args.batch, args.size, args.iters, args.warmup, peak)
            print(json.dumps(r), flush=True)
            report["results"].append(r)
    return _finish(report, args, lambda d: matmul_peak({"float32": jnp.float32, "bfloat16": jnp.bfloat16}[d],
                                                       args.matmul))


def _finish(report: dict, args, peak_of) -> dict:
    # Other work on the machine lowers single measurements: rate everything against the best
    # matmul seen in the whole run (measured again at the end), per dtype.
    report["matmul_size"] = args.matmul
    best = {d: max([r["matmul_peak_gflops"] for r in report["results"] if r["dtype"] == d]
                   + [peak_of(d) / 1e9])
            for d in {r["dtype"] for r in report["results"]}}
    for r in report["results"]:
        r["matmul_peak_gflops"] = round(best[r["dtype"]], 1)
        r["ratio"] = round(r["achieved_gflops"] / best[r["dtype"]], 3)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return report


if __name__ == "__main__":
    main()
