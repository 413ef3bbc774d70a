"""Orbax checkpoints behind one module: final parameters of a run, for inference and transfer."""

from __future__ import annotations

import os

import jax
import numpy as np


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def save_params(path: str, params, batch_stats=None) -> None:
    """Save `{"params", "batch_stats"}` as an Orbax checkpoint at `path` (replaced if present)."""
    path = os.path.abspath(path)
    tree = {"params": jax.device_get(params), "batch_stats": jax.device_get(batch_stats or {})}
    ckptr = _checkpointer()
    ckptr.save(path, tree, force=True)
    ckptr.wait_until_finished()


def restore_params(path: str, like=None) -> dict:
    """Restore `{"params", "batch_stats"}` from `path`; `like` (a tree of arrays) fixes structure."""
    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no checkpoint directory")
    ckptr = _checkpointer()
    if like is None:
        return ckptr.restore(path)
    target = jax.tree.map(lambda x: np.zeros(np.shape(x), np.asarray(x).dtype), like)
    return ckptr.restore(path, target)
