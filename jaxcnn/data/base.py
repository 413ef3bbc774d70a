"""What every data source shares: the `Dataset` container, the checks of its arrays, where data
lives, and the registry of sources that `load_dataset` looks names up in.

Sources register themselves when their module is imported (importing `jaxcnn.data` imports them
all): a named dataset with `@register_dataset("mnist")`, a family of them addressed as
`PREFIX:SPEC` (`tfds:NAME`, `image_folder:PATH`, `prepared:DIR`) with `@register_source("tfds")`.
This module imports no source, so no source imports another through it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np

from jaxcnn.data.errors import DataError

DATA_DIR_ENV = "JAXCNN_DATA_DIR"
_BUNDLED = os.path.join(os.path.dirname(os.path.dirname(__file__)), "_datasets")


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


def check_finite(x: np.ndarray, what: str) -> None:
    """DataError naming `what` (the file) and the first image holding NaN/inf, for float images."""
    if not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return
    finite = np.isfinite(x.reshape(len(x), -1))
    if not finite.all():
        i = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise DataError(f"{what}: image {i} holds {x[i].reshape(-1)[~finite[i]][0]} (NaN/inf in the inputs): "
                        "fix or drop that example")


def dataset_dir(name: str, data_dir: str | None = None) -> str:
    """The folder holding dataset `name`: `data_dir/name`, else `$JAXCNN_DATA_DIR/name`, else bundled.

    The given directory may also be the dataset's own folder (`.../datasets/mnist` for `mnist`:
    its name is the dataset's folder name). A directory that is given (the argument, else the
    environment variable) must hold the dataset: it is never passed over for the bundled copy,
    so a typo cannot train on other data. The bundled copy (MNIST only) is used only when
    neither is set.
    """
    for root, what in ((data_dir, "data directory"), (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)):
        if not root:
            continue
        root = os.path.expanduser(root)
        path = os.path.join(root, name)
        if os.path.isdir(path):
            return path
        if os.path.isdir(root) and os.path.basename(os.path.normpath(root)) == name:
            return root  # the dataset's own folder
        problem = ("does not exist" if not os.path.exists(root) else "is not a folder" if not os.path.isdir(root)
                   else "is empty" if not os.listdir(root) else f"holds no {name}/ folder")
        raise DataError(f"{path}: dataset {name!r} not found: the {what} {root} {problem}. "
                        f"Give a directory whose {name}/ folder holds the files, or that folder itself"
                        + (" (or none, for the bundled copy)" if os.path.isdir(os.path.join(_BUNDLED, name))
                           else ""))
    bundled = os.path.join(_BUNDLED, name)
    if os.path.isdir(bundled):
        return bundled
    raise DataError(
        f"dataset {name!r} not found: no data directory given. "
        f"Pass --data-dir DIR or set {DATA_DIR_ENV}=DIR, where DIR/{name} holds its files."
    )


# -- the registry --------------------------------------------------------------------------------
_LOADERS: dict[str, Callable[..., Dataset]] = {}
_SOURCES: dict[str, Callable[..., Dataset]] = {}
_SPECS: dict[str, str] = {}


def register_dataset(name: str):
    """Decorator: register `loader(data_dir=None, **options) -> Dataset` under `name`."""

    def wrap(fn):
        _LOADERS[name] = fn
        return fn

    return wrap


def register_source(prefix: str, spec: str = "SPEC"):
    """Decorator: register `loader(spec, data_dir=None, **options)` for names `PREFIX:SPEC`
    (`spec` names the part after the colon in messages: `tfds:NAME`)."""

    def wrap(fn):
        _SOURCES[prefix] = fn
        _SPECS[prefix] = spec
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def list_sources() -> list[str]:
    return sorted(_SOURCES)


def load_dataset(name: str, data_dir: str | None = None, **kwargs) -> Dataset:
    """A registered dataset by name (`mnist`), or `PREFIX:SPEC` of a registered source:
    `tfds:NAME` from TFDS, `image_folder:PATH` (folder or .tar.gz), `prepared:DIR` (written by
    `jaxcnn prepare`: splits read from disk by index, not loaded)."""
    prefix, sep, spec = name.partition(":")
    if sep and prefix in _SOURCES:
        return _SOURCES[prefix](spec, data_dir=data_dir, **kwargs)
    try:
        loader = _LOADERS[name]
    except KeyError:
        forms = ", ".join(f"{p}:{_SPECS[p]}" for p in list_sources())
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}, or {forms}") from None
    return loader(data_dir=data_dir, **kwargs)
