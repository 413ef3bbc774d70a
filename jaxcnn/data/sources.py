"""Datasets as numpy arrays: IDX folders (MNIST, Fashion-MNIST), TFDS by name, in-memory arrays.

Where data lives: an explicit `data_dir`, else `$JAXCNN_DATA_DIR`, else (MNIST only) the copy
bundled with the package, so the quick start runs offline. A directory that is given must hold
the dataset (a DataError names the path otherwise). Nothing is ever downloaded silently.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np

from jaxcnn.data.errors import DataError
from jaxcnn.data.idx import read_idx

DATA_DIR_ENV = "JAXCNN_DATA_DIR"
_BUNDLED = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_datasets")

MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


@dataclasses.dataclass
class Dataset:
    """Train and test splits in memory: images NHWC (uint8 or float), integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: Sequence[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def take(self, n_train: int | None = None, n_test: int | None = None) -> "Dataset":
        """At most n examples of each split, spread over the classes (`spread_indices`): a small
        slice for tests and smoke runs that keeps every class even when a split is stored class
        by class (image folders)."""
        tr, te = spread_indices(self.y_train, n_train), spread_indices(self.y_test, n_test)
        return dataclasses.replace(self, x_train=self.x_train[tr], y_train=self.y_train[tr],
                                   x_test=self.x_test[te], y_test=self.y_test[te])


def spread_indices(labels, n: int | None) -> np.ndarray:
    """Indices of at most `n` examples taken round-robin over the classes (each class's first
    examples, classes in label order), returned in their original order.

    On shuffled data this is close to "the first n"; on data sorted by class it still holds
    every class. A smaller n picks a subset of a larger n's choice, so limits nest.
    """
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    order = np.argsort(labels, kind="stable")
    first_of_class = np.searchsorted(labels[order], labels[order], side="left")
    rank = np.empty(len(labels), np.int64)
    rank[order] = np.arange(len(labels)) - first_of_class  # position within its own class
    return np.sort(np.lexsort((labels, rank))[:n])


def check_arrays(x: np.ndarray, y: np.ndarray, num_classes: int | None, what: str) -> None:
    """Clear errors for an empty split, mismatched lengths, bad shapes or out-of-range labels."""
    if len(x) == 0:
        raise DataError(f"{what}: the split is empty")
    if len(x) != len(y):
        raise DataError(f"{what}: {len(x)} images but {len(y)} labels")
    if x.ndim != 4:
        raise DataError(f"{what}: images must be NHWC (4 dims), got shape {x.shape}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{what}: labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if num_classes is not None:
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise DataError(f"{what}: labels must lie in [0, {num_classes - 1}], found [{lo}, {hi}]")


def dataset_dir(name: str, data_dir: str | None = None) -> str:
    """The folder holding dataset `name`: `data_dir/name`, else `$JAXCNN_DATA_DIR/name`, else bundled.

    A directory that is given (the argument, else the environment variable) must hold the
    dataset: it is never passed over for the bundled copy, so a typo cannot train on other data.
    The bundled copy (MNIST only) is used only when neither is set.
    """
    for root, what in ((data_dir, "data directory"), (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)):
        if not root:
            continue
        root = os.path.expanduser(root)
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
        problem = ("does not exist" if not os.path.exists(root) else "is not a folder" if not os.path.isdir(root)
                   else "is empty" if not os.listdir(root) else f"holds no {name}/ folder")
        raise DataError(f"{path}: dataset {name!r} not found: the {what} {root} {problem}. "
                        f"Give a directory whose {name}/ folder holds the files"
                        + (" (or none, for the bundled copy)" if os.path.isdir(os.path.join(_BUNDLED, name))
                           else ""))
    bundled = os.path.join(_BUNDLED, name)
    if os.path.isdir(bundled):
        return bundled
    raise DataError(
        f"dataset {name!r} not found: no data directory given. "
        f"Pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, where DIR/{name} holds its files."
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


_LOADERS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str):
    """Decorator: register `loader(data_dir=None) -> Dataset` under `name`."""

    def wrap(fn):
        _LOADERS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(name: str, data_dir: str | None = None, **kwargs) -> Dataset:
    """Load a registered dataset, `tfds:NAME` from TFDS, `image_folder:PATH` (folder or .tar.gz), or
    `prepared:DIR` (written by `jaxcnn prepare`: splits read from disk by index, not loaded)."""
    if name.startswith("prepared:"):
        from jaxcnn.data.records import load_prepared

        return load_prepared(name[len("prepared:"):], **kwargs)
    if name.startswith("tfds:"):
        return load_tfds(name[5:], data_dir=data_dir, **kwargs)
    if name.startswith("image_folder:"):
        from jaxcnn.data.image_folder import load_image_folder

        return load_image_folder(name[len("image_folder:"):], **kwargs)
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}, "
                        "or tfds:NAME, image_folder:PATH, prepared:DIR") from None
    return loader(data_dir=data_dir, **kwargs)


@register_dataset("mnist")
def load_mnist(data_dir: str | None = None) -> Dataset:
    return load_idx_dataset(dataset_dir("mnist", data_dir), "mnist", MNIST_CLASSES)


@register_dataset("fashion_mnist")
def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
    return load_idx_dataset(dataset_dir("fashion-mnist", data_dir), "fashion_mnist", FASHION_MNIST_CLASSES)


def validation_split(x: np.ndarray, y: np.ndarray, fraction: float):
    """Keras `validation_split`: the LAST `fraction` of the arrays, taken before any shuffling."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation_split must lie in (0, 1), got {fraction}")
    # Keras: split_at = int(n * (1 - fraction)).
    split_at = int(len(x) * (1.0 - fraction))
    if split_at == 0 or split_at == len(x):
        raise DataError(f"validation_split={fraction} leaves an empty split of {len(x)} examples")
    return (x[:split_at], y[:split_at]), (x[split_at:], y[split_at:])
