"""NNX state <-> the linen variables dict the pure step uses ({'params': ..., 'batch_stats': ...}).

An `nnx.Module`'s `nnx.Param`s become `variables['params']` and its `nnx.BatchStat`s
`variables['batch_stats']`, nested by attribute path with string keys (a list's index 0 becomes
"0", so checkpoints and optax see plain dicts). Layers named as in the linen network (`conv1`,
`bn1`, ...) give exactly the linen layout: nnx.Conv/Linear hold `kernel`/`bias`, nnx.BatchNorm
`scale`/`bias` and `mean`/`var`, as linen's do. RNG state is not carried (the adapter reseeds it
from the step's dropout key); any other variable type is refused with the fix.

    variables = variables_of(module)         # nnx -> linen layout (arrays shared, not copied)
    load_variables(module, linen_variables)  # linen layout -> the module, in place, shapes checked
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx

COLLECTIONS = {"params": nnx.Param, "batch_stats": nnx.BatchStat}


def _key(part) -> str:
    return str(part)


def state_to_dict(state: nnx.State) -> dict:
    """A State's values as nested dicts with string keys (the linen layout)."""
    out: dict = {}
    for path, var in nnx.to_flat_state(state):
        node = out
        for part in path[:-1]:
            node = node.setdefault(_key(part), {})
        node[_key(path[-1])] = var.get_value()
    return out


def _lookup(tree, path):
    node = tree
    for part in path:
        if not isinstance(node, dict) and not hasattr(node, "keys"):
            raise KeyError(path)
        node = node[_key(part)]
    return node


def dict_to_state(template: nnx.State, values, what: str = "variables") -> nnx.State:
    """A new State shaped like `template` with the leaves of the nested dict `values`.

    Every leaf of the template must be in `values` with the template's shape; extra leaves are
    an error too (a layout mismatch is a wrong model, not something to skip).
    """
    out, missing, wrong = [], [], []
    for path, var in nnx.to_flat_state(template):
        name = "/".join(map(_key, path))
        try:
            value = _lookup(values, path)
        except (KeyError, TypeError):
            missing.append(name)
            continue
        want = tuple(var.get_value().shape)
        if tuple(jnp.shape(value)) != want:
            wrong.append(f"{name}: shape {tuple(jnp.shape(value))}, the module has {want}")
            continue
        out.append((path, var.replace(value)))
    extra = sorted(set(_flat_names(values)) - {"/".join(map(_key, p)) for p, _ in nnx.to_flat_state(template)})
    if missing or wrong or extra:
        lines = ([f"{n}: missing" for n in missing] + wrong + [f"{n}: not in the module" for n in extra])
        raise ValueError(f"{what} do not fit the NNX module:\n  " + "\n  ".join(lines[:10])
                         + (f"\n  ... and {len(lines) - 10} more" if len(lines) > 10 else ""))
    return nnx.from_flat_state(out)


def _flat_names(tree, prefix="") -> list[str]:
    if not hasattr(tree, "keys"):
        return [prefix[:-1]]
    names = []
    for k in tree.keys():
        names += _flat_names(tree[k], f"{prefix}{k}/")
    return names


def split_module(module: nnx.Module):
    """(graphdef, params State, batch_stats State, rng State) of `module`.

    Raises TypeError for a variable that is neither Param, BatchStat nor RNG state: the pure
    step carries only parameters and statistics between steps.
    """
    graphdef, params, stats, rng, rest = nnx.split(module, nnx.Param, nnx.BatchStat, nnx.RngState, ...)
    others = [(path, type(var).__name__) for path, var in nnx.to_flat_state(rest)]
    if others:
        listed = ", ".join(f"{'/'.join(map(_key, p))} ({t})" for p, t in others[:5])
        raise TypeError(f"{type(module).__name__}: variables {listed} are neither nnx.Param nor nnx.BatchStat. "
                        "jaxcnn's train step carries parameters and statistics only: make trained values "
                        "nnx.Param, running statistics nnx.BatchStat (or a subclass), and compute the rest.")
    return graphdef, params, stats, rng


def variables_of(module: nnx.Module) -> dict[str, Any]:
    """The module's parameters and BatchNorm statistics as linen variables (the arrays themselves)."""
    _, params, stats, _ = split_module(module)
    variables = {"params": state_to_dict(params)}
    if nnx.to_flat_state(stats):
        variables["batch_stats"] = state_to_dict(stats)
    return variables


def load_variables(module: nnx.Module, variables) -> nnx.Module:
    """Put linen-layout `variables` (e.g. the linen network's, or a checkpoint's) into `module`.

    In place, and returned. Every parameter and statistic of the module must be given, with its
    shape; a missing, extra or misshapen leaf raises ValueError naming it.
    """
    _, params, stats, _ = split_module(module)
    updates = [dict_to_state(params, variables.get("params", {}), "params")]
    if nnx.to_flat_state(stats):
        updates.append(dict_to_state(stats, variables.get("batch_stats", {}), "batch_stats"))
    elif variables.get("batch_stats"):
        raise ValueError("batch_stats given, but the NNX module has no nnx.BatchStat variables")
    nnx.update(module, *updates)
    return module
