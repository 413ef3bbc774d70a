"""Evaluation report: where a classifier errs.

From the class probabilities of every test example (computed once, padding and device count
already undone by `Trainer.predict`), on the host in exact integer counts:

- the confusion matrix (rows: true class, columns: predicted class),
- per class: precision, recall, one-vs-rest accuracy ((TP + TN) / N) and support,
- confusion.png (class names on both axes) and errors.png (the most confident mistakes, with
  true and predicted labels).

`write_report` returns the metrics that go into `metrics.json`.
"""

from __future__ import annotations

import numpy as np

from jaxcnn import viz
from jaxcnn.data.records import is_source
from jaxcnn.run import RunFolder


def class_probabilities(outputs, loss: str) -> np.ndarray:
    """[n, classes] probabilities from a model's outputs (a binary model's one sigmoid -> 2 columns)."""
    outputs = np.asarray(outputs, np.float64 if np.asarray(outputs).dtype == np.float64 else np.float32)
    if loss == "binary_crossentropy" or outputs.ndim == 1 or outputs.shape[-1] == 1:
        p = outputs.reshape(len(outputs))
        return np.stack([1.0 - p, p], axis=1)
    return outputs


def confusion_matrix(labels, predicted, num_classes: int) -> np.ndarray:
    """Counts [true, predicted] as int64."""
    labels, predicted = np.asarray(labels, np.int64), np.asarray(predicted, np.int64)
    if labels.shape != predicted.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predicted.shape[0]} predictions")
    return np.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def per_class_metrics(confusion: np.ndarray, class_names) -> dict:
    """{name: {precision, recall, accuracy, support}} from a confusion matrix (0 where undefined)."""
    cm = np.asarray(confusion, np.int64)
    total, tp = int(cm.sum()), np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    out = {}
    for k, name in enumerate(class_names):
        tn = total - predicted[k] - actual[k] + tp[k]
        out[str(name)] = {
            "precision": float(tp[k] / predicted[k]) if predicted[k] else 0.0,
            "recall": float(tp[k] / actual[k]) if actual[k] else 0.0,
            "accuracy": float((tp[k] + tn) / total) if total else 0.0,
            "support": int(actual[k]),
        }
    return out


def most_confident_errors(probs, labels, count: int = 16) -> np.ndarray:
    """Indices of wrong predictions, most confident first (ties: lower index first)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    predicted = probs.argmax(-1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def evaluation_metrics(probs, labels, class_names) -> dict:
    """The report's numbers: accuracy, confusion matrix, per-class metrics (JSON-ready)."""
    probs, labels = np.asarray(probs), np.asarray(labels)
    cm = confusion_matrix(labels, probs.argmax(-1), len(class_names))
    return {
        "report_examples": int(cm.sum()),
        "report_accuracy": float(np.trace(cm) / max(int(cm.sum()), 1)),
        "class_names": [str(c) for c in class_names],
        "confusion_matrix": cm.tolist(),
        "per_class": per_class_metrics(cm, class_names),
    }


def _rows(images, idx):
    """Images `idx` of an array or of a prepared split (read from disk)."""
    return images[np.asarray(idx, np.int64)] if is_source(images) else np.asarray(images)[idx]


def write_report(workdir: str, probs, labels, images, class_names, title: str = "", write: bool = True,
                 errors: int = 16) -> dict:
    """The metrics (see `evaluation_metrics`); with `write`, confusion.png and errors.png in `workdir`."""
    metrics = evaluation_metrics(probs, labels, class_names)
    if write:
        folder = RunFolder(workdir)
        viz.plot_confusion(np.asarray(metrics["confusion_matrix"]), class_names, folder.confusion_png, title=title)
        idx = most_confident_errors(probs, labels, errors)
        probs = np.asarray(probs)
        viz.plot_errors(_rows(images, idx), [class_names[int(labels[i])] for i in idx],
                        [class_names[int(probs[i].argmax())] for i in idx],
                        [float(probs[i].max()) for i in idx], folder.errors_png, title=title)
    return metrics
