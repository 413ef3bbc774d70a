"""Prepared datasets: splits written once as ArrayRecord shards, read back by index.

    jaxcnn prepare image_folder:photos/ --out prepared/photos --image-size 128
    trainer.fit(load_prepared("prepared/photos", "train"), epochs=...)   # or load_dataset("prepared:DIR")

A prepared folder holds, per split, shards `SPLIT-00000-of-00004.array_record` (one record per
example: its raw HxWxC values, uint8 pixels or float32 arrays such as spectrograms, so reading
needs no decoder), `SPLIT-labels.npy`, and `manifest.json` (format, class names, image shape and
dtype, per split the example count and per file its record count, size and sha256). The manifest is written last: a folder without one is an
unfinished preparation, which `prepare` continues (each shard is marked done, in
`.prepare/`, only after its file is complete and renamed into place).

`PreparedSplit` is a random-access source: `len()`, `shape`, `dtype`, `labels`, and
`split[indices]` -> NHWC of the stored dtype. The input pipeline gathers each batch's indices from it exactly as from an array,
so the epoch order (a permutation of seed and epoch), mid-epoch resume and each host's slice of
a global batch are the same as for in-memory arrays: each process reads only its own records.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import warnings
from typing import Sequence

import numpy as np

from jaxcnn._compat import tqdm
from jaxcnn.data import image_folder as imf
from jaxcnn.data.base import load_dataset, register_source, spread_indices
from jaxcnn.data.errors import DataError

FORMAT = "jaxcnn-array-record"
VERSION = 1
MANIFEST = "manifest.json"
PROGRESS_DIR = ".prepare"
SPLITS = ("train", "test")
_WRITER_OPTIONS = "group_size:1"  # one record per chunk: cheap random access
_READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # random access (the library's advice)
RECORD_DTYPES = ("uint8", "float16", "float32")  # float64 is stored as float32 (what training uses)
ARRAY_LIMIT_BYTES = 64 << 20  # np.asarray(split) reads at most this much (a sample), else TypeError


def _array_record():
    try:
        from array_record.python import array_record_module
    except ImportError as e:  # pragma: no cover - an optional dependency
        raise DataError("prepared datasets need the array_record package: pip install array_record") from e
    return array_record_module


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _write_json(path: str, obj) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


# -- reading -----------------------------------------------------------------------------------------
def read_manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.isdir(root):
        raise DataError(f"{root}: prepared dataset folder not found")
    if not os.path.isfile(path):
        unfinished = os.path.isdir(os.path.join(root, PROGRESS_DIR))
        raise DataError(f"{path}: not found: " + ("the preparation did not finish; run `jaxcnn prepare` again "
                                                  "with the same arguments to complete it" if unfinished
                                                  else "not a prepared dataset (see `jaxcnn prepare`)"))
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable manifest: {e}") from e
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a jaxcnn prepared-dataset manifest (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > VERSION:
        raise DataError(f"{path}: written by a newer jaxcnn (version {manifest['version']} > {VERSION})")
    return manifest


class PreparedSplit:
    """One split of a prepared dataset, read from disk on demand (see the module docstring).

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
        ar = _array_record()
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
            reader = ar.ArrayRecordReader(path, _READER_OPTIONS)
            try:
                n = reader.num_records()
            finally:
                reader.close()
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
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: unreadable labels: {e}") from e
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
                reader = self._reader(int(s))
                try:
                    records = reader.read(local)
                except Exception as e:  # noqa: BLE001 - the library raises various runtime errors
                    raise DataError(f"{self.files[s]}: cannot read records: {e}") from e
                for p, r, rec in zip(pos, local, records):
                    if len(rec) != self._record_bytes:
                        raise DataError(f"{self.files[s]}: record {r} holds {len(rec)} bytes, not an image of "
                                        f"{self.image_shape} {self.dtype} ({self._record_bytes} bytes): the "
                                        "file is corrupt; prepare the dataset again")
                    out[p] = np.frombuffer(rec, self.dtype).reshape(self.image_shape)
        return out

    def _reader(self, s: int):
        reader = self._readers.get(s)
        if reader is None:
            reader = self._readers[s] = _array_record().ArrayRecordReader(self.files[s], _READER_OPTIONS)
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


