"""A PNG grid of augmented copies, to see what a recipe does (`jaxcnn augment-preview`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jaxcnn.data.augment.config import AugmentConfig, parse_augment
from jaxcnn.data.augment.tf_ops import make_tf_augment
from jaxcnn.data.tfutil import import_tf


def save_augment_preview(images, config: AugmentConfig | str, path: str, *, n_augmented: int = 7,
                         seed: int = 0, titles: Sequence[str] | None = None, dpi: int = 80) -> str:
    """A PNG grid: one row per input image, the original then `n_augmented` augmented copies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tf = import_tf()
    cfg = parse_augment(config) if isinstance(config, str) else config
    fn = make_tf_augment(cfg)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    rows = []
    for k in range(n_augmented):
        out = fn(tf.constant(x), tf.constant([seed, k], tf.int64)) if fn else tf.constant(x)
        rows.append(np.clip(out.numpy(), 0.0, 1.0))
    n = len(x)
    fig, axes = plt.subplots(n, n_augmented + 1, figsize=(1.3 * (n_augmented + 1), 1.3 * n), squeeze=False)
    for i in range(n):
        for j in range(n_augmented + 1):
            img = x[i] if j == 0 else rows[j - 1][i]
            ax = axes[i, j]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"aug {j}", fontsize=8)
            if j == 0 and titles is not None:
                ax.set_ylabel(titles[i], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
