"""Image-folder datasets: `split/class/*.jpg|png` trees, or a `.tar.gz` of one, as in-memory arrays.

- An archive is read as a stream (its image bytes go straight to the decoder), or, with
  `extract=True`, extracted once into the cache folder (`cache_dir`, else `$JAXCNN_CACHE_DIR`,
  else `~/.cache/jaxcnn`): into a temporary folder first, renamed and marked complete only when
  extraction finished, so an interrupted run is redone and a finished one never repeated.
  Streaming is the default because writing 60,000 small files can take minutes on a busy disk
  while reading them from the .tar.gz takes seconds.
- Images are decoded with TensorFlow (`tf.io.decode_image`: JPEG, PNG, GIF, BMP), optionally
  resized (`tf.image.resize`, bilinear, rounded to uint8), in a parallel tf.data pipeline.
  Channels follow `color_mode`, as in Keras' `image_dataset_from_directory`: "rgb" (default, 3),
  "grayscale" (1) or "rgba" (4); every image is converted, whatever its own mode.
- Class names are the sorted folder names of the train split; `classes=` keeps a subset, labelled
  in the order given (`classes=("cat", "dog")` -> 0, 1).
- Files that cannot be decoded are skipped with one warning per load naming them (past five, the
  first five and a file listing all: `jaxcnn.data.notices`), attributed to the user's line
  (`on_error="skip"`), or reported by name (`on_error="raise"`); files without an image extension
  are ignored (one warning); a class with no images in a split (an empty folder) warns, or is an
  error with `on_error="raise"`.
- The decoded arrays are cached as an uncompressed .npz in the cache folder, keyed by the source
  (archive size and mtime, or the folder's file list) and the options: later loads take about a
  second and never touch the archive, and repeat the warnings of the load that made the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from typing import Sequence

import numpy as np

from jaxcnn.data.base import Dataset, check_arrays, dataset_dir, register_dataset, register_source
from jaxcnn.data.errors import DataError
from jaxcnn.data.notices import skipped_note, warn_user
from jaxcnn.data.tfutil import import_tf

CACHE_DIR_ENV = "JAXCNN_CACHE_DIR"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")
SPLIT_NAMES = {"train": ("train", "training"), "test": ("test", "testing", "val", "validation")}
_COMPLETE = ".jaxcnn-extracted"
_CACHE_VERSION = 2  # 2: channels from color_mode, warnings kept with the arrays
COLOR_MODES = {"grayscale": 1, "rgb": 3, "rgba": 4}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def cache_root(cache_dir: str | None = None) -> str:
    """The cache folder: `cache_dir`, else `$JAXCNN_CACHE_DIR`, else `~/.cache/jaxcnn`."""
    root = cache_dir or os.environ.get(CACHE_DIR_ENV) or os.path.join("~", ".cache", "jaxcnn")
    return os.path.abspath(os.path.expanduser(root))


def _archive_key(path: str) -> str:
    st = os.stat(path)
    ident = f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def archive_stem(path: str) -> str:
    """A file name without its .tar/.tar.gz/.tgz suffix (a dataset's default name)."""
    base = os.path.basename(path)
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def is_archive(path: str) -> bool:
    return os.path.isfile(path) and path.endswith((".tar.gz", ".tgz", ".tar"))


def extract_archive(path: str, cache_dir: str | None = None) -> str:
    """Extract a tar(.gz) once into the cache folder and return the extracted folder.

    A folder with the completion marker is reused as is; one without it (an interrupted
    extraction) is removed and extracted again.
    """
    if not os.path.isfile(path):
        raise DataError(f"{path}: archive not found")
    target = os.path.join(cache_root(cache_dir), "extracted", f"{archive_stem(path)}-{_archive_key(path)}")
    if os.path.isfile(os.path.join(target, _COMPLETE)):
        return target
    if os.path.isdir(target):
        shutil.rmtree(target)  # an earlier extraction did not finish
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(path) as tar:
            try:
                tar.extractall(tmp, filter="data")  # no absolute paths, no links out of tmp
            except TypeError:  # Python without extraction filters
                for m in tar.getmembers():
                    if m.name.startswith(("/", "..")) or ".." in m.name.split("/"):
                        raise DataError(f"{path}: unsafe path in archive: {m.name}")
                tar.extractall(tmp)
        with open(os.path.join(tmp, _COMPLETE), "w") as f:
            f.write(json.dumps({"archive": os.path.realpath(path)}) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not os.path.isfile(os.path.join(target, _COMPLETE)):
                raise
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: cannot extract archive: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _split_of(name: str) -> str | None:
    for split, aliases in SPLIT_NAMES.items():
        if name in aliases:
            return split
    return None


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def scan_folder(path: str):
    """`{split: {class: [file paths]}}` of a folder tree (single wrapper folders are descended)."""
    root = path
    while True:
        entries = [e for e in os.listdir(root) if not e.startswith(".")]
        dirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
        if any(_split_of(d) for d in dirs):
            break
        if len(dirs) == 1 and len(entries) == 1:
            root = os.path.join(root, dirs[0])
            continue
        raise DataError(f"{path}: expected split folders train/ and test/ holding one folder per class, "
                        f"found {sorted(entries)[:10]}")
    tree, ignored = {}, 0
    for d in sorted(os.listdir(root)):
        split = _split_of(d)
        if split is None or split in tree or not os.path.isdir(os.path.join(root, d)):
            continue
        tree[split] = {}
        for c in sorted(os.listdir(os.path.join(root, d))):
            cdir = os.path.join(root, d, c)
            if c.startswith(".") or not os.path.isdir(cdir):
                continue
            files = []
            for f in sorted(os.listdir(cdir)):
                fp = os.path.join(cdir, f)
                if f.startswith(".") or not os.path.isfile(fp):
                    continue
                if _is_image(f):
                    files.append((fp, fp))
                else:
                    ignored += 1
            tree[split][c] = files
    return tree, ignored


def scan_archive(path: str):
    """`{split: {class: [(member name, bytes)]}}` read from a tar(.gz) stream, nothing written."""
    tree, ignored = {}, 0
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tar:
                if not m.isfile():
                    continue
                parts = m.name.split("/")
                if len(parts) < 3 or parts[-1].startswith(".") or _split_of(parts[-3]) is None:
                    ignored += not parts[-1].startswith(".")
                    continue
                if not _is_image(parts[-1]):
                    ignored += 1
                    continue
                data = tar.extractfile(m).read()
                tree.setdefault(_split_of(parts[-3]), {}).setdefault(parts[-2], []).append(
                    (f"{path}:{m.name}", data))
    except (tarfile.TarError, EOFError, OSError, zlib_error) as e:
        raise DataError(f"{path}: cannot read archive: {e}") from e
    for classes in tree.values():
        for files in classes.values():
            files.sort(key=lambda t: t[0])
    return tree, ignored


try:
    from zlib import error as zlib_error
except ImportError:  # pragma: no cover
    zlib_error = OSError


class NothingDecodes(DataError):
    """None of the files given to `decode_images` decodes (and no image size was given)."""


def decode_images(sources: Sequence, image_size: tuple[int, int] | None = None,
                  channels: int | None = None, on_error: str = "skip", names: Sequence[str] | None = None,
                  notes: list | None = None, skipped: list | None = None):
    """Decode (and resize) images with TF into one uint8 NHWC array.

    `sources` are file paths, or the encoded bytes (then `names` label them in messages).
    `channels` (1, 3 or 4) converts every image; None takes the first image's (1 or 3).
    The names of files skipped go to `skipped` when given (the caller reports them once), else their
    message goes to `notes` when given, else it is issued as a warning.
    Returns `(images, kept, shapes)`: `kept` are the indices of the sources that decoded,
    `shapes` their original (height, width). Without `image_size`, images are resized to the
    first one's size and the caller checks `shapes`.
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    tf = import_tf()
    sources = list(sources)
    names = list(names) if names is not None else [str(s) for s in sources]
    from_bytes = bool(sources) and isinstance(sources[0], bytes)
    if channels is None or image_size is None:
        first = _first_decodable(tf, sources, from_bytes)
        if first is None:
            raise NothingDecodes(f"none of the {len(sources)} files decodes as an image "
                            f"(first: {names[0] if names else '-'})")
        if channels is None:
            channels = 1 if first.shape[-1] == 1 else 3
        if image_size is None:
            image_size = tuple(int(s) for s in first.shape[:2])
    h, w = image_size

    def load(i, src):
        data = src if from_bytes else tf.io.read_file(src)
        img = tf.io.decode_image(data, channels=channels, expand_animations=False)
        shape = tf.shape(img)[:2]
        same = tf.reduce_all(tf.equal(shape, tf.constant([h, w], tf.int32)))
        img = tf.cond(same, lambda: img,
                      lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(img, [h, w])), 0, 255), tf.uint8))
        return i, tf.ensure_shape(img, [h, w, channels]), shape

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(sources), dtype=np.int64),
                                             np.asarray(sources, dtype=object)))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors().batch(1024).prefetch(2)
    idx, imgs, shapes = [], [], []
    for i, img, shape in ds.as_numpy_iterator():
        idx.append(i), imgs.append(img), shapes.append(shape)
    kept = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    images = np.concatenate(imgs) if imgs else np.zeros((0, h, w, channels), np.uint8)
    shapes = np.concatenate(shapes) if shapes else np.zeros((0, 2), np.int32)
    failed = np.setdiff1d(np.arange(len(sources)), kept)
    if len(failed) and on_error == "raise":
        listed = ", ".join(names[i] for i in failed[:5])
        raise DataError(f"{len(failed)} file(s) could not be decoded as images: {listed}"
                        + (" ..." if len(failed) > 5 else ""))
    if len(failed):
        if skipped is not None:
            skipped.extend(names[i] for i in failed)
        elif notes is not None:
            notes.append(skipped_note([names[i] for i in failed]))
        else:
            warn_user(skipped_note([names[i] for i in failed]))
    return images, kept, shapes


def _first_decodable(tf, sources, from_bytes):
    for src in sources[:50]:
        try:
            data = tf.constant(src) if from_bytes else tf.io.read_file(src)
            return tf.io.decode_image(data, expand_animations=False).numpy()
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            continue
    return None


def _folder_key(root: str) -> str:
    """Identity of a folder tree: its files' paths, sizes and mtimes."""
    h = hashlib.sha256(os.path.realpath(root).encode())
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _load_npz(npz_path: str, name: str) -> Dataset | None:
    if not os.path.isfile(npz_path):
        return None
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            ds = Dataset(name, z["x_train"], z["y_train"], z["x_test"], z["y_test"],
                         tuple(str(c) for c in z["class_names"]))
            notes = [str(n) for n in z["warnings"]]
    except (OSError, ValueError, KeyError):
        os.remove(npz_path)  # a damaged cache file: decode again
        return None
    for msg in notes:  # the cache holds the arrays of a load that warned: so does this one
        warn_user(f"{msg} (cached: {npz_path})")
    return ds


def _select_classes(ds: Dataset, classes: Sequence[str]) -> Dataset:
    """Keep `classes`, relabelled 0.. in the order given (examples grouped in that order)."""
    out = {}
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        idx = np.concatenate([np.nonzero(y == ds.class_names.index(c))[0] for c in classes])
        labels = np.concatenate([np.full(int(np.sum(y == ds.class_names.index(c))), i, np.int32)
                                 for i, c in enumerate(classes)])
        out[split] = (x[idx], labels)
    return Dataset(ds.name, *out["train"], *out["test"], class_names=tuple(classes))


def load_image_folder(path: str, *, image_size: int | tuple[int, int] | None = None,
                      classes: Sequence[str] | None = None, color_mode: str | None = None,
                      channels: int | None = None, on_error: str = "skip", cache_dir: str | None = None,
                      use_cache: bool = True, extract: bool = False, name: str | None = None) -> Dataset:
    """A `split/class/image` tree (folder, or .tar/.tar.gz/.tgz of one) as a Dataset of uint8 NHWC.

    `image_size` (int or (height, width)) resizes every image; without it all images must share
    one size. `classes` keeps those classes, labelled 0.. in the order given. `color_mode`
    ("rgb" by default, "grayscale", "rgba", as Keras) sets the channels (3, 1, 4) and converts
    every image to it; `channels=1|3|4` says the same. `extract=True` extracts an archive once
    into the cache instead of streaming it. `use_cache=False` skips the .npz cache.
    `on_error="raise"` turns undecodable files and empty classes into errors (default: warnings).
    """
    by_channels = {v: k for k, v in COLOR_MODES.items()}
    if channels is not None and channels not in by_channels:
        raise ValueError(f"channels must be 1, 3 or 4, got {channels!r}")
    if color_mode is not None and color_mode not in COLOR_MODES:
        raise ValueError(f"color_mode must be one of {', '.join(COLOR_MODES)}, got {color_mode!r}")
    if channels is not None and color_mode is not None and COLOR_MODES[color_mode] != channels:
        raise ValueError(f"color_mode={color_mode!r} has {COLOR_MODES[color_mode]} channels, not {channels}")
    color_mode = color_mode or (by_channels[channels] if channels is not None else "rgb")
    channels = COLOR_MODES[color_mode]
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    path = os.path.expanduser(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: image folder or archive not found")
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    image_size = tuple(int(s) for s in image_size) if image_size is not None else None
    name = name or archive_stem(os.path.basename(os.path.normpath(path)))
    archive = is_archive(path)
    if not archive and not os.path.isdir(path):
        raise DataError(f"{path}: neither a folder nor a .tar/.tar.gz/.tgz archive")

    npz_path = None
    if use_cache:
        src = ("archive:" + _archive_key(path)) if archive else ("folder:" + _folder_key(path))

        def npz_for(subset):
            options = dict(v=_CACHE_VERSION, image_size=image_size, classes=list(subset) if subset else None,
                           color_mode=color_mode, on_error=on_error)
            key = hashlib.sha256((src + json.dumps(options, sort_keys=True)).encode()).hexdigest()[:16]
            return os.path.join(cache_root(cache_dir), "arrays", f"{name}-{key}.npz")

        npz_path = npz_for(classes)
        cached = _load_npz(npz_path, name)
        if cached is None and classes:
            full = _load_npz(npz_for(None), name)  # a subset of the cached whole dataset
            if full is not None and all(c in full.class_names for c in classes):
                return _select_classes(full, classes)
        if cached is not None:
            return cached

    if archive and not extract:
        tree, ignored = scan_archive(path)
    else:
        tree, ignored = scan_folder(extract_archive(path, cache_dir) if archive else path)
    for split in ("train", "test"):
        if split not in tree:
            raise DataError(f"{path}: no {split} split folder (one of {', '.join(SPLIT_NAMES[split])})")
    all_classes = sorted(tree["train"])
    if not all_classes:
        raise DataError(f"{path}: no class folders in the train split")
    unknown = sorted(set(tree["test"]) - set(all_classes))
    if unknown:
        raise DataError(f"{path}: test class folders {unknown} are not in the train split")
    if classes:
        missing = [c for c in classes if c not in all_classes]
        if missing:
            raise DataError(f"{path}: no class folder(s) {missing}; classes: {all_classes}")
        class_names = list(classes)
    else:
        class_names = all_classes
    label_of = {c: i for i, c in enumerate(class_names)}

    arrays, resize, notes, skipped = {}, image_size is not None, [], []
    for split in ("train", "test"):
        entries = [(n, s, label_of[c]) for c in class_names for n, s in tree[split].get(c, [])]
        if not entries:
            raise DataError(f"{path}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the {split} split")
        names, sources, labels = zip(*entries)
        images, kept, shapes = decode_images(sources, image_size, channels, on_error, names, skipped=skipped)
        if not resize:
            want = images.shape[1:3]
            bad = np.nonzero(np.any(shapes != np.asarray(want), axis=1))[0]
            if len(bad):
                got = tuple(int(v) for v in shapes[bad[0]])  # plain integers in the message
                raise DataError(f"{names[kept[bad[0]]]}: image size {got} differs from "
                                f"{tuple(int(v) for v in want)}; pass image_size= to resize")
            image_size = tuple(int(s) for s in want)
        y = np.asarray(labels, np.int32)[kept]
        check_arrays(images, y, len(class_names), f"{path} ({split})")
        empty = [c for c in class_names if not np.any(y == label_of[c])]
        if empty:
            msg = (f"{path}: no images of class(es) {', '.join(map(repr, empty))} in the {split} split "
                   "(empty or missing folder, or every file skipped)")
            if on_error == "raise":
                raise DataError(msg)
            notes.append(msg)
        arrays[split] = (images, y)
    if skipped:  # one message for both splits, every file named (or listed in a file)
        listing = (npz_path[:-len(".npz")] if npz_path else os.path.join(
            cache_root(cache_dir), "skipped", f"{name}-{hashlib.sha256(repr(skipped).encode()).hexdigest()[:16]}"))
        notes.insert(0, f"{path}: {skipped_note(skipped, listing + '.skipped.txt')}")
    if ignored:
        notes.append(f"{path}: ignored {ignored} file(s) without an image extension")
    for msg in notes:
        warn_user(msg)
    ds = Dataset(name, *arrays["train"], *arrays["test"], class_names=tuple(class_names))
    if npz_path:
        os.makedirs(os.path.dirname(npz_path), exist_ok=True)
        tmp = f"{npz_path}.tmp-{os.getpid()}.npz"
        np.savez(tmp, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test,
                 class_names=np.asarray(ds.class_names), warnings=np.asarray(notes, dtype=str))
        os.replace(tmp, npz_path)
    return ds


@register_source("image_folder", "PATH")
def _load_image_folder_source(path: str, data_dir: str | None = None, **kwargs) -> Dataset:
    """`image_folder:PATH`: the path is taken as given (not under the data directory)."""
    return load_image_folder(path, **kwargs)


@register_dataset("cifar10")
def load_cifar10(data_dir: str | None = None, *, image_size=None, classes=None,
                 cache_dir: str | None = None, **kwargs) -> Dataset:
    """CIFAR-10 (JPEG copy): `cifar10-jpeg/cifar10-jpeg.tar.gz`, 50,000 train + 10,000 test, 32x32x3."""
    archive = os.path.join(dataset_dir("cifar10-jpeg", data_dir), "cifar10-jpeg.tar.gz")
    return load_image_folder(archive, image_size=image_size, classes=classes, cache_dir=cache_dir,
                             name="cifar10", **kwargs)


def resize_images(images: np.ndarray, size, batch_size: int = 256) -> np.ndarray:
    """Resize an NHWC array (bilinear), batch by batch in tf.data: uint8 rounded back to uint8 as the
    loader does, floats (spectrograms) kept as float32."""
    tf = import_tf()
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    is_uint8 = images.dtype == np.uint8
    out_dtype = np.uint8 if is_uint8 else np.float32

    def resize(x):
        x = tf.image.resize(x, [h, w])
        return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8) if is_uint8 else x

    if not len(images):
        return np.zeros((0, h, w, images.shape[-1]), out_dtype)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size).map(
        resize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return np.concatenate(list(ds.as_numpy_iterator()))
