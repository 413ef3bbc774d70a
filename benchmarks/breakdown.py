"""Where a run's time goes: start-up, imports, data, compilation, steps, evaluation, host work.

    python benchmarks/breakdown.py [--bench mnist_fast|n1] [--frameworks jaxcnn,jaxcnn-cached,pytorch]
                                   [--epochs E] [--limit N] [--json out.json]

Each run is a fresh process that marks its phases with `time.process_time()` (CPU seconds of
the whole process, every thread, user + system, counted from process start) and the wall
clock; the parent adds the process's total CPU (`RUSAGE_CHILDREN`), so "python start" (before
the first mark) and "exit" (after the last) are counted too. CPU seconds are the unit because
this machine is shared: wall times move with other jobs' load, CPU seconds much less (they
still grow a little under contention: cache misses, and XLA's and OpenMP's spinning threads).

Phases (jaxcnn):
    python start      the interpreter, up to this file's first line
    import            jax, flax, optax and the jaxcnn modules the run uses
    data              MNIST from gzipped IDX files (jaxcnn.data.load_dataset; the twin: numpy alone)
    init              the model's first state (jitted init) and the Trainer
    compile           the step / chunk and scorer compilations (ahead of the clock for mnist_fast;
                      XLA's own compile seconds from jax.monitoring are listed beside)
    steps             the epochs' training steps (N1: with its host input pipeline; the part the
                      loop spent waiting for batches is `input_wait` from StepTiming)
    evaluation        test-set scoring after each epoch (mnist_fast) / `evaluate` (N1)
    exit              interpreter shutdown (parent's total minus the last mark)
`jaxcnn-cached` is jaxcnn with JAX's persistent compilation cache (jaxcnn.compile_cache) on from
the start, in a fresh folder that a first, unmeasured run fills, so its compiles are cache
loads (`jaxcnn train` has the cache on; `speedrun.train`, which benchmarks/mnist_fast.py runs,
turns it off to time a cold compile).
Whether TensorFlow was imported by the end of each phase is recorded (`tf`).
"""

from __future__ import annotations

import time

_T0 = (time.process_time(), time.perf_counter())

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
FRAMEWORKS = ("jaxcnn", "jaxcnn-cached", "pytorch")


class Marks:
    """Phase boundaries: (name, CPU seconds since the last mark, wall seconds, TF imported)."""

    def __init__(self):
        self.rows = [("python start", _T0[0], None, "tensorflow" in sys.modules)]
        self.last = _T0

    def __call__(self, name: str):
        now = (time.process_time(), time.perf_counter())
        self.rows.append((name, now[0] - self.last[0], now[1] - self.last[1], "tensorflow" in sys.modules))
        self.last = now


def _compile_listener(box: dict):
    import jax

    def listen(event, duration, **kwargs):
        if "compile" in event or "trace" in event or "lower" in event:
            box[event] = box.get(event, 0.0) + duration

    jax.monitoring.register_event_duration_secs_listener(listen)


