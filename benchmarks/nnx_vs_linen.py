"""N1 in NNX (jaxcnn.nnx.MnistCNN) vs N1 in linen: the same recipe, accuracy and step time side by side.

    nice python benchmarks/nnx_vs_linen.py [--train 4096] [--test 2000] [--epochs 2] [--out results.json]

Both train with `Trainer` on the first `--train` MNIST training images (Adam, Keras' default rate,
batch 32, seed 0) and are evaluated on the first `--test` test images; a third run starts the NNX
port from linen's initial weights (`nnx_linen_init`), so it should match linen up to rounding. Step time: the compiled
train step on one fixed batch, `--rounds` rounds of `--steps` steps, the two models alternating
round by round (a busy machine slows both alike); the median round per model, and the ratio
nnx / linen (1: the same; the adapter only runs at trace time, so the programs should match:
`step_flops` is XLA's count for each compiled step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn.data.sources import load_mnist  # noqa: E402
from jaxcnn.models import get_model  # noqa: E402
from jaxcnn.nnx import load_variables  # noqa: E402
from jaxcnn.train import Trainer, init_variables  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=4096)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--data-dir", default=os.environ.get("JAXCNN_DATA_DIR"))
    p.add_argument("--out")
    args = p.parse_args(argv)

    ds = load_mnist(args.data_dir)
    x = (ds.x_train[: args.train] / 255.0).astype(np.float32)
    y = ds.y_train[: args.train]
    xt, yt = (ds.x_test[: args.test] / 255.0).astype(np.float32), ds.y_test[: args.test]
    if x.ndim == 3:
        x, xt = x[..., None], xt[..., None]

    linen = get_model("mnist_cnn")
    # nnx: its own initialization (seed 0); nnx_linen_init: started from linen's initial variables,
    # so any difference from linen is the adapter's, not the draw of the initial weights.
    same_init = load_variables(get_model("mnist_cnn", api="nnx"), init_variables(linen, (28, 28, 1), seed=0))
    models = {"linen": linen, "nnx": get_model("mnist_cnn", api="nnx", seed=0), "nnx_linen_init": same_init}
    trainers, results = {}, {}
    for name, model in models.items():
        trainer = Trainer(model, (28, 28, 1), optimizer="adam", seed=0)
        t0 = time.perf_counter()
        history = trainer.fit(x, y, epochs=args.epochs, batch_size=32, verbose=0, road="pipeline")
        results[name] = {"fit_seconds": round(time.perf_counter() - t0, 2),
                         "epoch_seconds": [round(s, 2) for s in history.history["seconds"]],
                         "train_accuracy": round(history.history["accuracy"][-1], 4),
                         **{f"test_{k}": round(v, 4) for k, v in trainer.evaluate(xt, yt).items()}}
        flops = trainer.train_step.lower(trainer.state, trainer.strategy.put_batch(
            {"image": x[:32], "label": y[:32]})).compile().cost_analysis()
        flops = flops[0] if isinstance(flops, (list, tuple)) else flops
        results[name]["step_flops"] = float(flops.get("flops", float("nan")))
        trainers[name] = trainer
        print(name, results[name], file=sys.stderr, flush=True)

    # Step time: the compiled step on one batch, alternating models round by round.
    batch = {"image": x[:32], "label": y[:32]}
    rounds = {name: [] for name in trainers}
    for name, trainer in trainers.items():  # warm-up (compiled already by fit)
        trainer.state, _ = trainer.train_step(trainer.state, trainer.strategy.put_batch(batch))
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            device_batch = trainer.strategy.put_batch(batch)
            state = trainer.state
            t0 = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = trainer.train_step(state, device_batch)
            jax.block_until_ready(metrics)
            rounds[name].append((time.perf_counter() - t0) / args.steps)
            trainer.state = state
    for name in trainers:
        results[name]["step_ms_median"] = round(1e3 * float(np.median(rounds[name])), 3)
        results[name]["step_ms_rounds"] = [round(1e3 * r, 3) for r in rounds[name]]
    out = {
        "what": f"N1 linen vs NNX: {args.train} MNIST train images, {args.epochs} epochs, batch 32, adam; "
                f"test on {args.test} test images; step time over {args.rounds}x{args.steps} steps, alternating",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {jax.default_backend()}",
        "jax": jax.__version__, "results": results,
        "step_time_ratio_nnx_over_linen": round(results["nnx"]["step_ms_median"] / results["linen"]["step_ms_median"], 3),
        "test_accuracy_difference_nnx_minus_linen": round(results["nnx"]["test_accuracy"]
                                                          - results["linen"]["test_accuracy"], 4),
        "same_init_test_accuracy_difference": round(results["nnx_linen_init"]["test_accuracy"]
                                                    - results["linen"]["test_accuracy"], 4),
    }
    print(json.dumps(out, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
