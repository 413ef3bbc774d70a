"""Tiny in-memory datasets for tests: a batch dict the train step takes, made in milliseconds.

"mnist" is real: the first handwritten digits of MNIST's test split, which ships inside the
package. The other kinds are synthetic with a learnable signal (each class has its own random
template, blurred by noise), so a few optimizer steps lower the loss.
"""

from __future__ import annotations

import os

import numpy as np

from jaxcnn.data.idx import read_idx

# kind -> (example shape, number of classes)
KINDS = {
    "mnist": ((28, 28, 1), 10),
    "images": ((32, 32, 3), 10),
    "binary": ((32, 32, 3), 2),
    "video": ((4, 12, 12, 1), 3),
}
_MNIST = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_datasets", "mnist")


def tiny_dataset(kind: str = "images", n: int = 32, *, shape=None, num_classes: int | None = None,
                 seed: int = 0) -> dict:
    """`{"image": float32 [n, *shape] in [0, 1], "label": int32 [n]}` of the given kind.

    kind: "mnist" (real digits, 28x28x1, 10 classes), "images" (32x32x3, 10 classes),
    "binary" (32x32x3, labels 0/1 for binary cross-entropy) or "video" (4 frames of 12x12x1,
    3 classes). `shape` and `num_classes` override the synthetic kinds' defaults, so any
    model's input can be fed. Labels cycle through the classes, so every class is present.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown tiny dataset kind {kind!r}; known: {', '.join(KINDS)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    default_shape, default_classes = KINDS[kind]
    if kind == "mnist":
        if shape not in (None, default_shape) or num_classes not in (None, default_classes):
            raise ValueError("kind 'mnist' is real MNIST: 28x28x1, 10 classes (use kind='images' "
                             "with shape=/num_classes= for other sizes)")
        return _mnist(n)
    shape = tuple(default_shape if shape is None else shape)
    classes = default_classes if num_classes is None else num_classes
    if classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {classes}")
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0.0, 1.0, (classes, *shape))
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    noise = rng.uniform(0.0, 1.0, (n, *shape))
    images = 0.6 * templates[labels] + 0.4 * noise
    return {"image": images.astype(np.float32), "label": labels.astype(np.int32)}


def _mnist(n: int) -> dict:

    images = read_idx(os.path.join(_MNIST, "t10k-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(_MNIST, "t10k-labels-idx1-ubyte.gz"))
    if n > len(images):
        raise ValueError(f"kind 'mnist' has {len(images)} examples, asked for {n}")
    return {"image": (images[:n, :, :, None] / 255.0).astype(np.float32),
            "label": labels[:n].astype(np.int32)}
