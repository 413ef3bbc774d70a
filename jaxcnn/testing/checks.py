"""`assert_trains` and `assert_same_on_devices`: what every model owes its users, in one call each.

Both build a TrainState with `jaxcnn.train.create_train_state` and run the library's own step
(`make_train_step`) through a device strategy of `jaxcnn.parallel`, as `Trainer` does, so a model
that passes them trains under jaxcnn. Failures raise AssertionError with a message that names
what differed: the step, the leaf (as a `['layer']['kernel']` path) and by how much.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn import parallel
from jaxcnn.models import get_model
from jaxcnn.nnx import NnxModel, adapt
from jaxcnn.testing.data import tiny_dataset
from jaxcnn.testing.devices import require_devices
from jaxcnn.train.optim import get_optimizer
from jaxcnn.train.state import create_train_state
from jaxcnn.train.step import make_train_step

_MAX_LINES = 10  # differing leaves listed in a message before "and N more"


# -- helpers shared by the checks -------------------------------------------------------------------
def _as_model(model) -> nn.Module:
    """A linen module, or an NNX module/class as its linen-like NnxModel (jaxcnn.nnx)."""
    return get_model(model) if isinstance(model, str) else adapt(model)


def _label(model: nn.Module) -> str:
    return model.name if isinstance(model, NnxModel) else type(model).__name__


def _variables(params, batch_stats):
    return {"params": params, **({"batch_stats": batch_stats} if batch_stats else {})}


def _output_shape(model, params, batch_stats, input_shape, batch_size):
    x = jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32)

    def apply(variables, x):
        # A dropout rng and mutable statistics: a model whose dropout or BatchNorm ignores
        # `train` gets as far as the check that names that.
        out = model.apply(variables, x, train=False, rngs={"dropout": jax.random.PRNGKey(0)},
                          mutable=["batch_stats"] if batch_stats else False)
        return out[0] if batch_stats else out

    return jax.eval_shape(apply, _variables(params, batch_stats), x).shape


def _loss_for(loss, out_shape):
    """A name for the loss: as given, or inferred from the outputs (one logit: binary)."""
    if loss is not None:
        return loss
    return "binary_crossentropy" if out_shape[-1] == 1 else "sparse_categorical_crossentropy"


def _tiny_batch(input_shape, out_shape, loss, batch_size, seed):
    classes = 2 if loss == "binary_crossentropy" or out_shape[-1] == 1 else out_shape[-1]
    return tiny_dataset("images", batch_size, shape=input_shape, num_classes=classes, seed=seed)


def _check_batch(batch, input_shape, what):
    if not isinstance(batch, dict) or "image" not in batch or "label" not in batch:
        raise TypeError(f"{what}: batch must be a dict with 'image' and 'label', got {type(batch).__name__}")
    chex.assert_shape(batch["image"], (None, *input_shape),
                      custom_message=f"{what}: batch['image'] does not match input_shape {tuple(input_shape)}")
    chex.assert_equal_shape_prefix([batch["image"], batch["label"]], 1,
                                   custom_message=f"{what}: batch['image'] and batch['label'] differ in length")


def _paths(tree):
    return [(jax.tree_util.keystr(p), np.asarray(x)) for p, x in jax.tree_util.tree_leaves_with_path(tree)]


def _limit(lines):
    if len(lines) > _MAX_LINES:
        return lines[:_MAX_LINES] + [f"... and {len(lines) - _MAX_LINES} more"]
    return lines


def nonfinite_leaves(tree, name: str) -> list[str]:
    """`name['layer']['kernel']: 3 of 288 values non-finite` for each leaf holding NaN or inf."""
    out = []
    for path, x in _paths(tree):
        bad = int(np.sum(~np.isfinite(x))) if np.issubdtype(x.dtype, np.inexact) else 0
        if bad:
            out.append(f"{name}{path}: {bad} of {x.size} values non-finite")
    return out


def tree_differences(name: str, expected, actual, atol: float, rtol: float) -> list[str]:
    """One line per leaf of `actual` not within `atol + rtol * |expected|` (numpy's allclose rule).

    Each line names the leaf, its shape, the largest absolute difference, where, and the
    relative difference there. Structure mismatches are listed as missing/extra leaves.
    """
    exp, act = dict(_paths(expected)), dict(_paths(actual))
    lines = [f"{name}{p}: missing" for p in exp if p not in act]
    lines += [f"{name}{p}: unexpected leaf" for p in act if p not in exp]
    for p in exp:
        if p not in act:
            continue
        a, b = np.asarray(exp[p], np.float64), np.asarray(act[p], np.float64)
        if a.shape != b.shape:
            lines.append(f"{name}{p}: shape {b.shape}, expected {a.shape}")
            continue
        diff = np.abs(a - b)
        excess = diff - (atol + rtol * np.abs(a))
        if a.size == 0 or not (np.any(excess > 0) or np.any(np.isnan(diff))):
            continue
        where = np.unravel_index(np.nanargmax(np.where(np.isnan(diff), np.inf, diff)), a.shape)
        rel = diff[where] / max(abs(a[where]), 1e-30)
        lines.append(f"{name}{p} {a.shape}: max |diff| {diff[where]:.3g} at {tuple(map(int, where))} "
                     f"({a[where]:.6g} vs {b[where]:.6g}, relative {rel:.3g}); "
                     f"{int(np.sum(excess > 0))} of {a.size} values out of tolerance")
    return lines


class _TraceCounter:
    """Counts the traces of the function it wraps (`chex.assert_max_traces` counts per source
    location across calls, so two checks of two models would share one count)."""

    def __init__(self, fn):
        self.fn, self.count = fn, 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.fn(*args, **kwargs)


def _signature(tree):
    """Leaf path -> (shape, dtype, weak_type): what decides whether jit traces again."""
    return {p: (tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)))
            for p, x in ((jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_leaves_with_path(tree))}


def _signature_changes(a: dict, b: dict) -> list[str]:
    lines = [f"state{p}: missing after the step" for p in a if p not in b]
    lines += [f"state{p}: new after the step" for p in b if p not in a]
    lines += [f"state{p}: {a[p]} -> {b[p]} (shape, dtype, weak_type)" for p in a if p in b and a[p] != b[p]]
    return lines


# -- assert_trains ----------------------------------------------------------------------------------
def assert_trains(model, input_shape, loss=None, steps: int = 3, *, batch: dict | None = None,
                  batch_size: int = 8, optimizer="adam", learning_rate: float = 1e-3, seed: int = 0,
                  every_param_learns: bool = True, every_stat_updates: bool = True) -> list[float]:
    """A few steps on one tiny batch train `model`; returns the losses of the steps.

    Checks, each failing with a message that names the step or leaf:
    - the loss of every step, and the params and BatchNorm statistics after them, are finite;
    - the loss after `steps` steps is lower than before the first (same batch, same dropout
      masks: both measured by the step with the first step's key);
    - every parameter leaf changed (a leaf that never moves is not in the loss's graph);
      `every_param_learns=False` skips this, e.g. for partly frozen optimizers; every BatchNorm
      statistic changed (training mode updates them): `every_stat_updates=False` skips this for
      a model that runs some BatchNorm in inference mode on purpose (a frozen base, e.g.
      `TransferModel` on ResNet50);
    - the train step traces (compiles) once over all steps (`chex.assert_max_traces`), and so
      does the inference function;
    - inference (`train=False`) does not depend on the dropout rng, leaves BatchNorm statistics
      unchanged, and gives each example the same output whatever else is in its batch.

    model: a linen module (or a registered model's name) whose `__call__(x, train)` returns
    logits [batch, outputs], or a `flax.nnx` module (or `jaxcnn.nnx.as_model(...)`). loss: a loss name (`jaxcnn.train.LOSSES`); None picks binary
    cross-entropy for one output, sparse categorical cross-entropy otherwise. batch: a dict
    `{"image", "label"}`; by default `batch_size` synthetic examples with a learnable signal.
    """
    model = _as_model(model)
    name = _label(model)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    tx = get_optimizer(optimizer, learning_rate)
    state = create_train_state(model, input_shape, tx, seed=seed)
    if batch is None:
        out_shape = _output_shape(model, state.params, state.batch_stats, input_shape, batch_size)
        loss = _loss_for(loss, out_shape)
        batch = _tiny_batch(input_shape, out_shape, loss, batch_size, seed)
    else:
        _check_batch(batch, input_shape, f"assert_trains({name})")
        out_shape = _output_shape(model, state.params, state.batch_stats, input_shape, len(batch["image"]))
        loss = _loss_for(loss, out_shape)
    if len(out_shape) != 2:
        raise AssertionError(f"{name}: output shape {out_shape} for input {(len(batch['image']), *input_shape)}; "
                             "expected logits [batch, outputs]")

    strategy = parallel.DataParallel(devices=jax.devices()[:1])
    traced = _TraceCounter(make_train_step(loss))
    step = strategy.compile_train_step(lambda axis: traced)
    initial = jax.device_get(state)
    state, device_batch = strategy.replicate(state), strategy.put_batch(batch)
    first = _signature(state)
    losses = []
    for i in range(1, steps + 1):
        before = _signature(state)
        state, metrics = step(state, device_batch)
        if traced.count > 1:
            changes = _signature_changes(first, before)
            raise AssertionError(
                f"{name}: the train step compiled again at step {i}: the state it was given differs in "
                "structure, shape or dtype from the first step's:\n  "
                + "\n  ".join(changes or ["(no leaf differs: a static field of the state changed)"]))
        losses.append(float(metrics["loss"]) / float(metrics["count"]))
        if not np.isfinite(losses[-1]):
            trained = jax.device_get(state)
            bad = nonfinite_leaves(trained.params, "params") + nonfinite_leaves(trained.batch_stats, "batch_stats")
            raise AssertionError(f"{name}: loss is {losses[-1]} at step {i} (losses so far {losses})"
                                 + ("; non-finite after it:\n  " + "\n  ".join(_limit(bad)) if bad else ""))

    trained = jax.device_get(state)
    bad = nonfinite_leaves(trained.params, "params") + nonfinite_leaves(trained.batch_stats, "batch_stats")
    if bad:
        raise AssertionError(f"{name}: non-finite values after {steps} steps:\n  " + "\n  ".join(_limit(bad)))
    # The loss after training, with the first step's dropout key: the step at step counter 0.
    probe = state.replace(step=state.step - steps)
    _, metrics = step(probe, device_batch)
    if traced.count > 1:
        raise AssertionError(f"{name}: the train step compiled again for a state that differs only in its step "
                             "counter")
    after = float(metrics["loss"]) / float(metrics["count"])
    if not after < losses[0]:
        raise AssertionError(f"{name}: the loss did not decrease in {steps} steps on one batch: {losses[0]:.6g} "
                             f"before, {after:.6g} after (same batch, same dropout masks; losses per step "
                             f"{[round(x, 6) for x in losses]})")
    if every_param_learns:
        frozen = [p for (p, a), (_, b) in zip(_paths(initial.params), _paths(trained.params)) if np.array_equal(a, b)]
        if frozen:
            raise AssertionError(f"{name}: {len(frozen)} parameter leaves did not change in {steps} steps "
                                 "(not used by the loss, or zero gradient):\n  "
                                 + "\n  ".join(_limit([f"params{p}" for p in frozen])))
    stuck = [p for (p, a), (_, b) in zip(_paths(initial.batch_stats), _paths(trained.batch_stats))
             if np.array_equal(a, b)] if every_stat_updates else []
    if stuck:
        raise AssertionError(f"{name}: BatchNorm statistics did not change in {steps} training steps (a BatchNorm "
                             "that ignores `train`? If it is frozen on purpose, pass every_stat_updates=False):\n  "
                             + "\n  ".join(_limit([f"batch_stats{p}" for p in stuck])))
    _assert_inference_is_pure(model, name, trained, batch["image"])
    return losses


def _assert_inference_is_pure(model, name, state, images):
    """train=False: no dropout, no BatchNorm update, no dependence on the rest of the batch."""
    has_bn = bool(state.batch_stats)

    def infer(variables, x, key):
        return model.apply(variables, x, train=False, rngs={"dropout": key},
                           mutable=["batch_stats"] if has_bn else False)

    counted = _TraceCounter(infer)
    infer = jax.jit(counted)
    variables = _variables(state.params, state.batch_stats)
    x = jnp.asarray(images)
    out1, out2 = infer(variables, x, jax.random.PRNGKey(1)), infer(variables, x, jax.random.PRNGKey(2))
    (y1, stats), (y2, _) = (out1, out2) if has_bn else ((out1, None), (out2, None))
    chex.assert_shape(y1, (x.shape[0], None), custom_message=f"{name}: inference output")
    if not np.array_equal(np.asarray(y1), np.asarray(y2)):
        diff = float(np.max(np.abs(np.asarray(y1) - np.asarray(y2))))
        raise AssertionError(f"{name}: inference (train=False) depends on the dropout rng: outputs differ by up "
                             f"to {diff:.3g} between two keys (a Dropout that ignores `train`?)")
    if has_bn:
        changed = tree_differences("batch_stats", state.batch_stats, stats["batch_stats"], 0.0, 0.0)
        if changed:
            raise AssertionError(f"{name}: inference (train=False) changed BatchNorm statistics (a BatchNorm "
                                 "that ignores `train`?):\n  " + "\n  ".join(_limit(changed)))
    half = x.shape[0] // 2
    if half:
        other = x.at[half:2 * half].set(x[:half][::-1])
        y3 = infer(variables, other, jax.random.PRNGKey(1))
        y3 = y3[0] if has_bn else y3
        lines = tree_differences("output", np.asarray(y1[:half]), np.asarray(y3[:half]), 1e-5, 1e-4)
        if lines:
            raise AssertionError(f"{name}: in inference (train=False) an example's output depends on the other "
                                 "examples of its batch (BatchNorm using batch statistics?):\n  "
                                 + "\n  ".join(lines))
    if counted.count != 1:
        raise AssertionError(f"{name}: inference compiled {counted.count} times for one input shape")


# -- assert_same_on_devices -------------------------------------------------------------------------
def _recording_sgd(learning_rate):
    """SGD that keeps the last gradient it applied in its state: exact grads to compare."""

    def init(params):
        return {"grads": jax.tree.map(jnp.zeros_like, params)}

    def update(updates, state, params=None):
        del state, params
        return updates, {"grads": updates}

    return optax.chain(optax.GradientTransformation(init, update), optax.sgd(learning_rate))


def _make_strategy(strategy, devices):
    if isinstance(strategy, str):
        if strategy not in parallel.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(parallel.STRATEGIES)}")
        return parallel.STRATEGIES[strategy](devices=devices)
    return strategy


def _uses_dropout(model, state, images) -> bool:
    has_bn = bool(state.batch_stats)

    def run(key):
        out = model.apply(_variables(state.params, state.batch_stats), images, train=True, rngs={"dropout": key},
                          mutable=["batch_stats"] if has_bn else False)
        return out[0] if has_bn else out

    run = jax.jit(run)
    return not np.array_equal(np.asarray(run(jax.random.PRNGKey(1))), np.asarray(run(jax.random.PRNGKey(2))))


def _run_steps(strategy, model, state, loss, batch, steps):
    # The strategy may clone the model (pmap: `bn_axis_name`); the params do not change.
    state = strategy.replicate(state.replace(apply_fn=strategy.prepare_model(model).apply))
    step = strategy.compile_train_step(lambda axis: make_train_step(loss, axis_name=axis))
    device_batch = strategy.put_batch(batch)
    losses, grads = [], None
    for i in range(steps):
        state, metrics = step(state, device_batch)
        losses.append(float(metrics["loss"]) / float(metrics["count"]))
        if i == 0:
            grads = jax.device_get(state.opt_state[0]["grads"])
    return {"loss": np.asarray(losses), "grads": grads, "params": jax.device_get(state.params),
            "batch_stats": jax.device_get(state.batch_stats)}


def assert_same_on_devices(model, input_shape, n: int = 8, strategy="jit", loss=None, steps: int = 2, *,
                           batch: dict | None = None, batch_size: int | None = None, atol: float = 1e-5,
                           rtol: float = 1e-4, learning_rate: float = 0.01, seed: int = 0) -> dict:
    """`steps` SGD steps on `n` devices give what they give on one device.

    Compared: the loss of every step, the gradients of the first step, the params and the
    BatchNorm statistics after the last, each within `atol + rtol * |one-device value|`. The
    process needs at least `n` devices (`use_fake_devices(n)` before JAX starts, or the
    `fake_devices` fixture). Returns the largest absolute difference per quantity.

    strategy: "jit" (sharded jit over the global batch: dropout masks and BatchNorm statistics
    are the global batch's, so any model must match), "pmap" (per-device steps with pmean-ed
    gradients; BatchNorm must be synchronized through the model's `bn_axis_name`, or be an
    nnx.BatchNorm in an NNX model, and dropout must be off, since each device draws its own
    masks), or a strategy object of
    `jaxcnn.parallel` (its own devices). batch: `{"image", "label"}`, by default `batch_size`
    (2 per device) synthetic examples.
    """
    model = _as_model(model)
    name = _label(model)
    if isinstance(strategy, str):
        devices = require_devices(n, f"assert_same_on_devices(n={n})")
        many = _make_strategy(strategy, devices)
    else:
        many, devices = strategy, list(strategy.mesh.devices.flat)
        n = len(devices)
    one = parallel.DataParallel(devices=devices[:1])
    state = create_train_state(model, input_shape, _recording_sgd(learning_rate), seed=seed)
    if batch is None:
        size = 2 * n if batch_size is None else batch_size
        out_shape = _output_shape(model, state.params, state.batch_stats, input_shape, size)
        loss = _loss_for(loss, out_shape)
        batch = _tiny_batch(input_shape, out_shape, loss, size, seed)
    else:
        _check_batch(batch, input_shape, f"assert_same_on_devices({name})")
        loss = _loss_for(loss, _output_shape(model, state.params, state.batch_stats, input_shape, len(batch["image"])))
    many.check_batch_size(len(batch["image"]))
    if isinstance(many, parallel.PmapParallel) and _uses_dropout(model, state, jnp.asarray(batch["image"])):
        raise ValueError(f"{name} uses dropout in training: under the pmap strategy every device draws its own "
                         "masks, so its steps cannot equal one device's. Check it with strategy='jit', or "
                         "with its dropout rates set to 0 under 'pmap'.")

    host_state = jax.device_get(state)  # one initial state for both runs (each donates its copy)
    ref = _run_steps(one, model, host_state, loss, batch, steps)
    got = _run_steps(many, model, host_state, loss, batch, steps)
    lines = []
    for i, (a, b) in enumerate(zip(ref["loss"], got["loss"]), start=1):
        if not abs(a - b) <= atol + rtol * abs(a):  # also catches NaN
            lines.append(f"loss at step {i}: {a:.8g} on 1 device, {b:.8g} on {n} (|diff| {abs(a - b):.3g})")
    stats = tree_differences("batch_stats", ref["batch_stats"], got["batch_stats"], atol, rtol)
    lines += stats
    lines += tree_differences("grads", ref["grads"], got["grads"], atol, rtol)
    lines += tree_differences("params", ref["params"], got["params"], atol, rtol)
    if lines:
        hint = ""
        if stats and isinstance(many, parallel.PmapParallel):
            hint = ("\n(BatchNorm statistics differ under pmap: are they synchronized? The model needs a "
                    "`bn_axis_name` field passed to every BatchNorm's `axis_name`.)")
        if isinstance(many, parallel.PmapParallel) and isinstance(model, NnxModel) and ref["batch_stats"]:
            hint = ("\n(NNX model under pmap: jaxcnn synchronizes nnx.BatchNorm layers over the devices; "
                    "statistics kept by other layers are each device's own. Use nnx.BatchNorm.)")
        raise AssertionError(
            f"{name} on {n} devices ({getattr(many, 'name', type(many).__name__)} strategy) differs from 1 device "
            f"beyond atol={atol:g}, rtol={rtol:g} ({steps} SGD steps, batch {len(batch['image'])}):\n  "
            + "\n  ".join(_limit(lines)) + hint)

    def largest(key):
        a, b = jax.tree.leaves(ref[key]), jax.tree.leaves(got[key])
        return max((float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b) if np.size(x)),
                   default=0.0)

    return {"loss": float(np.max(np.abs(ref["loss"] - got["loss"]))), "grads": largest("grads"),
            "params": largest("params"), "batch_stats": largest("batch_stats")}
