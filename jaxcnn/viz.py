"""Figures people would rather look at than read: training curves, sample grids, conv filters."""

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