def _idx(name):
    """An IDX file of the MNIST folder, parsed with numpy alone (the twin imports no jaxcnn)."""
    import gzip

    import numpy as np

    folder = os.path.join(os.environ.get("JAXCNN_DATA_DIR", os.path.join(os.path.dirname(ROOT), "shared", "datasets")),
                          "mnist")
    with gzip.open(os.path.join(folder, f"{name}.gz"), "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _data_numpy(limit):
    x, y = _idx("train-images-idx3-ubyte")[..., None], _idx("train-labels-idx1-ubyte").astype("int32")
    xt, yt = _idx("t10k-images-idx3-ubyte")[..., None], _idx("t10k-labels-idx1-ubyte").astype("int32")
    if limit:
        x, y, xt, yt = x[:limit], y[:limit], xt[: limit // 2], yt[: limit // 2]
    return x, y, xt, yt


def _data(limit):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist")
    x, y, xt, yt = ds.x_train, ds.y_train.astype("int32"), ds.x_test, ds.y_test.astype("int32")
    if limit:
        x, y, xt, yt = x[:limit], y[:limit], xt[: limit // 2], yt[: limit // 2]
    return x, y, xt, yt


# -- children -------------------------------------------------------------------------------------
def child_jax_mnist_fast(mark, epochs, limit, cache):
    import dataclasses

    import jax

    from jaxcnn.models import get_model
    from jaxcnn.train import Callback, Trainer
    from jaxcnn.train.callbacks import RecordClock, TestScore
    from jaxcnn.train.feeds.device import DeviceRoad
    from jaxcnn.train.recipes import augment, order, run, step
    from jaxcnn.train.recipes import recipe as recipes
    mark("import")
    if cache:  # on before the init compiles (the Trainer would turn it on only after it)
        from jaxcnn.compile_cache import enable_compilation_cache

        enable_compilation_cache()
    compiles = {}
    _compile_listener(compiles)
    x, y, xt, yt = _data(limit)
    mark("data")
    recipe = dataclasses.replace(recipes.MNIST_FAST, epochs=epochs)
    model = get_model("mnist_fast")
    state, setup = run.prepare_state(model, x, recipe, 0)
    trainer = Trainer(model, x.shape[1:], seed=0, compute_dtype="f32", road="device", state=state,
                      compilation_cache=cache)
    spe, total = run.plan(recipe, len(x))
    trainer.set_train_step(lambda axis: step.make_train_step(recipe, total, trainer.compute_dtype, trainer.metrics),
                           state=state)
    feed = DeviceRoad(trainer, x, y, recipe.batch_size, augment=augment.AUGMENTS[recipe.augment],
                      steps_per_call=spe, order=order.StreamOrder(len(x), 0), key_per_epoch=False)
    mark("init")

    class Phases(Callback):  # placed before and after the scorer: steps and evaluation apart
        def __init__(self, first):
            self.first = first

        def on_train_begin(self, trainer):
            if not self.first:
                mark("compile")

        def on_epoch_begin(self, trainer, epoch):
            if self.first:
                mark("host work")  # between epochs: the loop, callbacks, drawing the next order

        def on_epoch_logs(self, trainer, epoch, logs):
            mark("steps" if self.first else "evaluation")

    score = TestScore(xt, yt, recipe.eval_batch, recipe.tta)
    clock = RecordClock(score, recipe.target, setup)
    trainer.fit(x, y, epochs=recipe.epochs, batch_size=recipe.batch_size, road=feed, verbose=0,
                callbacks=[Phases(True), score, clock, Phases(False)])
    mark("host work")
    return {"test_accuracy": score.correct / score.n, "xla_compile_wall_seconds": compiles,
            "input_wait_seconds": trainer.input_wait_seconds, "device": str(jax.devices()[0])}


def child_jax_n1(mark, epochs, limit, cache):
    import jax

    from jaxcnn.models import get_model
    from jaxcnn.train import Callback, Trainer
    mark("import")
    compiles = {}
    _compile_listener(compiles)
    x, y, xt, yt = _data(limit)
    mark("data")
    trainer = Trainer(get_model("mnist_cnn"), (28, 28, 1), optimizer="adam", compute_dtype="f32",
                      compilation_cache=cache)
    mark("init")

    class Phases(Callback):
        def on_epoch_begin(self, trainer, epoch):
            self.first = epoch == 0
            mark("host work")

        def on_step_end(self, trainer, epoch, step):
            if self.first:  # the first step's dispatch compiles it
                mark("compile")
                self.first = False

        def on_epoch_logs(self, trainer, epoch, logs):
            mark("steps")

    trainer.fit(x, y, epochs=epochs, batch_size=32, verbose=0, callbacks=[Phases()])
    mark("host work")
    acc = trainer.evaluate(xt, yt, batch_size=256)["accuracy"]
    mark("evaluation")
    return {"test_accuracy": acc, "xla_compile_wall_seconds": compiles, "timing": trainer.timing,
            "input_wait_seconds": trainer.input_wait_seconds, "device": str(jax.devices()[0])}


def child_torch(mark, bench, epochs, limit):
    import numpy as np
    import torch
    from torch import nn
    mark("import")
    x, y, xt, yt = _data_numpy(limit)
    mark("data")
    torch.manual_seed(0)
    if bench == "n1":
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Linear(64, 10))
        opt, lossf, batch, scale = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7), nn.CrossEntropyLoss(), 32, 1.0
    else:  # jaxcnn.train.recipes.MNIST_FAST
        layers, c = [], 1
        for i, w in enumerate((16, 32, 64)):
            bn = nn.BatchNorm2d(w, eps=1e-5, momentum=0.1)
            bn.weight.requires_grad_(False)
            layers += [nn.Conv2d(c, w, 3, bias=False), bn, nn.ReLU(), nn.MaxPool2d(2) if i < 2 else nn.AdaptiveMaxPool2d(1)]
            c = w
        net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(64, 10, bias=False))
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.2, momentum=0.9, nesterov=True)
        lossf, batch, scale = nn.CrossEntropyLoss(label_smoothing=0.1), 256, 0.125
    net = net.to(memory_format=torch.channels_last)
    xd = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yd = torch.from_numpy(y.astype(np.int64))
    xtd, ytd = torch.from_numpy(xt.transpose(0, 3, 1, 2).copy()), torch.from_numpy(yt.astype(np.int64))
    steps = len(x) // batch
    total = max(1, math.ceil(steps * epochs))
    gen = torch.Generator().manual_seed(0)
    mark("init")
    done = 0
    for _ in range(math.ceil(total / steps)):
        order = torch.randperm(len(x), generator=gen)
        net.train()
        mark("host work")
        for s in range(min(steps, total - done)):
            rows = order[s * batch:(s + 1) * batch]
            loss = lossf(net(xd[rows].float().div_(255.0)) * scale, yd[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
        mark("steps")
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(xtd[i:i + 1000].float() / 255.0).argmax(1) == ytd[i:i + 1000]).sum())
                          for i in range(0, len(xtd), 1000))
        mark("evaluation")
    return {"test_accuracy": correct / len(ytd), "torch": torch.__version__, "threads": torch.get_num_threads()}


