"""Metrics kept as masked, weighted sums: exact across steps, devices and hosts.

A metric is a name, a callable `(logits, labels) -> per-example values` (its weighted mean is
reported under the function's name), or a `Metric`. Inside the step each metric returns sums
(`sums`), which the loop adds over steps, devices and hosts; `result` turns the totals into
numbers on the host. Weights are `mask * sample_weight` (0 on padding), so a padded evaluation
batch or a weighted example counts exactly as Keras counts it: a metric is
`sum(value * w) / sum(w)`.

    metrics=["accuracy", "top_k_accuracy", "auc", "per_class_accuracy", my_fn]

Names: `accuracy` (binary, sparse or one-hot, chosen from the shapes, as Keras does for the
string "accuracy"), `binary_accuracy`, `sparse_categorical_accuracy`, `categorical_accuracy`,
`top_k_accuracy` (k=5; also `top_3_accuracy`, ...), `auc` (Keras' ROC AUC with 200 thresholds,
from summed confusion counts, so it is exact across devices), `per_class_accuracy` (recall per
class, logged as `per_class_accuracy/<class>`).
"""

from __future__ import annotations

import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def _binary_logits(logits):
    return logits.reshape(logits.shape[0]) if logits.ndim == 2 and logits.shape[-1] == 1 else logits


def _class_labels(logits, labels):
    """Integer class labels from integer or one-hot labels."""
    return labels.argmax(-1) if labels.ndim == logits.ndim and labels.ndim > 1 else labels.reshape(labels.shape[0])


def binary_accuracy(logits, labels):
    """1.0 where sigmoid(logit) > 0.5 matches label > 0.5 (mean over outputs per example)."""
    hits = (_binary_logits(logits) > 0) == (labels.reshape(_binary_logits(logits).shape) > 0.5)
    hits = hits.astype(jnp.float32)
    return hits if hits.ndim == 1 else hits.mean(axis=tuple(range(1, hits.ndim)))


def sparse_categorical_accuracy(logits, labels):
    return (logits.argmax(-1) == labels.reshape(labels.shape[0])).astype(jnp.float32)


def categorical_accuracy(logits, labels):
    return (logits.argmax(-1) == labels.argmax(-1)).astype(jnp.float32)


def accuracy(logits, labels):
    """Keras' "accuracy": binary for one output, one-hot for 2-D labels, else sparse."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return binary_accuracy(logits, labels)
    return (logits.argmax(-1) == _class_labels(logits, labels)).astype(jnp.float32)


def top_k_accuracy(logits, labels, k: int = 5):
    """1.0 where the true class is among the k largest logits (ties count for the true class)."""
    labels = _class_labels(logits, labels)
    true = jnp.take_along_axis(logits, labels[:, None].astype(jnp.int32), axis=-1)
    return (jnp.sum(logits > true, axis=-1) < k).astype(jnp.float32)


class Metric:
    """A metric as sums. Subclasses define `sums` (in the step) and `result` (on the host)."""

    name: str

    def sums(self, logits, labels, weight) -> dict:
        """Per-batch sums (jnp arrays of fixed shape); `weight` is mask * sample weight, [B]."""
        raise NotImplementedError

    def result(self, sums: dict) -> dict:
        """`{log name: float}` from the totals of this metric's sums (numpy)."""
        raise NotImplementedError


class MeanMetric(Metric):
    """The weighted mean of a per-example function `fn(logits, labels) -> [B]`."""

    def __init__(self, fn: Callable, name: str | None = None):
        self.fn, self.name = fn, name or getattr(fn, "__name__", "metric")

    def sums(self, logits, labels, weight):
        values = jnp.asarray(self.fn(logits, labels), jnp.float32).reshape(weight.shape[0], -1).mean(-1)
        return {"total": jnp.sum(values * weight), "weight": jnp.sum(weight)}

    def result(self, sums):
        return {self.name: float(sums["total"]) / max(float(sums["weight"]), 1e-12)}


class PerClassAccuracy(Metric):
    """Accuracy within each true class (recall per class), logged as `name/<class index>`."""

    def __init__(self, name: str = "per_class_accuracy"):
        self.name = name

    def sums(self, logits, labels, weight):
        classes = logits.shape[-1]
        true = jax.nn.one_hot(_class_labels(logits, labels), classes) * weight[:, None]
        hit = (logits.argmax(-1) == _class_labels(logits, labels)).astype(jnp.float32)
        return {"hits": jnp.sum(true * hit[:, None], axis=0), "total": jnp.sum(true, axis=0)}

    def result(self, sums):
        hits, total = np.asarray(sums["hits"]), np.asarray(sums["total"])
        return {f"{self.name}/{c}": float(hits[c] / total[c]) if total[c] else float("nan")
                for c in range(len(total))}


