"""Datasets as numpy arrays: IDX folders (MNIST, Fashion-MNIST), TFDS by name, in-memory arrays.

Registers `mnist`, `fashion_mnist` and `tfds:NAME`. `Dataset`, `load_dataset` and the registry
live in `jaxcnn.data.base` (importable from here too, as before).

Where data lives: an explicit `data_dir`, else `$JAXCNN_DATA_DIR`, else (MNIST only) the copy
bundled with the package, so the quick start runs offline. A directory that is given must hold
the dataset (a DataError names the path otherwise). Nothing is ever downloaded silently.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from jaxcnn.data.base import (  # noqa: F401 - re-exported: users import them from here
    DATA_DIR_ENV,
    Dataset,
    check_arrays,
    check_finite,
    dataset_dir,
    list_datasets,
    list_sources,
    load_dataset,
    register_dataset,
    register_source,
    spread_indices,
)
from jaxcnn.data.errors import DataError
from jaxcnn.data.idx import read_idx

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_idx_dataset(path: str, name: str = "", class_names: Sequence[str] = MNIST_CLASSES) -> Dataset:
    """A folder of the four MNIST-format files `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`."""

    def find(stem):
        for suffix in (".gz", ""):
            p = os.path.join(path, stem + suffix)
            if os.path.exists(p):
                return p
        raise DataError(f"{os.path.join(path, stem)}[.gz]: file not found")

    arrays = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        img_path, lbl_path = find(f"{prefix}-images-idx3-ubyte"), find(f"{prefix}-labels-idx1-ubyte")
        x, y = read_idx(img_path), read_idx(lbl_path)
        if x.ndim != 3:
            raise DataError(f"{img_path}: expected 3 dims (count, rows, cols), got shape {x.shape}")
        if y.ndim != 1:
            raise DataError(f"{lbl_path}: expected 1 dim (count), got shape {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{img_path} holds {len(x)} images but {lbl_path} holds {len(y)} labels")
        y = y.astype(np.int32)
        check_finite(x, img_path)
        check_arrays(x[..., None], y, len(class_names), lbl_path)
        arrays[split] = (x[..., None], y)
    return Dataset(name or os.path.basename(os.path.normpath(path)), *arrays["train"], *arrays["test"],
                   class_names=tuple(class_names))


def from_arrays(x_train, y_train, x_test, y_test, class_names=None, name="arrays") -> Dataset:
    """In-memory numpy arrays as a Dataset (class names default to the label values)."""
    x_train, x_test = np.asarray(x_train), np.asarray(x_test)
    y_train, y_test = np.asarray(y_train).astype(np.int32), np.asarray(y_test).astype(np.int32)
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    if class_names is None:
        class_names = [str(i) for i in range(int(max(y_train.max(), y_test.max())) + 1)]
    check_arrays(x_train, y_train, len(class_names), f"{name} train")
    check_arrays(x_test, y_test, len(class_names), f"{name} test")
    return Dataset(name, x_train, y_train, x_test, y_test, tuple(class_names))


@register_source("tfds", "NAME")
def load_tfds(name: str, data_dir: str | None = None, download: bool = False,
              image_key: str = "image", label_key: str = "label") -> Dataset:
    """A TFDS dataset by name, read from `data_dir` (downloading only when `download=True`)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    elif not builder.is_prepared():
        raise DataError(
            f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; "
            "prepare it there or pass download=True (--download) on a machine with internet"
        )
    out = {}
    for split in ("train", "test"):
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        out[split] = (arrays[image_key], arrays[label_key])
    names = builder.info.features[label_key].names
    return from_arrays(*out["train"], *out["test"], class_names=names, name=name)


@register_dataset("mnist")
def load_mnist(data_dir: str | None = None) -> Dataset:
    return load_idx_dataset(dataset_dir("mnist", data_dir), "mnist", MNIST_CLASSES)


@register_dataset("fashion_mnist")
def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
    return load_idx_dataset(dataset_dir("fashion-mnist", data_dir), "fashion_mnist", FASHION_MNIST_CLASSES)