# -- writing ---------------------------------------------------------------------------------------
def _shard_name(split: str, k: int, n: int) -> str:
    return f"{split}-{k:05d}-of-{n:05d}.array_record"


def write_shard(path: str, images: np.ndarray) -> dict:
    """Write one shard (into `path.tmp`, renamed when complete); returns its manifest entry."""
    ar = _array_record()
    tmp = f"{path}.tmp"
    writer = ar.ArrayRecordWriter(tmp, _WRITER_OPTIONS)
    images = np.ascontiguousarray(images)
    for img in images:
        writer.write(img.tobytes())
    writer.close()
    digest, size = sha256_file(tmp), os.path.getsize(tmp)
    os.replace(tmp, path)
    return {"path": os.path.basename(path), "num_records": int(len(images)), "bytes": size, "sha256": digest}


class _Plan:
    """What one preparation writes: per split, shards of source entries; progress kept in `.prepare/`."""

    def __init__(self, out: str, key: dict):
        self.out, self.dir = out, os.path.join(out, PROGRESS_DIR)
        os.makedirs(self.dir, exist_ok=True)
        plan_path = os.path.join(self.dir, "plan.json")
        if os.path.isfile(plan_path):
            with open(plan_path) as f:
                old = json.load(f)
            if old != key:
                raise DataError(f"{out}: holds an unfinished preparation of other data or options "
                                f"({plan_path}); give another --out or delete that folder")
        else:
            _write_json(plan_path, key)

    def done(self, split: str, k: int) -> dict | None:
        path = os.path.join(self.dir, f"{split}-{k:05d}.json")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            entry = json.load(f)
        shard = os.path.join(self.out, entry["file"]["path"])
        if not os.path.isfile(shard) or os.path.getsize(shard) != entry["file"]["bytes"]:
            return None  # marked, but the file is gone or damaged: write it again
        return entry

    def mark(self, split: str, k: int, entry: dict) -> None:
        _write_json(os.path.join(self.dir, f"{split}-{k:05d}.json"), entry)


