"""A Keras-style model summary: layer, output shape, parameters, FLOPs (per example).

    print(model_summary(get_model("mnist_cnn"), (28, 28, 1)))   # or trainer.summary()

Parameter counts are Keras' (BatchNorm's moving mean and variance count as non-trainable);
FLOPs are XLA's cost analysis of each layer's forward pass for one example.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _shape(tree) -> str:
    leaves = jax.tree.leaves(tree)
    if len(leaves) == 1 and hasattr(leaves[0], "shape"):
        return str((None, *leaves[0].shape[1:])).replace("None,)", "None)")
    return ", ".join(str((None, *leaf.shape[1:])) for leaf in leaves if hasattr(leaf, "shape"))


def summary_rows(model, input_shape, depth: int = 1, flops: bool = True) -> list[dict]:
    """One dict per layer (to `depth` levels): name, type, output shape, params, non-trainable, FLOPs."""
    from flax.linen import summary as flax_summary

    table = flax_summary._get_module_table(model, depth=depth, show_repeated=False, compute_flops=flops,
                                           compute_vjp_flops=False)
    rows = table({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                 jnp.zeros((1, *input_shape), jnp.float32), train=False)
    out = []
    for row in rows:
        sizes = row.size_and_bytes(["params", "batch_stats"])
        out.append({"name": "/".join(row.path) or "(model)", "type": type(row.module_copy).__name__,
                    "output_shape": _shape(row.outputs), "params": sizes["params"][0],
                    "non_trainable": sizes["batch_stats"][0], "flops": int(row.flops or 0)})
    return out


def model_summary(model, input_shape, depth: int = 1, flops: bool = True) -> str:
    """The summary as text (a table, then totals as Keras prints them); `flops=False` is faster."""
    if getattr(model, "api", None) == "nnx":  # a flax.nnx model: NNX's own table (jaxcnn.nnx)
        return model.summary(input_shape, depth=depth, flops=flops)
    rows = summary_rows(model, input_shape, depth, flops)
    total, layers = rows[0], rows[1:]
    header = ("Layer (type)", "Output Shape", "Param #", "FLOPs")[: 4 if flops else 3]
    body = [(f"{r['name']} ({r['type']})", r["output_shape"], f"{r['params'] + r['non_trainable']:,}",
             f"{r['flops']:,}")[: 4 if flops else 3] for r in layers]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "-" * len(line(header))
    trainable = sum(r["params"] for r in layers) + total["params"]
    frozen = sum(r["non_trainable"] for r in layers) + total["non_trainable"]
    lines = [f"Model: {type(model).__name__}, input {(None, *input_shape)}", rule, line(header), rule,
             *map(line, body), rule,
             f"Total params: {trainable + frozen:,}", f"Trainable params: {trainable:,}",
             f"Non-trainable params: {frozen:,}"]
    if flops:
        lines.append(f"FLOPs per example (forward): {total['flops']:,}")
    return "\n".join(lines)


def count_params(variables) -> tuple[int, int]:
    """(trainable, non-trainable) element counts of a variables dict."""
    size = lambda t: int(sum(np.size(x) for x in jax.tree.leaves(t)))  # noqa: E731
    return size(variables.get("params", {})), size(variables.get("batch_stats", {}))
