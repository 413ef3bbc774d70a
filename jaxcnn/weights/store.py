"""Save and restore converted weights (a Flax variables tree) as an Orbax checkpoint.

Layout of `path`: `variables/` (Orbax StandardCheckpointer) and `meta.json` (arch, include_top,
num_classes, source file). Self-contained: training checkpoints live in `jaxcnn.checkpoint`.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

_VARS, _META = "variables", "meta.json"


def _drop_empty(tree):
    if isinstance(tree, dict):
        out = {k: _drop_empty(v) for k, v in tree.items()}
        return {k: v for k, v in out.items() if not (isinstance(v, dict) and not v)}
    return tree


def save_variables(path, tree: dict[str, Any], metadata: dict | None = None,
                   overwrite: bool = True) -> str:
    """Write `tree` (e.g. {"params", "batch_stats"}) under `path`; returns the absolute path.

    Empty collections (VGG16's batch_stats) are not stored; `restore_variables` puts them back.
    """
    import jax
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        if not overwrite:
            raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
        if not os.path.isdir(path):
            raise NotADirectoryError(f"{path} exists and is not a directory")
        if os.path.exists(os.path.join(path, _VARS)):
            shutil.rmtree(os.path.join(path, _VARS))
    os.makedirs(path, exist_ok=True)
    tree = jax.tree.map(np.asarray, _drop_empty(dict(tree)))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(os.path.join(path, _VARS), tree)
        ckpt.wait_until_finished()
    with open(os.path.join(path, _META), "w") as f:
        json.dump({"format": "jaxcnn-variables-1", "collections": sorted(tree), **(metadata or {})},
                  f, indent=1)
    return path


def read_metadata(path) -> dict:
    """The `meta.json` written by `save_variables` ({} when absent)."""
    meta = os.path.join(os.fspath(path), _META)
    if not os.path.exists(meta):
        return {}
    with open(meta) as f:
        return json.load(f)


def restore_variables(path) -> dict[str, Any]:
    """The tree saved by `save_variables` as numpy arrays, with "params" and "batch_stats" always present."""
    import jax
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    ckpt_dir = os.path.join(path, _VARS)
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(f"no converted weights at {path} (expected {ckpt_dir}/; "
                                f"create them with `jaxcnn convert-weights`)")
    with ocp.StandardCheckpointer() as ckpt:
        tree = ckpt.restore(ckpt_dir)
    tree = jax.tree.map(np.asarray, dict(tree))
    tree.setdefault("params", {})
    tree.setdefault("batch_stats", {})
    return tree
