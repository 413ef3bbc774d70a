"""Leaf names and shapes of a tree, and the lines that say where a checkpoint and a model differ.

(`jaxcnn.testing.tree_differences` compares values with tolerances; this compares shapes.)
"""

from __future__ import annotations

import jax
import numpy as np

from jaxcnn.checkpoint.errors import CheckpointMismatchError


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def tree_shapes(tree) -> dict[str, tuple]:
    """`{"params/conv1/kernel": shape}` for every leaf (dict keys, attributes and indices alike)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(_key_name(k) for k in path): tuple(np.shape(leaf) if not hasattr(leaf, "shape")
                                                         else leaf.shape) for path, leaf in leaves}


def shape_differences(saved: dict[str, tuple], expected: dict[str, tuple], limit: int = 20) -> list[str]:
    """Lines naming leaves missing on either side or of different shapes (at most `limit`)."""
    lines = []
    for name in sorted(set(saved) | set(expected)):
        if name not in saved:
            lines.append(f"  {name}: model {expected[name]}, not in checkpoint")
        elif name not in expected:
            lines.append(f"  {name}: checkpoint {saved[name]}, not in model")
        elif tuple(saved[name]) != tuple(expected[name]):
            lines.append(f"  {name}: checkpoint {saved[name]} vs model {expected[name]}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"  ... and {len(lines) - limit} more"]
    return lines


def check_shapes(where: str, saved: dict, expected: dict, what: str, hint: str = "") -> None:
    """Raise CheckpointMismatchError listing the differences between two `tree_shapes`, if any."""
    diffs = shape_differences(saved, expected)
    if diffs:
        raise CheckpointMismatchError(f"{where}: the checkpoint's {what} do not match the model's "
                                      f"({len(diffs)} differences):\n" + "\n".join(diffs) + hint)
