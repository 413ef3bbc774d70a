"""Speed and time-to-accuracy, side by side in one run: jaxcnn (both roads) vs Keras vs PyTorch.

    python benchmarks/speed.py [--epochs 5] [--n9-epochs 2] [--data-dir DIR] [--out speed.json]

N1 (MNIST CNN, Adam, batch 32) on MNIST and N9 (CIFAR-10 MLP D512 D512 -> 10, RMSprop,
batch 32), each trained the same number of epochs by every runner:

- jaxcnn, pipeline road with tf.data input and with numpy input (one dispatch per step);
- jaxcnn, device road (data on the device, `--steps-per-call` steps per dispatch);
- Keras (TensorFlow backend where TensorFlow is installed, else Keras' JAX backend);
- PyTorch (where installed; data as in-memory tensors, the same net and optimizer settings).

The runners take their epochs in turns (epoch 1 of each, then epoch 2 of each, ...), so a
machine whose load changes over the run slows them alike. Per runner: seconds per epoch
(training only; the first epoch, which includes compilation/tracing, is reported apart),
images/second, test accuracy after each epoch, and the training seconds until the test accuracy
first reached `--target` (N1: 0.99). Ratios are other / jaxcnn's best road (above 1: jaxcnn
faster). N9 uses CIFAR-10 when `load_dataset("cifar10")` can load it, else random uint8 images of
the right shape (speed only; the JSON says which).

Also the compile cache: time from a fresh process to the first finished N1 train step, cold (empty
persistent cache) and warm (same cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------------------------------------
# Runners: .epoch() trains one epoch and returns its training seconds; .test_accuracy()


class JaxcnnRunner:
    def __init__(self, net, data, batch_size, road, backend="auto", steps_per_call=100, precision="f32"):
        from jaxcnn.train import Trainer

        self.data, self.batch_size, self.road, self.steps_per_call = data, batch_size, road, steps_per_call
        model, optimizer = build_jax_model(net)
        self.trainer = Trainer(model, data["x_train"].shape[1:], optimizer=optimizer, data_backend=backend,
                               compute_dtype=precision)
        self.epochs_done = 0

    def epoch(self):
        t = self.trainer
        e = self.epochs_done
        t.fit(self.data["x_train"], self.data["y_train"], epochs=e + 1, initial_epoch=e, batch_size=self.batch_size,
              verbose=0, road=self.road, steps_per_call=self.steps_per_call)
        self.epochs_done += 1
        return t.history["seconds"][-1]

    def test_accuracy(self):
        return self.trainer.evaluate(self.data["x_test"], self.data["y_test"], batch_size=1000)["accuracy"]


def build_jax_model(net):
    from jaxcnn.models import get_model

    if net == "n1":
        return get_model("mnist_cnn"), "adam"
    try:
        return get_model("cifar10_mlp"), "rmsprop"
    except KeyError:  # not registered on this checkout: the same network, defined here
        import flax.linen as nn

        from jaxcnn.models.layers import Dense, flatten

        class Cifar10MLP(nn.Module):
            @nn.compact
            def __call__(self, x, train: bool = False):
                x = nn.relu(Dense(512, name="dense1")(flatten(x)))
                x = nn.relu(Dense(512, name="dense2")(x))
                return Dense(10, name="logits")(x)

        return Cifar10MLP(), "rmsprop"


class KerasRunner:
    def __init__(self, net, data, batch_size):
        import keras

        self.keras, self.data, self.batch_size = keras, data, batch_size
        L = keras.layers
        if net == "n1":
            layers = [L.Conv2D(32, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
                      L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2)),
                      L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")]
            optimizer = "adam"
        else:
            layers = [L.Flatten(), L.Dense(512, activation="relu"), L.Dense(512, activation="relu"),
                      L.Dense(10, activation="softmax")]
            optimizer = "rmsprop"
        self.model = keras.Sequential([keras.Input(data["x_train"].shape[1:]), *layers])
        self.model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        self.x = data["x_train"].astype("float32") / 255.0
        self.x_test = data["x_test"].astype("float32") / 255.0
        self.name = f"keras {keras.__version__} ({keras.backend.backend()} backend)"

    def epoch(self):
        t0 = time.perf_counter()
        self.model.fit(self.x, self.data["y_train"], epochs=1, batch_size=self.batch_size, verbose=0)
        return time.perf_counter() - t0

    def test_accuracy(self):
        return float(self.model.evaluate(self.x_test, self.data["y_test"], batch_size=1000, verbose=0)[1])


class TorchRunner:
    """The same nets in PyTorch: Keras-default inits do not matter for speed; optimizer eps 1e-7."""

    def __init__(self, net, data, batch_size, device="cpu"):
        import torch

        self.torch, self.batch_size, self.device = torch, batch_size, device
        nn = torch.nn
        if net == "n1":
            self.model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                                       nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        else:
            self.model = nn.Sequential(nn.Flatten(), nn.Linear(3072, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                                       nn.Linear(512, 10))
            self.opt = torch.optim.RMSprop(self.model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
        self.model.to(device)

        def tensor(x):  # NHWC uint8 -> NCHW float [0, 1], like the Keras runner's x / 255
            return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(device).float().div_(255.0)

        self.x, self.x_test = tensor(data["x_train"]), tensor(data["x_test"])
        self.y = torch.from_numpy(data["y_train"].astype(np.int64)).to(device)
        self.y_test = torch.from_numpy(data["y_test"].astype(np.int64)).to(device)
        self.loss = nn.CrossEntropyLoss()
        self.epochs_done = 0
        if device == "cpu":  # on a loaded machine OpenMP's spinning threads can be 10x slower: pick by a probe
            speeds = {}
            for n in sorted({1, os.cpu_count() or 1}):
                torch.set_num_threads(n)
                self._steps(20)
                t0 = time.perf_counter()
                self._steps(30)
                speeds[n] = time.perf_counter() - t0
            torch.set_num_threads(min(speeds, key=speeds.get))
        self.name = f"pytorch {torch.__version__} ({device}, {torch.get_num_threads()} threads)"

    def _steps(self, n):  # warm-up / probe steps on the first rows (not counted in any epoch)
        for s in range(n):
            rows = slice(s * self.batch_size, (s + 1) * self.batch_size)
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.model(self.x[rows]), self.y[rows]).backward()
            self.opt.step()

    def epoch(self):
        torch = self.torch
        g = torch.Generator().manual_seed(self.epochs_done)
        self.epochs_done += 1
        order = torch.randperm(len(self.x), generator=g).to(self.device)
        steps = len(self.x) // self.batch_size
        self.model.train()
        t0 = time.perf_counter()
        for s in range(steps):
            rows = order[s * self.batch_size:(s + 1) * self.batch_size]
            self.opt.zero_grad(set_to_none=True)
            self.loss(self.model(self.x[rows]), self.y[rows]).backward()
            self.opt.step()
        if self.device != "cpu":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def test_accuracy(self):
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            hits = sum(int((self.model(self.x_test[i:i + 1000]).argmax(1) == self.y_test[i:i + 1000]).sum())
                       for i in range(0, len(self.x_test), 1000))
        return hits / len(self.x_test)


# ---------------------------------------------------------------------------------------------


def load_n1(data_dir):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist", data_dir=data_dir)
    return {"x_train": ds.x_train, "y_train": ds.y_train.astype(np.int32), "x_test": ds.x_test,
            "y_test": ds.y_test.astype(np.int32)}, "MNIST (IDX files)"


def load_n9(data_dir, n_train=50_000, n_test=10_000):
    try:
        from jaxcnn.data import load_dataset

        ds = load_dataset("cifar10", data_dir=data_dir)
        return {"x_train": ds.x_train, "y_train": ds.y_train.astype(np.int32), "x_test": ds.x_test,
                "y_test": ds.y_test.astype(np.int32)}, "CIFAR-10 (JPEG copy)"
    except Exception as e:  # noqa: BLE001  (no loader or no data here: random images of CIFAR's shape)
        rng = np.random.default_rng(0)
        return ({"x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                 "y_train": rng.integers(0, 10, n_train).astype(np.int32),
                 "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
                 "y_test": rng.integers(0, 10, n_test).astype(np.int32)},
                f"random uint8 images of CIFAR-10's shape (CIFAR-10 not loadable here: {type(e).__name__})")


def make_runners(net, data, batch_size, args):
    runners = {}
    if has("tensorflow"):
        runners["jaxcnn_pipeline_tf"] = lambda: JaxcnnRunner(net, data, batch_size, "pipeline", "tf")
    runners["jaxcnn_pipeline_numpy"] = lambda: JaxcnnRunner(net, data, batch_size, "pipeline", "numpy")
    import jax

    if jax.default_backend() != "cpu" or args.device_road_on_cpu:
        runners["jaxcnn_device"] = lambda: JaxcnnRunner(net, data, batch_size, "device",
                                                        steps_per_call=args.steps_per_call)
    if has("keras") and "keras" not in args.skip:
        runners["keras"] = lambda: KerasRunner(net, data, batch_size)
    if has("torch") and "torch" not in args.skip:
        runners["pytorch"] = lambda: TorchRunner(net, data, batch_size)
    return {k: v for k, v in runners.items() if k not in args.skip}


def bench(net, data, epochs, batch_size, target, args):
    if args.limit:
        data = {k: v[: args.limit] for k, v in data.items()}
    runners = {name: make() for name, make in make_runners(net, data, batch_size, args).items()}
    rec = {name: {"epoch_seconds": [], "test_accuracy": []} for name in runners}
    for epoch in range(epochs):
        for name, r in runners.items():
            sec = r.epoch()
            rec[name]["epoch_seconds"].append(round(sec, 3))
            rec[name]["test_accuracy"].append(round(r.test_accuracy(), 4))
            print(f"[{net}] epoch {epoch + 1}/{epochs} {name}: {sec:.2f}s, test acc {rec[name]['test_accuracy'][-1]}",
                  file=sys.stderr, flush=True)
    n_train = len(data["x_train"]) // batch_size * batch_size
    for name, r in rec.items():
        secs = r["epoch_seconds"]
        if not secs:
            continue
        steady = float(np.median(secs[1:])) if len(secs) > 1 else secs[0]
        r.update(who=getattr(runners[name], "name", name), first_epoch_seconds=secs[0],
                 steady_epoch_seconds=round(steady, 3), first_epoch_extra_seconds=round(secs[0] - steady, 3),
                 images_per_second=round(n_train / steady),
                 final_test_accuracy=r["test_accuracy"][-1])
        if target:
            hit = next((i for i, a in enumerate(r["test_accuracy"]) if a >= target), None)
            r["seconds_to_target"] = None if hit is None else round(sum(secs[: hit + 1]), 2)
            r["epochs_to_target"] = None if hit is None else hit + 1
    if "jaxcnn_device" not in rec and "jaxcnn_device" not in args.skip:
        ratios_note = device_road_probe(net, data, batch_size, args.steps_per_call)
        rec["jaxcnn_device_probe"] = ratios_note
    jax_names = [n for n in rec if n.startswith("jaxcnn") and "steady_epoch_seconds" in rec[n]]
    best = min(jax_names, key=lambda n: rec[n]["steady_epoch_seconds"])
    ratios = {"best_jaxcnn_road": best}
    for name in rec:
        if not name.startswith("jaxcnn"):
            ratios[f"{name}_over_jaxcnn"] = round(rec[name]["steady_epoch_seconds"] / rec[best]["steady_epoch_seconds"], 3)
            if target and rec[name].get("seconds_to_target") and rec[best].get("seconds_to_target"):
                ratios[f"{name}_over_jaxcnn_time_to_target"] = round(
                    rec[name]["seconds_to_target"] / rec[best]["seconds_to_target"], 3)
    return {"runners": rec, "ratios": ratios}


def device_road_probe(net, data, batch_size, steps_per_call, calls=3):
    """On CPU the device road is too slow for whole epochs (scanned convs): time a few chunks."""
    from jaxcnn.train.ondevice import DeviceRoad

    r = JaxcnnRunner(net, data, batch_size, "device", steps_per_call=steps_per_call)
    road = DeviceRoad(r.trainer, data["x_train"], data["y_train"], batch_size, steps_per_call=steps_per_call)
    idx = road.epoch_indices(0)
    t0 = time.perf_counter()
    road.run_chunk(idx[:steps_per_call], 0)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for c in range(1, calls + 1):
        road.run_chunk(idx[c * steps_per_call:(c + 1) * steps_per_call], 0)
    import jax

    jax.block_until_ready(r.trainer.state)
    sec = (time.perf_counter() - t0) / (calls * steps_per_call)
    return {"note": f"{calls} chunks of {steps_per_call} steps only (whole epochs too slow on CPU)",
            "first_call_seconds": round(first, 2), "images_per_second": round(batch_size / sec),
            "estimated_epoch_seconds": round(sec * (len(data["x_train"]) // batch_size), 1)}


def cache_check():
    """Seconds from a fresh process start to the first finished N1 step: cold vs warm cache."""
    code = ("import time; t0 = time.perf_counter(); import jax, numpy as np; "
            "from jaxcnn.models import get_model; from jaxcnn.train import Trainer; "
            "t = Trainer(get_model('mnist_cnn'), (28, 28, 1), optimizer='adam', data_backend='numpy'); "
            "x = np.zeros((64, 28, 28, 1), np.uint8); y = np.zeros(64, np.int32); "
            "t.fit(x, y, epochs=1, batch_size=32, verbose=0, road='pipeline'); "
            "t.evaluate(x, y, batch_size=32); print(time.perf_counter() - t0)")
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, JAXCNN_COMPILATION_CACHE=os.path.join(d, "cache"), PYTHONPATH=ROOT)
        for kind in ("cold", "warm"):
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out[f"{kind}_seconds_to_first_step"] = round(float(res.stdout.split()[-1]), 2)
        out["cache_entries"] = len(os.listdir(os.path.join(d, "cache")))
    return out


def table(results) -> str:
    lines = []
    for net in ("n1", "n9"):
        if net not in results:
            continue
        r = results[net]
        lines.append(f"\n{net.upper()} ({r['data']}, batch {r['batch_size']}, {r['epochs']} epochs)")
        lines.append(f"{'runner':24s} {'s/epoch':>8s} {'1st epoch':>9s} {'img/s':>8s} {'test acc':>8s} {'s to target':>11s}")
        for name, v in r["runners"].items():
            if "steady_epoch_seconds" not in v:
                lines.append(f"{name:24s} {v.get('estimated_epoch_seconds', '-'):>8} {'':9s} "
                             f"{v.get('images_per_second', 0):8d}   ({v.get('note', '')})")
                continue
            tt = v.get("seconds_to_target")
            lines.append(f"{name:24s} {v['steady_epoch_seconds']:8.2f} {v['first_epoch_seconds']:9.2f} "
                         f"{v['images_per_second']:8d} {v['final_test_accuracy']:8.4f} {'-' if tt is None else tt:>11}")
        lines.append("ratios: " + ", ".join(f"{k} {v}" for k, v in r["ratios"].items()))
    if "compile_cache" in results:
        lines.append(f"\ncompile cache: {results['compile_cache']}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5, help="N1 epochs (time to --target is read off these)")
    p.add_argument("--n9-epochs", type=int, default=2, help="N9 epochs (0: skip N9)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--target", type=float, default=0.99, help="N1 test accuracy for time-to-accuracy")
    p.add_argument("--steps-per-call", type=int, default=100, help="device road: steps per dispatch")
    p.add_argument("--skip", default="", help="comma-separated runners to leave out (keras, torch, jaxcnn_device, ...)")
    p.add_argument("--no-cache-check", action="store_true")
    p.add_argument("--device-road-on-cpu", action="store_true",
                   help="run whole epochs of the device road on CPU too (slow: scanned convs)")
    p.add_argument("--limit", type=int, help="first N train/test examples only (smoke runs)")
    p.add_argument("--data-dir")
    p.add_argument("--out")
    args = p.parse_args(argv)
    args.skip = set(filter(None, args.skip.split(",")))
    import jax

    results = {"machine": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
                          f"load average at start {os.getloadavg()[0]:.1f}",
               "jax": jax.__version__, "device": str(jax.devices()[0])}
    data, what = load_n1(args.data_dir)
    results["n1"] = {"data": what, "batch_size": args.batch_size, "epochs": args.epochs,
                     **bench("n1", data, args.epochs, args.batch_size, args.target, args)}
    if args.n9_epochs:
        data, what = load_n9(args.data_dir)
        results["n9"] = {"data": what, "batch_size": args.batch_size, "epochs": args.n9_epochs,
                         **bench("n9", data, args.n9_epochs, args.batch_size, None, args)}
    if not args.no_cache_check:
        results["compile_cache"] = cache_check()
    results["load_average_at_end"] = round(os.getloadavg()[0], 1)
    text = json.dumps(results, indent=2)
    print(text)
    print(table(results), file=sys.stderr)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