def prepare_arrays(out: str, splits: dict, class_names: Sequence[str], *, name: str = "", source: str = "",
                   shard_size: int = 4096, progress: bool = True, decode=None, notes: list | None = None) -> dict:
    """Write `splits` ({split: (items, labels)}) as a prepared dataset in `out`; returns the manifest.

    `items` is an NHWC array (uint8, or float stored as float32), or (with `decode`) a list of
    encoded sources that
    `decode(items_chunk) -> (images, kept_positions, shape_or_None)` turns into images. Resumable:
    shards already marked done are kept; a complete folder is returned as it is.
    """
    if os.path.isfile(os.path.join(out, MANIFEST)):
        done = read_manifest(out)
        if done.get("source") != source or done.get("name") != name:
            raise DataError(f"{os.path.join(out, MANIFEST)}: holds a prepared dataset of other data or options "
                            f"({done.get('source')}); give another --out or delete that folder")
        return done  # prepared already: nothing to do
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    counts = {s: len(items) for s, (items, _) in splits.items()}
    plan = _Plan(out, {"source": source, "name": name, "class_names": list(class_names), "counts": counts,
                       "shard_size": shard_size})
    notes = [] if notes is None else notes
    manifest = {"format": FORMAT, "version": VERSION, "name": name, "source": source,
                "class_names": list(class_names), "encoding": "raw", "splits": {}}
    image_shape, dtype = None, None
    total = sum(counts.values())
    bar = tqdm(total=total, desc=f"prepare {name or out}", unit="img", disable=not progress, dynamic_ncols=True)
    for split, (items, labels) in splits.items():
        labels = np.asarray(labels, np.int32)
        n_shards = max(1, math.ceil(len(items) / shard_size))
        files, kept_labels, skipped = [], [], 0
        for k in range(n_shards):
            lo, hi = k * shard_size, min(len(items), (k + 1) * shard_size)
            entry = plan.done(split, k)
            if entry is None:
                chunk = items[lo:hi]
                if decode is None:
                    images, kept = np.asarray(chunk), np.arange(hi - lo)
                else:
                    images, kept = decode(chunk, image_shape)
                images = record_array(images, f"{out}: {split} shard {k}")
                if image_shape is not None and len(images) and tuple(images.shape[1:]) != image_shape:
                    raise DataError(f"{out}: {split} shard {k} holds images of {images.shape[1:]}, others "
                                    f"{image_shape}")
                path = os.path.join(out, _shard_name(split, k, n_shards))
                entry = {"file": write_shard(path, images), "labels": labels[lo:hi][kept].tolist(),
                         "skipped": int((hi - lo) - len(kept)),
                         "image_shape": list(images.shape[1:]) if len(images) else None,
                         "dtype": images.dtype.name}
                plan.mark(split, k, entry)
            if entry["image_shape"] is not None:
                image_shape = image_shape or tuple(entry["image_shape"])
                shard_dtype = entry.get("dtype", "uint8")
                if dtype is not None and shard_dtype != dtype:
                    raise DataError(f"{out}: {split} shard {k} holds {shard_dtype} values, others {dtype}")
                dtype = shard_dtype
            files.append(entry["file"])
            kept_labels.extend(entry["labels"])
            skipped += entry["skipped"]
            bar.update(hi - lo)
        if not kept_labels:
            raise DataError(f"{out}: the {split} split has zero examples after decoding ({skipped} skipped)")
        if skipped:
            notes.append(f"{split}: skipped {skipped} file(s) that could not be decoded as images")
        labels_path = os.path.join(out, f"{split}-labels.npy")
        np.save(labels_path, np.asarray(kept_labels, np.int32))
        manifest["splits"][split] = {
            "num_examples": len(kept_labels), "skipped": skipped, "files": files,
            "labels": {"path": os.path.basename(labels_path), "sha256": sha256_file(labels_path)},
            "class_counts": np.bincount(np.asarray(kept_labels), minlength=len(class_names)).tolist()}
    bar.close()
    manifest["image_shape"] = list(image_shape)
    manifest["dtype"] = dtype
    manifest["notes"] = notes
    _write_json(os.path.join(out, MANIFEST), manifest)
    return manifest


def record_array(images, what: str) -> np.ndarray:
    """`images` as records store them: uint8 as is, floats as float32 (float16 kept), checked for
    NaN/inf here (training does not read a whole prepared split to check it); else an error."""
    images = np.asarray(images)
    if images.dtype == np.float64:
        images = images.astype(np.float32)
    if images.dtype.name not in RECORD_DTYPES:
        raise DataError(f"{what}: records hold {', '.join(RECORD_DTYPES)} arrays, not {images.dtype}")
    if images.dtype != np.uint8 and len(images):
        bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if bad.any():
            raise DataError(f"{what}: example {int(np.flatnonzero(bad)[0])} holds NaN/inf values: fix or "
                            "drop it before preparing")
    return images


def _spread(entries: list, limit: int | None, num_classes: int) -> list:
    """At most `limit` entries, taken round-robin over the classes (kept in class order)."""
    if limit is None or limit >= len(entries):
        return entries
    by_class: dict[int, list] = {}
    for e in entries:
        by_class.setdefault(e[2], []).append(e)
    chosen, i = [], 0
    while len(chosen) < limit:
        for c in sorted(by_class):
            if i < len(by_class[c]) and len(chosen) < limit:
                chosen.append(by_class[c][i])
        i += 1
    order = {id(e): n for n, e in enumerate(entries)}
    return sorted(chosen, key=lambda e: order[id(e)])


