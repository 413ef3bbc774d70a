"""The prepared folder's on-disk format: file names, options, the manifest read back, checksums.

`manifest.json` (written last by `writer`) names the format and version, the class names, image
shape and dtype, and per split its example count and per file its record count, size and sha256.
"""

from __future__ import annotations

import hashlib
import json
import os

from jaxcnn.data.errors import DataError

FORMAT = "jaxcnn-array-record"
VERSION = 1
MANIFEST = "manifest.json"
PROGRESS_DIR = ".prepare"
SPLITS = ("train", "test")
WRITER_OPTIONS = "group_size:1"  # one record per chunk: cheap random access
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # random access (the library's advice)
RECORD_DTYPES = ("uint8", "float16", "float32")  # float64 is stored as float32 (what training uses)


def array_record_module():
    """The `array_record` package's module (an optional dependency, imported when first needed)."""
    try:
        from array_record.python import array_record_module as module
    except ImportError as e:  # pragma: no cover - an optional dependency
        raise DataError("prepared datasets need the array_record package: pip install array_record") from e
    return module


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """The file's sha256 (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: str) -> dict:
    """The manifest of prepared folder `root`, checked; a DataError says what is wrong (or unfinished)."""
    path = os.path.join(root, MANIFEST)
    if not os.path.isdir(root):
        raise DataError(f"{root}: prepared dataset folder not found")
    if not os.path.isfile(path):
        unfinished = os.path.isdir(os.path.join(root, PROGRESS_DIR))
        raise DataError(f"{path}: not found: " + ("the preparation did not finish; run `jaxcnn prepare` again "
                                                  "with the same arguments to complete it" if unfinished
                                                  else "not a prepared dataset (see `jaxcnn prepare`)"))
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf8"))
    except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError, JSONDecodeError: ValueErrors
        raise DataError(f"{path}: unreadable manifest: {type(e).__name__}: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataError(f"{path}: not a jaxcnn prepared-dataset manifest (format {found!r})")
    version = manifest.get("version", 0)
    if not _is_int(version):
        raise DataError(f"{path}: damaged manifest: version {version!r} is not a number")
    if version > VERSION:
        raise DataError(f"{path}: written by a newer jaxcnn (version {manifest['version']} > {VERSION})")
    problem = _manifest_problem(manifest)
    if problem:
        raise DataError(f"{path}: damaged manifest: {problem}; prepare the dataset again")
    return manifest


def _is_int(v, low: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_name(v) -> bool:
    """A plain file name in the folder (no folder part: the manifest names nothing outside it)."""
    return isinstance(v, str) and v not in ("", ".", "..") and "/" not in v and "\\" not in v and "\0" not in v


def _manifest_problem(m: dict) -> str | None:
    """What is wrong with a manifest's structure (every field a reader uses), or None."""
    if not (isinstance(m.get("class_names"), list) and m["class_names"]
            and all(isinstance(c, str) for c in m["class_names"])):
        return "class_names is not a list of names"
    shape = m.get("image_shape")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_is_int(s, 1) for s in shape)):
        return f"image_shape {shape!r} is not [height, width, channels]"
    if m.get("dtype", "uint8") not in RECORD_DTYPES:
        return f"dtype {m.get('dtype')!r} is not one of {', '.join(RECORD_DTYPES)}"
    if "name" in m and not isinstance(m["name"], (str, type(None))):
        return "name is not a string"
    splits = m.get("splits")
    if not isinstance(splits, dict):
        return "splits is not a mapping"
    for split, info in splits.items():
        if not isinstance(info, dict) or not _is_int(info.get("num_examples")):
            return f"split {split!r} has no example count"
        files, labels = info.get("files"), info.get("labels")
        if not isinstance(files, list) or not all(
                isinstance(f, dict) and _is_name(f.get("path")) and _is_int(f.get("num_records"))
                and _is_int(f.get("bytes")) and isinstance(f.get("sha256"), str) for f in files):
            return f"split {split!r}: its files are not listed as path, num_records, bytes, sha256"
        if not (isinstance(labels, dict) and _is_name(labels.get("path")) and isinstance(labels.get("sha256"), str)):
            return f"split {split!r}: its labels file is not listed as path, sha256"
    return None
