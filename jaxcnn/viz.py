"""Figures people would rather look at than read: curves, sample grids, conv filters, confusion, errors."""

from __future__ import annotations

import os

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _plt().close(fig)


def plot_history(history: dict, path: str, title: str = "") -> None:
    """Accuracy and loss per epoch, train and (when present) validation, side by side."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("accuracy", "loss")):
        epochs = np.arange(1, len(history.get(key, [])) + 1)
        ax.plot(epochs, history.get(key, []), "o-", label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, path)


def plot_samples(images, labels, class_names, path: str, rows: int = 4, cols: int = 8) -> None:
    """A grid of images titled with their class name and index (tutorial D)."""
    plt = _plt()
    n = min(rows * cols, len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.4, rows * 1.6))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < n:
            img = np.asarray(images[i])
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_title(f"{class_names[int(labels[i])]} ({int(labels[i])})", fontsize=7)
    _save(fig, path)


def plot_filters(kernel, path: str, count: int = 6) -> None:
    """The first `count` filters of a conv kernel (HWIO), min-max normalized, gray (tutorial C)."""
    plt = _plt()
    k = np.asarray(kernel, np.float32)
    k = (k - k.min()) / max(float(k.max() - k.min()), 1e-12)
    count = min(count, k.shape[-1])
    chans = k.shape[2]
    fig, axes = plt.subplots(count, chans, figsize=(1.5 * chans, 1.5 * count), squeeze=False)
    for f in range(count):
        for c in range(chans):
            ax = axes[f][c]
            ax.imshow(k[:, :, c, f], cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"filter {f}", fontsize=7)
    _save(fig, path)


def plot_confusion(confusion, class_names, path: str, title: str = "") -> None:
    """The confusion matrix as a heat map: true classes down, predicted across, counts in cells."""
    plt = _plt()
    cm = np.asarray(confusion)
    k = len(class_names)
    size = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), [str(c) for c in class_names], rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_yticks(range(k), [str(c) for c in class_names])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    top = cm.max() if cm.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                    color="white" if top and cm[i, j] > top / 2 else "black")
    ax.set_title(f"{title}: confusion matrix" if title else "confusion matrix")
    _save(fig, path)


def plot_errors(images, true_names, predicted_names, confidences, path: str, title: str = "",
                cols: int = 8) -> None:
    """A grid of misclassified images titled `true -> predicted (confidence)`."""
    plt = _plt()
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.8), squeeze=False)
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < n:
            img = np.asarray(images[i])
            img = img[0] if img.ndim == 4 else img  # a clip: its first frame
            if img.ndim == 3 and img.shape[-1] in (1, 3):
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_title(f"{true_names[i]} -> {predicted_names[i]}\n({confidences[i]:.2f})", fontsize=7)
    if n == 0:
        axes[0][0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.suptitle(f"{title}: most confident mistakes (true -> predicted)" if title
                 else "most confident mistakes (true -> predicted)", fontsize=9)
    _save(fig, path)