def prepare(source: str, out: str, *, image_size=None, color_mode: str = "rgb", on_error: str = "skip",
            limit: int | None = None, shard_size: int = 4096, data_dir: str | None = None,
            progress: bool = True) -> dict:
    """Prepare `source` (`image_folder:PATH`, `tfds:NAME` or a registered dataset name) into `out`.

    Image folders (and .tar.gz archives of one) are decoded shard by shard, as `load_image_folder`
    decodes them (same order, channels, resizing and skipping of undecodable files), so only one
    shard's images are in memory; other sources are loaded whole first (they fit in memory).
    `limit` keeps at most that many examples per split (spread over the classes).
    """
    out = os.path.expanduser(out)
    if isinstance(image_size, int) or (image_size is not None and len(image_size) == 1):
        image_size = (int(np.ravel(image_size)[0]),) * 2
    image_size = tuple(int(s) for s in image_size) if image_size else None
    if image_size is not None and (len(image_size) != 2 or min(image_size) <= 0):
        raise ValueError(f"image size must be one or two positive integers, got {image_size}")
    key = f"{source}|size={image_size}|color={color_mode}|on_error={on_error}|limit={limit}"
    notes: list = []
    if source.startswith("image_folder:"):
        path = os.path.expanduser(source[len("image_folder:"):])
        if not os.path.exists(path):
            raise DataError(f"{path}: image folder or archive not found")
        if imf.is_archive(path):
            tree, ignored = imf._scan_archive(path)  # noqa: SLF001 - the loader's own scan
        elif os.path.isdir(path):
            tree, ignored = imf._scan_folder(path)  # noqa: SLF001
        else:
            raise DataError(f"{path}: neither a folder nor a .tar/.tar.gz/.tgz archive")
        for split in SPLITS:
            if split not in tree:
                raise DataError(f"{path}: no {split} split folder (one of {', '.join(imf.SPLIT_NAMES[split])})")
        class_names = sorted(tree["train"])
        if not class_names:
            raise DataError(f"{path}: no class folders in the train split")
        label_of = {c: i for i, c in enumerate(class_names)}
        unknown = sorted(set(tree["test"]) - set(class_names))
        if unknown:
            raise DataError(f"{path}: test class folders {unknown} are not in the train split")
        channels = imf.COLOR_MODES[color_mode]
        splits = {}
        for split in SPLITS:
            entries = [(n, s, label_of[c]) for c in class_names for n, s in tree[split].get(c, [])]
            entries = _spread(entries, limit, len(class_names))
            if not entries:
                raise DataError(f"{path}: no image files ({', '.join(imf.IMAGE_EXTENSIONS)}) in the {split} split")
            splits[split] = (entries, [e[2] for e in entries])
        if ignored:
            notes.append(f"{path}: ignored {ignored} file(s) without an image extension")

        def decode(chunk, shape):
            names = [e[0] for e in chunk]
            size = image_size or (tuple(shape[:2]) if shape else None)
            images, kept, shapes = imf.decode_images([e[1] for e in chunk], size, channels, on_error, names, notes)
            if image_size is None and len(kept):
                want = images.shape[1:3]
                bad = np.nonzero(np.any(shapes != np.asarray(want), axis=1))[0]
                if len(bad):
                    raise DataError(f"{names[kept[bad[0]]]}: image size {tuple(shapes[bad[0]])} differs from "
                                    f"{tuple(want)}; pass --image-size to resize")
            return images, kept

        name = imf._archive_stem(os.path.basename(os.path.normpath(path)))  # noqa: SLF001
        manifest = prepare_arrays(out, splits, class_names, name=name, source=key, shard_size=shard_size,
                                  progress=progress, decode=decode, notes=notes)
    else:
        ds = load_dataset(source, data_dir=data_dir)
        splits = {"train": (ds.x_train, ds.y_train), "test": (ds.x_test, ds.y_test)}
        for split, (x, y) in list(splits.items()):
            keep = [e[0] for e in _spread([(i, None, int(c)) for i, c in enumerate(y)], limit, ds.num_classes)]
            x, y = x[keep], y[keep]
            if image_size:
                x = imf.resize_images(x, image_size)
            splits[split] = (record_array(x, source), y)
        manifest = prepare_arrays(out, splits, ds.class_names, name=ds.name, source=key, shard_size=shard_size,
                                  progress=progress)
    for msg in manifest.get("notes", []):
        warnings.warn(msg, stacklevel=2)
    return manifest
