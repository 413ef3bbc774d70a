"""Runs in a fresh interpreter for tests/test_parallel.py (fake CPU devices need a new process).

    python tests/_parallel_worker.py steps OUT.json       # XLA_FLAGS=...device_count=8
    python tests/_parallel_worker.py train OUT_DIR        # under `jaxcnn launch`, or alone
    python tests/_parallel_worker.py prepare DIR          # train's data as a prepared dataset
                                                          # (WORKER_PREPARED=DIR: train streams it)

Each mode writes JSON (or .npz) results that the test asserts on.
"""

from __future__ import annotations

import json
import time
import os
import sys

T0 = time.perf_counter()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxcnn import parallel  # noqa: E402
from jaxcnn.models import get_model  # noqa: E402
from jaxcnn.models.layers import BatchNorm, Conv, Dense, flatten, max_pool  # noqa: E402
from jaxcnn.train.state import create_train_state  # noqa: E402
from jaxcnn.train.step import dropout_key, make_train_step  # noqa: E402


class BnDropoutCNN(nn.Module):
    """N7-like: conv-BN-pool-dropout, dense-BN-dropout, one logit; `bn_axis_name` for pmap."""

    dropout: float = 0.25
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, name=name)  # noqa: E731
        x = bn("bn1")(nn.relu(Conv(8, (3, 3))(x)))
        x = nn.Dropout(self.dropout, deterministic=not train)(max_pool(x))
        x = bn("bn2")(nn.relu(Dense(16)(flatten(x))))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return Dense(1)(x)


