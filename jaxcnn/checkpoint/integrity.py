"""Checksums of a checkpoint's files: written inside Orbax's atomic commit, checked before a restore.

Each step's folder holds `jaxcnn_checksums.json`: the sha256 of every file in it (but Orbax's
commit bookkeeping) and of the record itself, so any flipped bit, truncated or lost file is found
before the arrays are read, and the restore can fall back to the previous checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os

CHECKSUMS_FILE = "jaxcnn_checksums.json"  # in each step's folder: sha256 of every other file in it
# Orbax's commit bookkeeping in a step's folder, rewritten as the folder is renamed (timestamps):
# not covered. Everything the restore reads (state/, loop/, metrics/) is.
_UNCHECKED = (CHECKSUMS_FILE, "_CHECKPOINT_METADATA", "commit_success.txt")


class Corrupt(Exception):
    """This checkpoint's bytes are not what was written (internal: `restore_latest` falls back)."""


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _raise(e: OSError):
    raise e


def file_checksums(root: str) -> dict[str, str]:
    """`{relative path: sha256}` of every file under `root` but the checksum record and Orbax's
    commit bookkeeping at its top.

    Reads every byte, so an unreadable file raises its OSError here, before any restore starts.
    """
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel not in _UNCHECKED:
                out[rel] = _sha256(path)
    return out


def _record_digest(files: dict) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def write_checksums(root: str) -> None:
    """Write `root/jaxcnn_checksums.json`: the sha256 of every file under `root`."""
    files = file_checksums(root)
    record = {"algorithm": "sha256", "files": files, "record_sha256": _record_digest(files)}
    with open(os.path.join(root, CHECKSUMS_FILE), "w") as f:
        json.dump(record, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _what(rel: str) -> str:
    """What a file in a step's (or a weights) folder holds, for messages."""
    if rel.startswith(("state/", "variables/")) and "/d/" in rel:
        return "array data"
    if rel.startswith(("state/", "variables/")):
        return "array metadata"
    if rel.startswith("loop/"):
        return "loop state"
    if rel == "meta.json":
        return "weights metadata"
    return "checkpoint metadata"


def verify_checksums(root: str) -> bool:
    """Check every file of a step's folder against its checksum record.

    Returns False when there is no record (a checkpoint from an older jaxcnn). Raises OSError when
    a file cannot be read and `Corrupt` (naming the file) when one is missing or differs.
    """
    digests = file_checksums(root)
    path = os.path.join(root, CHECKSUMS_FILE)
    if not os.path.exists(path):
        return False
    with open(path, "rb") as f:
        raw = f.read()
    try:
        record = json.loads(raw)
        files = record["files"]
        ok = (isinstance(files, dict) and all(isinstance(v, str) for v in files.values())
              and _record_digest(files) == record["record_sha256"])
    except (ValueError, KeyError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        ok = False
    if not ok:
        raise Corrupt(f"its checksum record {CHECKSUMS_FILE} is damaged")
    for rel, digest in sorted(files.items()):
        if rel not in digests:
            raise Corrupt(f"{rel} ({_what(rel)}) is missing")
        if digests[rel] != digest:
            raise Corrupt(f"{rel} ({_what(rel)}) does not match its checksum")
    return True


def file_record_path(path: str) -> str:
    """Where a single file's checksum record lives: beside it, `NAME.jaxcnn_checksums.json`."""
    return f"{path}.{CHECKSUMS_FILE}"


def write_file_checksum(path: str) -> None:
    """Write the sha256 of one file (an exported model) to its record beside it."""
    files = {os.path.basename(path): _sha256(path)}
    record = {"algorithm": "sha256", "files": files, "record_sha256": _record_digest(files)}
    with open(file_record_path(path), "w") as f:
        json.dump(record, f, indent=0, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def verify_file_checksum(path: str) -> bool:
    """Check one file against its record beside it: False when there is none, `Corrupt` when the
    file or the record differs from what was written."""
    record_path = file_record_path(path)
    if not os.path.exists(record_path):
        return False
    try:
        with open(record_path, "rb") as f:
            record = json.loads(f.read())
        files = record["files"]
        ok = _record_digest(files) == record["record_sha256"] and list(files) == [os.path.basename(path)]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise Corrupt(f"its checksum record {os.path.basename(record_path)} is damaged")
    if _sha256(path) != files[os.path.basename(path)]:
        raise Corrupt(f"{os.path.basename(path)} does not match its checksum")
    return True
