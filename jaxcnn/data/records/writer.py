"""Writing prepared folders: shards, the resumable plan in `.prepare/`, `prepare_arrays` and `prepare`.

Each shard is written to `NAME.tmp` and renamed when complete, then marked done in `.prepare/`;
the manifest is written last, so an interrupted preparation is continued, not restarted.
"""

from __future__ import annotations

import json
import math
import os
from typing import Sequence

import numpy as np

from jaxcnn._compat import tqdm
from jaxcnn.data import image_folder as imf
from jaxcnn.data.base import load_dataset
from jaxcnn.data.errors import DataError
from jaxcnn.data.notices import skipped_note, warn_user
from jaxcnn.data.records.manifest import (
    FORMAT,
    MANIFEST,
    PROGRESS_DIR,
    RECORD_DTYPES,
    SPLITS,
    VERSION,
    WRITER_OPTIONS,
    array_record_module,
    read_manifest,
    sha256_file,
)
from jaxcnn.run import write_json

SKIPPED_LIST = "skipped.txt"  # in a prepared folder: every file skipped, one a line (past a few)


def _shard_name(split: str, k: int, n: int) -> str:
    return f"{split}-{k:05d}-of-{n:05d}.array_record"


def write_shard(path: str, images: np.ndarray) -> dict:
    """Write one shard (into `path.tmp`, renamed when complete); returns its manifest entry."""
    ar = array_record_module()
    tmp = f"{path}.tmp"
    writer = ar.ArrayRecordWriter(tmp, WRITER_OPTIONS)
    images = np.ascontiguousarray(images)
    for img in images:
        writer.write(img.tobytes())
    writer.close()
    digest, size = sha256_file(tmp), os.path.getsize(tmp)
    os.replace(tmp, path)
    return {"path": os.path.basename(path), "num_records": int(len(images)), "bytes": size, "sha256": digest}


def _read_progress(path: str):
    """A progress record of `prepare` (JSON), or None when it is damaged."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf8"))
    except (ValueError, RecursionError):
        return None


class _Plan:
    """What one preparation writes: per split, shards of source entries; progress kept in `.prepare/`."""

    def __init__(self, out: str, key: dict):
        self.out, self.dir = out, os.path.join(out, PROGRESS_DIR)
        os.makedirs(self.dir, exist_ok=True)
        plan_path = os.path.join(self.dir, "plan.json")
        if os.path.isfile(plan_path):
            old = _read_progress(plan_path)
            if old is None:
                raise DataError(f"{plan_path}: the progress record of an unfinished preparation is damaged; "
                                f"delete {out} and prepare again")
            if old != key:
                raise DataError(f"{out}: holds an unfinished preparation of other data or options "
                                f"({plan_path}); give another --out or delete that folder")
        else:
            write_json(plan_path, key)

    def done(self, split: str, k: int) -> dict | None:
        path = os.path.join(self.dir, f"{split}-{k:05d}.json")
        if not os.path.isfile(path):
            return None
        entry = _read_progress(path)
        if not (isinstance(entry, dict) and all(k in entry for k in ("file", "labels", "skipped", "image_shape"))):
            return None  # a damaged mark: write the shard again
        try:
            shard = os.path.join(self.out, entry["file"]["path"])
            if not os.path.isfile(shard) or os.path.getsize(shard) != entry["file"]["bytes"]:
                return None  # marked, but the file is gone or damaged: write it again
        except (TypeError, KeyError):
            return None  # a damaged mark: write the shard again
        return entry

    def mark(self, split: str, k: int, entry: dict) -> None:
        write_json(os.path.join(self.dir, f"{split}-{k:05d}.json"), entry)


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
    image_shape, dtype, skipped_files = None, None, []
    total = sum(counts.values())
    bar = tqdm(total=total, desc=f"prepare {name or out}", unit="img", disable=not progress, dynamic_ncols=True)
    for split, (items, labels) in splits.items():
        labels = np.asarray(labels, np.int32)
        n_shards = max(1, math.ceil(len(items) / shard_size))
        files, kept_labels, skipped, before = [], [], 0, len(skipped_files)
        for k in range(n_shards):
            lo, hi = k * shard_size, min(len(items), (k + 1) * shard_size)
            entry = plan.done(split, k)
            if entry is None:
                chunk = items[lo:hi]
                if decode is None:
                    images, kept = np.asarray(chunk), np.arange(hi - lo)
                    failed = []
                else:  # decode -> (images, kept positions[, names of the files skipped])
                    images, kept, *rest = decode(chunk, image_shape)
                    failed = list(rest[0]) if rest else []
                images = record_array(images, f"{out}: {split} shard {k}")
                if image_shape is not None and len(images) and tuple(images.shape[1:]) != image_shape:
                    raise DataError(f"{out}: {split} shard {k} holds images of {images.shape[1:]}, others "
                                    f"{image_shape}")
                path = os.path.join(out, _shard_name(split, k, n_shards))
                entry = {"file": write_shard(path, images), "labels": labels[lo:hi][kept].tolist(),
                         "skipped": int((hi - lo) - len(kept)), "skipped_files": failed,
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
            skipped_files.extend(entry.get("skipped_files", []))
            bar.update(hi - lo)
        if not kept_labels:
            raise DataError(f"{out}: the {split} split has zero examples after decoding ({skipped} skipped)")
        if skipped > len(skipped_files) - before:  # shards marked by a jaxcnn that kept no names
            notes.append(f"{split}: skipped {skipped} file(s) that could not be decoded as images")
        labels_path = os.path.join(out, f"{split}-labels.npy")
        np.save(labels_path, np.asarray(kept_labels, np.int32))
        manifest["splits"][split] = {
            "num_examples": len(kept_labels), "skipped": skipped, "files": files,
            "labels": {"path": os.path.basename(labels_path), "sha256": sha256_file(labels_path)},
            "class_counts": np.bincount(np.asarray(kept_labels), minlength=len(class_names)).tolist()}
    bar.close()
    if skipped_files:  # one message for the whole preparation, every file named (or listed in skipped.txt)
        notes.insert(0, skipped_note(skipped_files, os.path.join(out, SKIPPED_LIST)))
    manifest["image_shape"] = list(image_shape)
    manifest["dtype"] = dtype
    manifest["notes"] = notes
    write_json(os.path.join(out, MANIFEST), manifest)
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
            tree, ignored = imf.scan_archive(path)  # the loader's own scan
        elif os.path.isdir(path):
            tree, ignored = imf.scan_folder(path)
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
            names, failed = [e[0] for e in chunk], []
            size = image_size or (tuple(shape[:2]) if shape else None)
            try:
                images, kept, shapes = imf.decode_images([e[1] for e in chunk], size, channels, on_error, names,
                                                         skipped=failed)
            except imf.NothingDecodes:  # a first shard of broken files only: skipped, the next sets the size
                if on_error == "raise":
                    raise
                return np.zeros((0, 1, 1, channels), np.uint8), np.zeros(0, np.int64), names
            if image_size is None and len(kept):
                want = images.shape[1:3]
                bad = np.nonzero(np.any(shapes != np.asarray(want), axis=1))[0]
                if len(bad):  # plain integers in the message
                    raise DataError(f"{names[kept[bad[0]]]}: image size {tuple(int(v) for v in shapes[bad[0]])} "
                                    f"differs from {tuple(int(v) for v in want)}; pass --image-size to resize")
            return images, kept, failed

        name = imf.archive_stem(os.path.basename(os.path.normpath(path)))
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
        warn_user(msg)
    return manifest
