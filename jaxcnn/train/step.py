"""The pure train and eval steps. One body serves every device strategy (see jaxcnn.parallel).

A batch is `{"image", "label"}` plus optional `"mask"` (0 on padding) and `"weight"` (sample
weights). Metrics come back as sums over real examples (`jaxcnn.train.metrics.MetricSet`:
`loss`, `count`, `<metric>/<key>`), so they add exactly across steps, devices and hosts; means
are taken on the host at log time.
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp

from jaxcnn.train.losses import get_loss
from jaxcnn.train.metrics import MetricSet
from jaxcnn.train.precision import cast_floats
from jaxcnn.train.state import TrainState


def _variables(state: TrainState, params):
    variables = {"params": params}
    if state.batch_stats:
        variables["batch_stats"] = state.batch_stats
    return variables


def _metric_set(metrics) -> MetricSet:
    return metrics if isinstance(metrics, MetricSet) else MetricSet(("accuracy",) if metrics is None else metrics)


def check_batch(batch, what: str = "train_step") -> None:
    """Shape checks on a step's batch, at trace time (free at run time).

    A batch without its keys, images without a batch axis, or labels, mask or weights of another
    length than the images fail here with the argument's name, not deep inside XLA.
    """
    if not hasattr(batch, "keys") or "image" not in batch or "label" not in batch:
        got = sorted(batch) if hasattr(batch, "keys") else type(batch).__name__
        raise KeyError(f"{what}: batch needs 'image' and 'label' (optional 'mask', 'weight'), got {got}")
    check_images(batch["image"], f"{what}: batch['image']")
    for key in ("label", "mask", "weight"):
        if batch.get(key) is not None:
            chex.assert_equal_shape_prefix(
                [batch["image"], batch[key]], 1,
                custom_message=f"{what}: batch[{key!r}] of shape {tuple(batch[key].shape)} does not have "
                               f"one entry per image of batch['image'] {tuple(batch['image'].shape)}")


def check_images(images, what: str) -> None:
    """Images need a batch axis: [batch, ...] (e.g. [B, H, W, C]); checked at trace time."""
    chex.assert_rank(images, set(range(2, 9)),
                     custom_message=f"{what} of shape {tuple(images.shape)} has no batch axis; expected "
                                    "[batch, ...] (e.g. [batch, height, width, channels])")


def _mask_and_weight(batch, n):
    mask = batch.get("mask")
    mask = jnp.ones((n,), jnp.float32) if mask is None else mask.astype(jnp.float32)
    weight = batch.get("weight")
    return mask, (mask if weight is None else mask * weight.astype(jnp.float32))


def _keep_if_finite(new_state: TrainState, state: TrainState, metrics: dict, grads):
    """A step whose loss or gradients are NaN/inf changes nothing but the step count.

    Its loss sum is reported as NaN, so the loop stops at the next check with the state of the
    last finite step (instead of NaN parameters). One `lax.cond` picks the old or new leaves:
    a `jnp.where` per leaf compiled several times slower (ResNet50 with adam: 141 s against 24 s
    on CPU). Values are bitwise those of the plain update when finite.
    """
    finite = jnp.isfinite(metrics["loss"])
    for g in jax.tree.leaves(grads):
        finite &= jnp.all(jnp.isfinite(g))
    new = (new_state.params, new_state.opt_state, new_state.batch_stats)
    old = (state.params, state.opt_state, state.batch_stats)
    # cond's branches must agree in dtype; the old leaves take the new ones' (as `where` would).
    params, opt_state, batch_stats = jax.lax.cond(
        finite, lambda: new, lambda: jax.tree.map(lambda n, o: o.astype(n.dtype), new, old))
    new_state = new_state.replace(params=params, opt_state=opt_state, batch_stats=batch_stats)
    return new_state, {**metrics, "loss": jnp.where(finite, metrics["loss"], jnp.nan)}


def regularization_loss(updates) -> jax.Array:
    """The sum of the penalties a model sowed into its "losses" collection (0 when none), as
    Keras adds `sum(model.losses)` to the loss."""
    leaves = jax.tree.leaves(updates.get("losses", {}))
    return sum((jnp.sum(x).astype(jnp.float32) for x in leaves), jnp.zeros((), jnp.float32))


def dropout_key(state: TrainState, axis_name: str | None = None):
    """The dropout key of this step: `fold_in(rng, step)`, then `fold_in(device index)` per device.

    Without `axis_name` (one device, or sharded jit over the global batch) masks depend only on
    the seed and the step, not on the device count. Under `axis_name` (pmap strategy) each
    device draws its own masks, reproducibly for a given seed and device count.
    """
    key = jax.random.fold_in(state.rng, state.step)
    if axis_name is not None:
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
    return key


def make_train_step(loss="sparse_categorical_crossentropy", axis_name: str | None = None,
                    compute_dtype=None, metrics=None) -> Callable:
    """`train_step(state, batch) -> (state, metric_sums)`, un-jitted.

    `loss`: a Keras name or a callable `(logits, labels) -> per-example loss`; the step minimizes
    `sum(loss * mask * weight) / sum(mask)`. `metrics`: names, callables or Metrics (default
    `["accuracy"]`), see jaxcnn.train.metrics. `axis_name`: when run per device
    (pmap/shard_map), gradients, BatchNorm statistics and metrics are combined over that axis.
    `compute_dtype` (e.g. jnp.bfloat16) casts the images and (inside the loss) the params for
    mixed precision, so every layer computes in it; the stored params, their gradients, the
    optimizer and the loss stay float32.
    """
    loss_fn = get_loss(loss)
    metric_set = _metric_set(metrics)

    def train_step(state: TrainState, batch):
        check_batch(batch, "train_step")
        images, labels = batch["image"], batch["label"]
        mask, weight = _mask_and_weight(batch, labels.shape[0])
        if compute_dtype is not None:
            images = images.astype(compute_dtype)
        dropout_rng = dropout_key(state, axis_name)
        has_bn = bool(state.batch_stats)

        def compute_loss(params):
            if compute_dtype is not None:  # mixed precision: layers compute in compute_dtype
                params = cast_floats(params, compute_dtype)
            # "losses": penalties a model sows (an imported Keras model's regularizers).
            logits, updates = state.apply_fn(_variables(state, params), images, train=True,
                                             rngs={"dropout": dropout_rng},
                                             mutable=["batch_stats", "losses"] if has_bn else ["losses"])
            logits = logits.astype(jnp.float32)
            per_example = loss_fn(logits, labels)
            denom = jnp.maximum(jnp.sum(mask), 1.0)
            reg = regularization_loss(updates)
            return jnp.sum(per_example * weight) / denom + reg, (logits, per_example, updates, reg)

        grads, (logits, per_example, updates, reg) = jax.grad(compute_loss, has_aux=True)(state.params)
        metrics = metric_set.sums(per_example, logits, labels, mask, batch.get("weight"))
        if "losses" in updates:  # Keras reports its loss with the penalties, and here also apart
            metrics["regularization_loss"] = reg * metrics["count"]
            metrics["loss"] = metrics["loss"] + metrics["regularization_loss"]
        new_stats = updates.get("batch_stats", state.batch_stats)
        if axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name)
            new_stats = jax.lax.pmean(new_stats, axis_name)
            metrics = jax.lax.psum(metrics, axis_name)
        new_state = state.apply_gradients(grads=grads).replace(batch_stats=new_stats)
        return _keep_if_finite(new_state, state, metrics, grads)

    return train_step


def make_eval_step(loss="sparse_categorical_crossentropy", axis_name: str | None = None,
                   compute_dtype=None, metrics=None) -> Callable:
    """`eval_step(state, batch) -> metric_sums` in inference mode (no dropout, running BN stats)."""
    loss_fn = get_loss(loss)
    metric_set = _metric_set(metrics)

    def eval_step(state: TrainState, batch):
        check_batch(batch, "eval_step")
        logits = predict_logits(state, batch["image"], compute_dtype)
        mask, _ = _mask_and_weight(batch, logits.shape[0])
        metrics = metric_set.sums(loss_fn(logits, batch["label"]), logits, batch["label"], mask,
                                  batch.get("weight"))
        if axis_name is not None:
            metrics = jax.lax.psum(metrics, axis_name)
        return metrics

    return eval_step


def predict_logits(state: TrainState, images, compute_dtype=None):
    check_images(images, "predict: images")
    params = state.params
    if compute_dtype is not None:
        images, params = images.astype(compute_dtype), cast_floats(params, compute_dtype)
    return state.apply_fn(_variables(state, params), images, train=False).astype(jnp.float32)
