"""Weights folders: one format for a run's final weights (`workdir/params`) and converted weights.

Layout of a weights folder:

    variables/    an Orbax checkpoint (StandardCheckpointer) of the Flax variables tree,
                  e.g. {"params", "batch_stats"}; empty collections are not stored
    meta.json     {"format": "jaxcnn-variables-1", "collections": [...], ...metadata}
    jaxcnn_checksums.json   sha256 of every file above, checked before every restore

`save_variables` / `restore_variables` take any variables tree; `save_params` / `restore_params`
are the same folder seen as `{"params", "batch_stats"}`. Folders of the older `save_params`
layout (the Orbax checkpoint at the folder's top, no meta.json) and folders written before
checksums are read too, unverified.
Whole training runs (optimizer state, position) are checkpoints: see `jaxcnn.checkpoint.manager`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from jaxcnn.checkpoint.errors import CheckpointCorruptError
from jaxcnn.checkpoint.integrity import Corrupt, verify_checksums, write_checksums

FORMAT = "jaxcnn-variables-1"
_VARS, _META = "variables", "meta.json"
_ORBAX_MARK = "_CHECKPOINT_METADATA"  # at the top of a folder Orbax wrote (older `save_params`)


def _drop_empty(tree):
    if isinstance(tree, dict):
        out = {k: _drop_empty(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if not (isinstance(v, dict) and not v)}
    return tree


def _older_layout(path: str) -> bool:
    """Whether `path` is a weights folder of the older layout (Orbax's files at its top)."""
    return (os.path.isfile(os.path.join(path, _ORBAX_MARK)) and not os.path.isdir(os.path.join(path, _VARS))
            and not os.path.isdir(os.path.join(path, "state")))


def weights_dir(path) -> str | None:
    """The Orbax checkpoint inside weights folder `path` (`variables/`, or `path` itself for the
    older layout); None when `path` is no weights folder (e.g. a run's checkpoint folder)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(os.path.join(path, _VARS)):
        return os.path.join(path, _VARS)
    return path if _older_layout(path) else None


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def save_variables(path, tree: dict[str, Any], metadata: dict | None = None,
                   overwrite: bool = True) -> str:
    """Write `tree` (e.g. {"params", "batch_stats"}) under `path`; returns the absolute path.

    Empty collections (VGG16's batch_stats) are not stored; `restore_variables` puts them back.
    `metadata` (JSON-able) goes into meta.json. All processes call it; process 0 writes meta.json.
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        if not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
        if not os.path.isdir(path):
            raise NotADirectoryError(f"{path} exists and is not a directory")
        if _older_layout(path):  # replaced whole, as the older `save_params` did
            if jax.process_index() == 0:
                shutil.rmtree(path)
            _sync(f"jaxcnn_weights_clear_{path}")
    os.makedirs(path, exist_ok=True)
    tree = jax.tree.map(np.asarray, _drop_empty(dict(tree)))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(path, _VARS), tree, force=True)
        ckpt.wait_until_finished()
    if jax.process_index() == 0:
        tmp = os.path.join(path, _META + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"format": FORMAT, "collections": sorted(tree), **(metadata or {})}, f, indent=1)
        os.replace(tmp, os.path.join(path, _META))
        write_checksums(path)
    _sync(f"jaxcnn_weights_saved_{path}")
    return path


def read_metadata(path) -> dict:
    """The `meta.json` written by `save_variables` ({} when absent)."""
    meta = os.path.join(os.fspath(path), _META)
    if not os.path.exists(meta):
        return {}
    with open(meta, "rb") as f:
        raw = f.read()
    try:
        value = json.loads(raw.decode("utf8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError; deep nesting
        raise CheckpointCorruptError(f"{meta}: unreadable weights metadata ({type(e).__name__}: {e}): the "
                                     "weights folder is damaged; write it again") from None
    if not isinstance(value, dict):
        raise CheckpointCorruptError(f"{meta}: the weights metadata is a JSON {type(value).__name__}, not an "
                                     "object: the weights folder is damaged; write it again")
    return value


def _check_bytes(path: str) -> None:
    """CheckpointCorruptError naming the file when a weights folder's bytes are not what was
    written (a folder without a checksum record, from before them, passes unverified)."""
    try:
        verify_checksums(path)
    except Corrupt as e:
        raise CheckpointCorruptError(f"{path}: the weights folder is corrupt: {e}") from None


def _restore(src: str, like=None, empties_dropped: bool = True) -> dict[str, Any]:
    """The tree in Orbax checkpoint `src` as numpy arrays, "params" and "batch_stats" always present.

    `like` (a tree of arrays) fixes the structure and dtypes of what is read; `empties_dropped`:
    `src` was written without empty collections (this layout; the older one kept them).
    """
    with ocp.StandardCheckpointer() as ckpt:
        if like is None:
            tree = ckpt.restore(src)
        else:
            target = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), dict(like))
            if empties_dropped:
                target = _drop_empty(target)
            tree = ckpt.restore(src, target)
    tree = jax.tree.map(np.asarray, dict(tree))
    tree.setdefault("params", {})
    tree.setdefault("batch_stats", {})
    return tree


def restore_variables(path, like=None) -> dict[str, Any]:
    """The tree saved by `save_variables` as numpy arrays, with "params" and "batch_stats" always present."""
    path = os.path.abspath(os.fspath(path))
    src = weights_dir(path)
    if src is None:
        raise FileNotFoundError(f"no converted weights at {path} (expected {os.path.join(path, _VARS)}/; "
                                f"create them with `jaxcnn convert-weights`)")
    _check_bytes(path)
    return _restore(src, like, empties_dropped=not _older_layout(path))


def save_params(path: str, params, batch_stats=None, metadata: dict | None = None) -> str:
    """Save `{"params", "batch_stats"}` as a weights folder at `path` (replaced if present)."""
    return save_variables(path, {"params": params, "batch_stats": batch_stats or {}}, metadata=metadata)


def restore_params(path: str, like=None) -> dict:
    """Restore `{"params", "batch_stats"}` from `path`; `like` (a tree of arrays) fixes structure."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no checkpoint directory")
    src = weights_dir(path)
    if src is None:
        raise FileNotFoundError(f"{path}: no weights folder (expected {os.path.join(path, _VARS)}/)")
    _check_bytes(path)
    return _restore(src, like, empties_dropped=not _older_layout(path))