def child(framework, bench, epochs, limit) -> dict:
    mark = Marks()
    if framework == "pytorch":
        extra = child_torch(mark, bench, epochs, limit)
    else:
        fn = child_jax_mnist_fast if bench == "mnist_fast" else child_jax_n1
        extra = fn(mark, epochs, limit, cache=framework == "jaxcnn-cached")
    return {"phases": mark.rows, "wall_seconds_in_process": time.perf_counter() - _T0[1], **extra}


# -- parent ---------------------------------------------------------------------------------------
def run_child(framework, bench, epochs, limit, env) -> dict:
    """One fresh process; its phases plus the parent's view of its total CPU and wall seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", framework, "--bench", bench,
                          "--epochs", str(epochs), *(["--limit", str(limit)] if limit else [])],
                         env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    marked = sum(r[1] for r in result["phases"])
    result["phases"].append(["exit", cpu - marked, None, None])
    result.update(framework=framework, bench=bench, cpu_seconds=cpu, wall_seconds=wall)
    return result


def totals(result) -> dict:
    """CPU seconds per phase name (a phase marked once per epoch is summed)."""
    out = {}
    for name, cpu, _, _ in result["phases"]:
        out[name] = out.get(name, 0.0) + cpu
    return out


def table(results) -> str:
    names = list(dict.fromkeys(n for r in results for n, *_ in r["phases"]))
    head = "| phase (CPU s) | " + " | ".join(r["framework"] for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    per = [totals(r) for r in results]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(f"{t.get(n, 0.0):.2f}" for t in per) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['cpu_seconds']:.2f}**" for r in results) + " |")
    lines.append("| TF imported | " + " | ".join(str(any(p[3] for p in r["phases"] if p[3] is not None))
                                                 for r in results) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bench", choices=("mnist_fast", "n1"), default="mnist_fast")
    p.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    p.add_argument("--epochs", type=float, default=None, help="default: the recipe's 3 (mnist_fast), 1 (N1)")
    p.add_argument("--limit", type=int, help="N training (N/2 test) images")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    epochs = args.epochs or (3 if args.bench == "mnist_fast" else 1)
    if args.child:
        print(json.dumps(child(args.child, args.bench, epochs, args.limit)))
        return None
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    results = []
    with tempfile.TemporaryDirectory() as cache:
        env["JAXCNN_COMPILATION_CACHE"] = cache
        for fw in args.frameworks.split(","):
            if fw == "jaxcnn-cached":  # fill the cache first (not measured)
                run_child(fw, args.bench, epochs, args.limit, env)
            results.append(run_child(fw, args.bench, epochs, args.limit, env))
            print(f"{fw}: {results[-1]['cpu_seconds']:.1f} CPU s, {results[-1]['wall_seconds']:.1f} wall s",
                  file=sys.stderr, flush=True)
    print(table(results))
    out = {"machine": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                       "load_average": [round(v, 2) for v in os.getloadavg()], "platform": platform.platform()},
           "bench": args.bench, "epochs": epochs, "limit": args.limit, "runs": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
