"""Reading prepared folders: `PreparedSplit` (a random-access source read by index), `PreparedDataset`,
`load_prepared`, and the `prepared:DIR` source.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from jaxcnn.data.base import register_source, spread_indices
from jaxcnn.data.errors import DataError
from jaxcnn.data.records.manifest import MANIFEST, READER_OPTIONS, array_record_module, read_manifest, sha256_file

ARRAY_LIMIT_BYTES = 64 << 20  # np.asarray(split) reads at most this much (a sample), else TypeError


class PreparedSplit:
    """One split of a prepared dataset, read from disk on demand (see `jaxcnn.data.records`).

    Opening checks every shard against the manifest: present, of the recorded size and record
    count (and, with `verify=True`, sha256: this reads every byte once). Reading checks each
    record's length. Every problem is a DataError naming the file.
    """

    def __init__(self, root: str, split: str = "train", verify: bool = False, _index: np.ndarray | None = None,
                 _manifest: dict | None = None):
        self.root, self.split = root, split
        self.manifest = _manifest or read_manifest(root)
        splits = self.manifest["splits"]
        if split not in splits:
            raise DataError(f"{os.path.join(root, MANIFEST)}: no split {split!r}; splits: {sorted(splits)}")
        info = splits[split]
        self.image_shape = tuple(int(s) for s in self.manifest["image_shape"])
        self.dtype = np.dtype(self.manifest.get("dtype", "uint8"))
        self._record_bytes = int(np.prod(self.image_shape)) * self.dtype.itemsize
        self.class_names = tuple(self.manifest["class_names"])
        self.files = [os.path.join(root, f["path"]) for f in info["files"]]
        counts = [int(f["num_records"]) for f in info["files"]]
        if _manifest is None:
            self._check_files(info, verify)
        self._starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        total = int(self._starts[-1])
        if total == 0 or total != int(info["num_examples"]):
            raise DataError(f"{os.path.join(root, MANIFEST)}: split {split!r} has "
                            + ("zero records" if total == 0 else
                               f"{total} records in its files but the manifest counts {info['num_examples']}"))
        labels_path = os.path.join(root, info["labels"]["path"])
        self._all_labels = self._load_labels(labels_path, info["labels"], total, verify)
        self._index = _index
        self.labels = self._all_labels if _index is None else self._all_labels[_index]
        self._readers: dict[int, object] = {}
        self._lock = threading.Lock()
        self.reads = None  # a list to record every index read (tests of per-host reading)

    def _check_files(self, info, verify):
        ar = array_record_module()
        for entry in info["files"]:
            path = os.path.join(self.root, entry["path"])
            if not os.path.isfile(path):
                raise DataError(f"{path}: record file missing (listed in {MANIFEST})")
            size = os.path.getsize(path)
            if size != int(entry["bytes"]):
                raise DataError(f"{path}: {size} bytes but the manifest says {entry['bytes']}: the file is "
                                "truncated or was changed; prepare the dataset again")
            if verify and sha256_file(path) != entry["sha256"]:
                raise DataError(f"{path}: sha256 differs from the manifest: the file is corrupt; prepare the "
                                "dataset again")
            try:
                reader = ar.ArrayRecordReader(path, READER_OPTIONS)
                try:
                    n = reader.num_records()
                finally:
                    reader.close()
            except Exception as e:  # noqa: BLE001 - the library raises RuntimeError, ValueError...
                raise DataError(f"{path}: not a readable record file ({type(e).__name__}: {e}): the file is "
                                "corrupt; prepare the dataset again") from None
            if n != int(entry["num_records"]):
                raise DataError(f"{path}: holds {n} records but the manifest says {entry['num_records']}")

    @staticmethod
    def _load_labels(path, entry, total, verify):
        if not os.path.isfile(path):
            raise DataError(f"{path}: labels file missing (listed in {MANIFEST})")
        if verify and sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path}: sha256 differs from the manifest: the file is corrupt")
        try:
            labels = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - a damaged header fails in numpy's parser in many ways
            raise DataError(f"{path}: unreadable labels ({type(e).__name__}: {e}): the file is damaged; "
                            "prepare the dataset again") from None
        if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
            raise DataError(f"{path}: not an array of integer labels: the file is damaged; prepare the dataset again")
        if labels.shape != (total,):
            raise DataError(f"{path}: {labels.shape[0] if labels.ndim else 0} labels for {total} records")
        return labels.astype(np.int32, copy=False)

    # -- array-like surface --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.image_shape)

    ndim = 4

    @property
    def nbytes(self) -> int:
        return len(self) * self._record_bytes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __getitem__(self, key):
        """`split[i]` -> one image; `split[indices]` -> stacked images; `split[a:b]` -> a view."""
        if isinstance(key, slice):
            return self.view(np.arange(len(self))[key])
        idx = np.asarray(key, dtype=np.int64)
        if idx.ndim == 0:
            return self.read(idx[None])[0]
        return self.read(idx)

    def view(self, indices) -> "PreparedSplit":
        """The examples at `indices` as a split of their own (nothing is read)."""
        base = np.asarray(indices, np.int64)
        return PreparedSplit(self.root, self.split, _index=base if self._index is None else self._index[base],
                             _manifest=self.manifest)

    def __array__(self, dtype=None, copy=None):
        """A small split or view (a sample to plot) as one array; a big one is refused, not loaded."""
        if self.nbytes > ARRAY_LIMIT_BYTES:
            raise TypeError(f"{self.root} ({self.split}): a prepared split of {self.nbytes / 2**20:.0f} MiB is "
                            "read by index, not turned into one array; pass it to Trainer.fit/evaluate/predict "
                            "as it is, or take a view (split[:64]) or indices (split[idx])")
        out = self.read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def read(self, idx: np.ndarray) -> np.ndarray:
        """The images at `idx` (indices into this split or view), [len(idx), H, W, C] of `dtype`."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"index out of range for a split of {n} examples")
        idx = np.where(idx < 0, idx + n, idx)
        if self.reads is not None:
            self.reads.extend(int(i) for i in idx)
        rows = idx if self._index is None else self._index[idx]
        out = np.empty((len(rows), *self.image_shape), self.dtype)
        shard = np.searchsorted(self._starts, rows, side="right") - 1
        with self._lock:
            for s in np.unique(shard):
                pos = np.nonzero(shard == s)[0]
                local = (rows[pos] - self._starts[s]).tolist()
                try:
                    records = self._reader(int(s)).read(local)
                except Exception as e:  # noqa: BLE001 - the library raises various runtime errors
                    raise DataError(f"{self.files[s]}: cannot read records: {e}") from e
                for p, r, rec in zip(pos, local, records):
                    if len(rec) != self._record_bytes:
                        raise DataError(f"{self.files[s]}: record {r} holds {len(rec)} bytes, not an image of "
                                        f"{self.image_shape} {self.dtype} ({self._record_bytes} bytes): the "
                                        "file is corrupt; prepare the dataset again")
                    out[p] = np.frombuffer(rec, self.dtype).reshape(self.image_shape)
                if self.dtype.kind == "f":  # checked when written; this finds a file changed since
                    self._check_finite(out[pos], s, local)
        return out

    def _check_finite(self, images: np.ndarray, s: int, local: list) -> None:
        finite = np.isfinite(images.reshape(len(images), -1))
        if not finite.all():
            k = int(np.flatnonzero(~finite.all(axis=1))[0])
            value = images[k].reshape(-1)[~finite[k]][0]
            raise DataError(f"{self.files[s]}: record {local[k]} ({self.split} example "
                            f"{int(self._starts[s]) + local[k]}) holds {value} (NaN/inf in the inputs): fix the "
                            "source data and prepare the dataset again")

    def _reader(self, s: int):
        reader = self._readers.get(s)
        if reader is None:
            reader = self._readers[s] = array_record_module().ArrayRecordReader(self.files[s], READER_OPTIONS)
        return reader

    def close(self) -> None:
        with self._lock:
            for r in self._readers.values():
                r.close()
            self._readers.clear()

    def __getstate__(self):  # readers and locks stay in their process
        state = dict(self.__dict__)
        state.update(_readers={}, _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PreparedSplit({self.root!r}, {self.split!r}, {len(self)} examples of {self.image_shape})"


def is_source(x) -> bool:
    """Whether `x` is a random-access source (read by index) rather than an in-memory array."""
    return isinstance(x, PreparedSplit)


class PreparedDataset:
    """A prepared folder's train and test splits (`x_train`/`y_train`/... as `Dataset` names them)."""

    def __init__(self, root: str, verify: bool = False):
        manifest = read_manifest(root)
        self.root, self.manifest = root, manifest
        self.name = manifest.get("name") or os.path.basename(os.path.normpath(root))
        self.class_names = tuple(manifest["class_names"])
        self.x_train = PreparedSplit(root, "train", verify=verify)
        self.x_test = PreparedSplit(root, "test", verify=verify)
        self.y_train, self.y_test = self.x_train.labels, self.x_test.labels

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.x_train.image_shape

    def take(self, n_train: int | None = None, n_test: int | None = None) -> "PreparedDataset":
        out = object.__new__(PreparedDataset)
        out.__dict__.update(self.__dict__)
        # As Dataset.take: spread over the classes, so every class is kept.
        out.x_train = self.x_train.view(spread_indices(self.y_train, n_train))
        out.x_test = self.x_test.view(spread_indices(self.y_test, n_test))
        out.y_train, out.y_test = out.x_train.labels, out.x_test.labels
        return out


def load_prepared(root: str, split: str | None = None, verify: bool = False):
    """A prepared folder: the whole `PreparedDataset`, or one `PreparedSplit` when `split` is given."""
    root = os.path.expanduser(root)
    return PreparedDataset(root, verify) if split is None else PreparedSplit(root, split, verify)


@register_source("prepared", "DIR")
def _load_prepared_source(root: str, data_dir: str | None = None, **kwargs):
    """`prepared:DIR`: the folder is taken as given (not under the data directory)."""
    return load_prepared(root, **kwargs)