class DropoutCNN(nn.Module):
    """N2-like: conv-pool-dropout-dense-dropout -> 10."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Dropout(0.25, deterministic=not train)(max_pool(nn.relu(Conv(8, (3, 3))(x))))
        x = nn.Dropout(0.5, deterministic=not train)(nn.relu(Dense(32)(flatten(x))))
        return Dense(10)(x)


def case(name):
    """(model, input_shape, loss, batch) for a named case, batch 64."""
    rng = np.random.default_rng(0)
    if name == "n1":
        model, shape, loss = get_model("mnist_cnn"), (28, 28, 1), "sparse_categorical_crossentropy"
    elif name == "bn":  # N7-like without dropout: the pmap form draws per-device masks
        model, shape, loss = BnDropoutCNN(dropout=0.0), (12, 12, 3), "binary_crossentropy"
    elif name == "dropout":
        model, shape, loss = DropoutCNN(), (16, 16, 1), "sparse_categorical_crossentropy"
    else:
        raise KeyError(name)
    classes = 2 if loss == "binary_crossentropy" else 10
    batch = {"image": rng.random((64, *shape), np.float32),
             "label": rng.integers(0, classes, 64).astype(np.int32),
             "mask": np.ones(64, np.float32)}
    return model, shape, loss, batch


LR = 0.1
_STEPS = {}


def run_steps(strategy, model, shape, loss, batch, steps=2, seed=0):
    """Two SGD(momentum) steps on `batch`: loss of step 1, its gradients, the final state."""
    model = strategy.prepare_model(model)
    tx = optax.sgd(LR, momentum=0.9)
    state = strategy.replicate(create_train_state(model, shape, tx, seed=seed))
    params0 = jax.device_get(state.params)
    key = (id(strategy), loss)
    if key not in _STEPS:  # one compiled step per strategy and loss (re-used across seeds)
        _STEPS[key] = strategy.compile_train_step(lambda axis: make_train_step(loss, axis_name=axis))
    step = _STEPS[key]
    losses = []
    for i in range(steps):
        state, metrics = step(state, strategy.put_batch(batch))
        losses.append(float(metrics["loss"]) / float(metrics["count"]))
        if i == 0:  # first SGD step: params1 = params0 - LR * grads
            grads = jax.tree.map(lambda a, b: (a - b) / LR, params0, jax.device_get(state.params))
    return {"loss": losses, "grads": grads, "params": jax.device_get(state.params),
            "batch_stats": jax.device_get(state.batch_stats)}


def max_diff(a, b):
    return float(max(np.max(np.abs(np.asarray(x) - np.asarray(y)))
                     for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def compare(a, b):
    return {"loss": max(abs(x - y) for x, y in zip(a["loss"], b["loss"])),
            "grads": max_diff(a["grads"], b["grads"]), "params": max_diff(a["params"], b["params"]),
            "batch_stats": max_diff(a["batch_stats"], b["batch_stats"]) if a["batch_stats"] else 0.0}


def mode_steps():
    """Step parity 8 devices vs 1 (both strategies), the jax.pmap form, the pmap rng scheme."""
    assert jax.device_count() == 8, jax.devices()
    one = parallel.DataParallel(devices=jax.devices()[:1])
    strategies = {"jit": parallel.DataParallel(), "pmap": parallel.PmapParallel()}
    out = {"parity": {}}
    for name, names in (("n1", ("jit", "pmap")), ("bn", ("jit", "pmap")), ("dropout", ("jit",))):
        model, shape, loss, batch = case(name)
        ref = run_steps(one, model, shape, loss, batch)
        for s in names:
            res = run_steps(strategies[s], model, shape, loss, batch)
            out["parity"][f"{name}/{s}"] = compare(ref, res)
            print(name, s, f"{time.perf_counter() - T0:.1f}s", file=sys.stderr)
    # The literal jax.pmap form runs the same body as the pmap strategy (`res`: bn under pmap).
    model, shape, loss, batch = case("bn")
    pm = strategies["pmap"]
    state = parallel.replicate_leading(create_train_state(pm.prepare_model(model), shape, optax.sgd(LR, momentum=0.9)))
    step = parallel.pmap_step(lambda axis: make_train_step(loss, axis_name=axis))
    for _ in range(2):
        state, _ = step(state, parallel.shard_leading(batch))
    ref = run_steps(pm, model, shape, loss, batch)
    out["jax.pmap_vs_pmap_strategy"] = max_diff(ref["params"], parallel.unreplicate(jax.device_get(state.params)))
    print("jax.pmap", f"{time.perf_counter() - T0:.1f}s", file=sys.stderr)

    # pmap rng scheme: per-device masks differ; the step is reproducible for a seed.
    model, shape, loss, batch = case("dropout")
    state = pm.replicate(create_train_state(model, shape, optax.sgd(LR), seed=3))
    masks = np.asarray(parallel._shard_map(
        lambda st: jax.random.bernoulli(dropout_key(st, pm.axis_name), 0.5, (1, 256)),
        pm.mesh, in_specs=(parallel.P(),), out_specs=parallel.P(pm.axis_name))(state))
    a = run_steps(pm, model, shape, loss, batch, seed=3)
    b = run_steps(pm, model, shape, loss, batch, seed=3)
    c = run_steps(pm, model, shape, loss, batch, seed=4)
    ref1 = run_steps(one, model, shape, loss, batch, seed=3)
    out["rng"] = {"devices": int(masks.shape[0]), "distinct_masks": len({m.tobytes() for m in masks}),
                  "same_seed_diff": max_diff(a["params"], b["params"]),
                  "other_seed_diff": max_diff(a["params"], c["params"]),
                  "vs_one_device_diff": max_diff(a["params"], ref1["params"])}
    print("rng", f"{time.perf_counter() - T0:.1f}s", file=sys.stderr)

    # Batch sizes that do not split over 8 devices: the error names sizes that work.
    out["batch_errors"] = {}
    for s, strategy in strategies.items():
        try:
            strategy.check_batch_size(60)
            out["batch_errors"][s] = None
        except ValueError as e:
            out["batch_errors"][s] = str(e)
    try:
        from jaxcnn.train import Trainer

        Trainer(DropoutCNN(), (16, 16, 1), strategy="pmap").fit(
            batch["image"][:, :16, :16, :1], batch["label"], batch_size=12, verbose=0)
        out["batch_errors"]["fit"] = None
    except ValueError as e:
        out["batch_errors"]["fit"] = str(e)
    return out


def train_data():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (96, 12, 12, 3)).astype(np.uint8), rng.integers(0, 2, 96).astype(np.int32)


def mode_prepare(out_dir):
    from jaxcnn.data.records import prepare_arrays

    x, y = train_data()
    prepare_arrays(out_dir, {"train": (x, y), "test": (x[:37], y[:37])}, ["0", "1"], shard_size=40, progress=False)


def mode_train(out_dir):
    """A few Trainer.fit steps (numpy input); each process writes its params and eval results.

    With WORKER_PREPARED=DIR the same data is streamed from records; the indices each process
    read during fit are written too (`train_reads`).
    """
    from jaxcnn.train import Trainer

    parallel.initialize()
    strategy = os.environ.get("WORKER_STRATEGY", "jit")
    x, y = train_data()
    if os.environ.get("WORKER_PREPARED"):
        from jaxcnn.data.records import load_prepared

        x = load_prepared(os.environ["WORKER_PREPARED"], "train")
        x.reads = []
    xv, yv = x[:37], y[:37]  # 37 examples: the last eval batch is ragged across hosts
    trainer = Trainer(BnDropoutCNN(dropout=0.0 if strategy == "pmap" else 0.25), (12, 12, 3),
                      loss="binary_crossentropy", optimizer="adam", seed=5, strategy=strategy,
                      data_backend="numpy")
    trainer.fit(x, y, epochs=2, batch_size=16, verbose=0)
    train_reads = list(getattr(x, "reads", None) or [])
    pipe = trainer._pipeline(xv, yv, 8)
    sums = [trainer._eval_step(trainer.state, trainer.strategy.put_batch(b)) for b in pipe.eval_batches()]
    count = float(sum(float(s["count"]) for s in sums))
    result = {"process_index": jax.process_index(), "process_count": jax.process_count(),
              "device_count": jax.device_count(), "eval_count": count,
              "evaluate": trainer.evaluate(xv, yv, batch_size=8),
              "predict_sum": float(np.sum(trainer.predict(xv, batch_size=8))),
              "predict_len": len(trainer.predict(xv, batch_size=8)), "train_reads": train_reads}
    os.makedirs(out_dir, exist_ok=True)
    flat = {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(jax.device_get(
                {"params": trainer.state.params, "batch_stats": trainer.state.batch_stats}))}
    np.savez(os.path.join(out_dir, f"params_{jax.process_index()}.npz"), **flat)
    with open(os.path.join(out_dir, f"result_{jax.process_index()}.json"), "w") as f:
        json.dump(result, f)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return float(obj) if isinstance(obj, (np.floating, float)) else obj


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "train":
        mode_train(target)
    elif mode == "prepare":
        mode_prepare(target)
    else:
        result = {"steps": mode_steps}[mode]()
        with open(target, "w") as f:
            json.dump(_jsonable(result), f, indent=1)
