"""Helpers of the Keras layer and zoo tests: real images, randomized Keras weights, the comparison.

Weights: Keras' own initializers for kernels (`weights=None`), then BatchNorm gamma/beta and
moving statistics, LayerNormalization/LayerScale factors and adapted Normalization statistics
drawn at random, so that every array the import copies is checked (identity statistics would hide
a swapped mean and variance).
"""

from __future__ import annotations

import os
import tarfile

import numpy as np


def cifar_images(data_dir: str, n: int = 2, size: int = 32) -> np.ndarray:
    """The first `n` CIFAR-10 test JPEGs as float32 0..255, resized (bilinear) to `size`."""
    from PIL import Image

    images = []
    with tarfile.open(os.path.join(data_dir, "cifar10-jpeg", "cifar10-jpeg.tar.gz"), "r|gz") as tar:
        for member in tar:
            if member.name.endswith(".jpg"):
                img = Image.open(tar.extractfile(member)).convert("RGB")
                if size != img.size[0]:
                    img = img.resize((size, size), Image.BILINEAR)
                images.append(np.asarray(img, np.float32))
                if len(images) == n:
                    break
    return np.stack(images)


def leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):
            yield from leaf_layers(layer)
        elif layer.weights:
            yield layer


def randomize_statistics(model, seed: int = 0, kernels: bool = False):
    """Random BatchNorm/LayerNorm/LayerScale/Normalization arrays (and kernels, with `kernels`)."""
    rng = np.random.default_rng(seed)
    for layer in leaf_layers(model):
        cls = type(layer).__name__
        new = []
        for w, a in zip(layer.weights, layer.get_weights()):
            role = w.path.split("/")[-1] if hasattr(w, "path") else w.name.split("/")[-1].split(":")[0]
            if cls == "BatchNormalization":
                a = {"gamma": rng.uniform(0.5, 1.5, a.shape), "beta": 0.1 * rng.standard_normal(a.shape),
                     "moving_mean": 0.1 * rng.standard_normal(a.shape),
                     "moving_variance": rng.uniform(0.5, 1.5, a.shape)}[role]
            elif cls == "LayerNormalization":
                a = rng.uniform(0.5, 1.5, a.shape) if role == "gamma" else 0.1 * rng.standard_normal(a.shape)
            elif cls == "LayerScale":
                a = rng.uniform(0.05, 0.2, a.shape)
            elif cls == "Normalization" and role in ("mean", "variance"):
                a = rng.uniform(100, 150, a.shape) if role == "mean" else rng.uniform(2000, 4000, a.shape)
            elif kernels and a.ndim >= 2:
                a = rng.standard_normal(a.shape) * np.sqrt(2.0 / np.prod(a.shape[:-1]))
            elif kernels and a.ndim == 1:
                a = 0.1 * rng.standard_normal(a.shape)
            new.append(np.asarray(a, dtype=np.asarray(a).dtype if role == "count" else np.float32))
        set_weights(layer, new)
    return model


def set_weights(layer, arrays):
    """`layer.set_weights`, and Normalization's derived mean/variance refreshed (Keras does that
    only when it adapts or loads a file)."""
    layer.set_weights(arrays)
    if type(layer).__name__ == "Normalization" and hasattr(layer, "finalize_state"):
        layer.finalize_state()


def worst(ours, ref) -> float:
    """max |ours - ref| over the largest |ref|: the comparison of every parity test here."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())