class AUC(Metric):
    """Keras' `AUC()` (ROC, 200 thresholds, interpolation) from summed confusion counts.

    One output: sigmoid scores against 0/1 labels. Several outputs: softmax scores against
    one-hot labels, every (example, class) pair as one binary decision, as Keras flattens them.
    """

    def __init__(self, name: str = "auc", num_thresholds: int = 200):
        self.name, self.num_thresholds = name, num_thresholds
        eps = 1e-7
        inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
        self.thresholds = np.asarray([-eps, *inner, 1.0 + eps], np.float32)

    def sums(self, logits, labels, weight):
        if logits.ndim == 1 or logits.shape[-1] == 1:
            scores = jax.nn.sigmoid(_binary_logits(logits))[:, None]
            truth = labels.reshape(scores.shape).astype(jnp.float32)
        else:
            scores = jax.nn.softmax(logits, axis=-1)
            truth = (labels if labels.ndim == 2 else jax.nn.one_hot(labels, logits.shape[-1])).astype(jnp.float32)
        above = (scores[..., None] > self.thresholds).astype(jnp.float32)  # [B, C, T]
        w = weight[:, None, None]
        pos, neg = truth[..., None] * w, (1.0 - truth[..., None]) * w
        return {"tp": jnp.sum(above * pos, axis=(0, 1)), "fp": jnp.sum(above * neg, axis=(0, 1)),
                "fn": jnp.sum((1 - above) * pos, axis=(0, 1)), "tn": jnp.sum((1 - above) * neg, axis=(0, 1))}

    def result(self, sums):
        tp, fp, fn, tn = (np.asarray(sums[k], np.float64) for k in ("tp", "fp", "fn", "tn"))
        with np.errstate(divide="ignore", invalid="ignore"):
            recall = np.nan_to_num(tp / (tp + fn))
            fpr = np.nan_to_num(fp / (fp + tn))
        heights = (recall[:-1] + recall[1:]) / 2.0
        return {self.name: float(np.sum((fpr[:-1] - fpr[1:]) * heights))}


NAMED = {
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "top_k_accuracy": top_k_accuracy,
    "sparse_top_k_categorical_accuracy": top_k_accuracy,
}


def get_metric(metric) -> Metric:
    """A Metric from a name, a per-example callable or a Metric."""
    if isinstance(metric, Metric):
        return metric
    if callable(metric):
        return MeanMetric(metric)
    if not isinstance(metric, str):
        raise TypeError(f"a metric is a name, a callable (logits, labels) -> per-example values, or a "
                        f"Metric; got {metric!r}")
    if metric == "auc":
        return AUC()
    if metric == "per_class_accuracy":
        return PerClassAccuracy()
    m = re.fullmatch(r"top_(\d+)_accuracy", metric)
    if m:
        k = int(m.group(1))
        return MeanMetric(lambda logits, labels: top_k_accuracy(logits, labels, k), metric)
    if metric in NAMED:
        name = "accuracy" if metric == "acc" else metric
        return MeanMetric(NAMED[metric], name)
    raise KeyError(f"unknown metric {metric!r}; known: {', '.join(NAMED)}, auc, per_class_accuracy, "
                   "top_<k>_accuracy, or a callable (logits, labels) -> per-example values")


class MetricSet:
    """The loss plus the metrics of a Trainer, as sums: `sums(...)` in the step, `results` on the host.

    Sums are a flat dict: `loss` (sum of weighted per-example losses), `count` (real examples)
    and `<metric>/<key>` per metric. The reported loss is `loss / count` (Keras' mean over the
    batch of weighted losses); metrics are weighted means.
    """

    def __init__(self, metrics=("accuracy",)):
        self.metrics = [get_metric(m) for m in (metrics or ())]
        names = [m.name for m in self.metrics]
        dup = {n for n in names if names.count(n) > 1} | ({"loss", "count"} & set(names))
        if dup:
            raise ValueError(f"metric names must be unique and not 'loss'/'count': {sorted(dup)}")

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def sums(self, per_example_loss, logits, labels, mask, weight=None) -> dict:
        w = mask if weight is None else mask * weight.astype(jnp.float32)
        out = {"loss": jnp.sum(per_example_loss * w), "count": jnp.sum(mask)}
        for m in self.metrics:
            out.update({f"{m.name}/{k}": v for k, v in m.sums(logits, labels, w).items()})
        return out

    def results(self, sums: dict) -> dict:
        out = {"loss": float(sums["loss"]) / max(float(sums["count"]), 1.0)}
        if "regularization_loss" in sums:  # a model's sown penalties (already inside `loss`)
            out["regularization_loss"] = float(sums["regularization_loss"]) / max(float(sums["count"]), 1.0)
        for m in self.metrics:
            prefix = m.name + "/"
            out.update(m.result({k[len(prefix):]: v for k, v in sums.items() if k.startswith(prefix)}))
        return out
