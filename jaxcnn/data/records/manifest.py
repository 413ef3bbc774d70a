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
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable manifest: {e}") from e
    if manifest.get("format") != FORMAT:
        raise DataError(f"{path}: not a jaxcnn prepared-dataset manifest (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > VERSION:
        raise DataError(f"{path}: written by a newer jaxcnn (version {manifest['version']} > {VERSION})")
    return manifest
