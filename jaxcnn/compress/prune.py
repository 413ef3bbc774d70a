"""Magnitude pruning as an optax transformation (google-research jaxpruner's idea, written small).

    tx = prune(optax.adam(1e-3), PolynomialDecay(0.0, 0.8, begin_step=0, end_step=1000))
    state = TrainState.create(..., tx=tx)        # any loop that calls tx.update(g, s, params)
    plain = strip(state.params, state.opt_state) # plain params, pruned weights exactly 0

The schedules are Keras tfmot's (`ConstantSparsity`, `PolynomialDecay`: begin/end step, every
`frequency` steps; the step is the number of updates made before this one) and the mask is
tfmot's too: at a pruning turn a kernel keeps the `round(size * (1 - sparsity))` weights of
largest magnitude (ties kept), per layer or over all kernels at once (`scope="global"`), or the
`n` largest of every `m` consecutive weights along the reduced axis (`nm=(2, 4)`, structured).

Everything lives in the optimizer state (`PruneState`: step count, masks, the inner state), so
checkpoints hold the masks and a resumed run continues bitwise. The update of a kept weight is
the inner optimizer's, unchanged; a pruned weight's update is `-param`, so it becomes (and stays)
exactly 0; gradients of pruned weights are zeroed before the inner optimizer sees them, so its
moments do not grow behind the mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.compress.spec import parse_prune_spec


# -- schedules (tfmot's) ---------------------------------------------------------------------------
def _should_prune(step, begin_step: int, end_step: int, frequency: int):
    in_range = (step >= begin_step) & ((step <= end_step) | (end_step < 0))
    return in_range & ((step - begin_step) % frequency == 0)


@dataclasses.dataclass(frozen=True)
class ConstantSparsity:
    """`target_sparsity` at every `frequency`-th step from `begin_step` to `end_step` (-1: forever)."""

    target_sparsity: float
    begin_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def __post_init__(self):
        _check_schedule(self, self.target_sparsity)

    def __call__(self, step):
        """`(prune at this step?, sparsity)`, as tfmot's `PruningSchedule.__call__`."""
        return (_should_prune(step, self.begin_step, self.end_step, self.frequency),
                jnp.float32(self.target_sparsity))


@dataclasses.dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity rising from `initial_sparsity` to `final_sparsity` between `begin_step` and
    `end_step` as `final + (initial - final) * (1 - p) ** power` (fast first, then plateauing)."""

    initial_sparsity: float
    final_sparsity: float
    begin_step: int
    end_step: int
    power: float = 3.0
    frequency: int = 100

    def __post_init__(self):
        _check_schedule(self, self.final_sparsity, self.initial_sparsity)
        if self.end_step <= self.begin_step:
            raise ValueError(f"PolynomialDecay: end_step ({self.end_step}) must be after begin_step "
                             f"({self.begin_step})")

    def __call__(self, step):
        p = jnp.clip((jnp.asarray(step, jnp.float32) - self.begin_step) / (self.end_step - self.begin_step),
                     0.0, 1.0)
        sparsity = (self.initial_sparsity - self.final_sparsity) * (1.0 - p) ** self.power + self.final_sparsity
        return _should_prune(step, self.begin_step, self.end_step, self.frequency), sparsity.astype(jnp.float32)


def _check_schedule(schedule, *sparsities) -> None:
    name = type(schedule).__name__
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise ValueError(f"{name}: sparsity must be in [0, 1), got {s}")
    if schedule.frequency < 1 or schedule.begin_step < 0:
        raise ValueError(f"{name}: frequency must be >= 1 and begin_step >= 0, got {schedule.frequency} "
                         f"and {schedule.begin_step}")


# -- masks -----------------------------------------------------------------------------------------
def is_kernel(path, leaf) -> bool:
    """The default prunable leaves: conv and dense kernels (as tfmot prunes), not biases or norms."""
    last = path[-1] if path else None
    return getattr(last, "key", None) == "kernel" and np.ndim(leaf) >= 2


def magnitude_mask(weights, sparsity):
    """tfmot's mask: True for the `round(size * (1 - sparsity))` largest |weights| (ties kept)."""
    flat = jnp.abs(weights).reshape(-1)
    return jnp.abs(weights) >= _threshold(flat, sparsity)


def _threshold(abs_flat, sparsity):
    keep = jnp.round(abs_flat.size * (1.0 - sparsity)).astype(jnp.int32)
    ordered = jnp.sort(abs_flat)[::-1]
    # keep == 0: above every weight, so all are pruned.
    return jnp.where(keep > 0, ordered[jnp.maximum(keep - 1, 0)], jnp.inf)


def nm_mask(weights, n: int, m: int):
    """True for the `n` largest |weights| of every `m` consecutive ones along the reduced axes
    (all but the last, the output axis), as 2:4 sparse hardware wants. A kernel whose reduced size
    is not a multiple of `m` stays dense (all True)."""
    rows = int(np.prod(weights.shape[:-1]))
    if rows % m:
        return jnp.ones(weights.shape, bool)
    groups = jnp.abs(weights).reshape(rows // m, m, weights.shape[-1])
    order = jnp.argsort(-groups, axis=1, stable=True)
    ranks = jnp.argsort(order, axis=1, stable=True)
    return (ranks < n).reshape(weights.shape)


def compute_masks(params, prunable_tree, sparsity, scope: str = "layer", nm: tuple | None = None):
    """New masks of `params` (a pytree; True = kept); `prunable_tree` says which leaves prune."""
    if nm is not None:
        return jax.tree.map(lambda p, ok: nm_mask(p, *nm) if ok else jnp.ones((), bool), params, prunable_tree)
    if scope == "global":
        chosen = [jnp.abs(p).reshape(-1) for p, ok in zip(jax.tree.leaves(params), jax.tree.leaves(prunable_tree))
                  if ok]
        threshold = _threshold(jnp.concatenate(chosen), sparsity) if chosen else jnp.inf
        return jax.tree.map(lambda p, ok: jnp.abs(p) >= threshold if ok else jnp.ones((), bool),
                            params, prunable_tree)
    return jax.tree.map(lambda p, ok: magnitude_mask(p, sparsity) if ok else jnp.ones((), bool),
                        params, prunable_tree)


# -- the transformation ----------------------------------------------------------------------------
class PruneState(NamedTuple):
    """The pruning transformation's state: updates made, masks (True = kept; a scalar True for a
    leaf that is not pruned), and the wrapped optimizer's state."""

    count: jax.Array
    masks: Any
    inner_state: Any


SCOPES = ("layer", "global")


def prune(inner: optax.GradientTransformation, schedule: Callable, *, scope: str = "layer",
          nm: tuple | None = None, prunable: Callable = is_kernel) -> optax.GradientTransformationExtraArgs:
    """`inner` with magnitude pruning by `schedule` (`step -> (prune now?, sparsity)`).

    `scope`: "layer" (each kernel to the sparsity) or "global" (one threshold over all kernels);
    `nm=(n, m)`: structured n-of-m sparsity at the schedule's turns instead (its sparsity unused);
    `prunable(path, leaf)`: which leaves prune (default: kernels). `update` needs `params`.
    """
    if scope not in SCOPES:
        raise ValueError(f"prune: scope must be one of {SCOPES}, got {scope!r}")
    if nm is not None and not (len(nm) == 2 and 0 < nm[0] < nm[1]):
        raise ValueError(f"prune: nm must be (n, m) with 0 < n < m, got {nm!r}")
    inner = optax.with_extra_args_support(inner)

    def kinds(params):
        return jax.tree_util.tree_map_with_path(lambda path, p: bool(prunable(path, p)), params)

    def init(params):
        masks = jax.tree.map(lambda p, ok: jnp.ones(jnp.shape(p) if ok else (), bool), params, kinds(params))
        return PruneState(jnp.zeros([], jnp.int32), masks, inner.init(params))

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("prune: update needs the params: tx.update(grads, opt_state, params)")
        updates = jax.tree.map(lambda g, m: jnp.where(m, g, jnp.zeros_like(g)), updates, state.masks)
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra)
        should, sparsity = schedule(state.count)
        after = jax.tree.map(lambda p, u: jnp.asarray(p + u).astype(p.dtype), params, updates)  # as apply_updates
        masks = jax.lax.cond(should, lambda: compute_masks(after, kinds(params), sparsity, scope, nm),
                             lambda: state.masks)
        updates = jax.tree.map(lambda u, p, m: jnp.where(m, u, -p).astype(u.dtype), updates, params, masks)
        return updates, PruneState(state.count + 1, masks, inner_state)

    return optax.GradientTransformationExtraArgs(init, update)


# -- reading it back -------------------------------------------------------------------------------
def find_prune_state(opt_state) -> PruneState | None:
    """The PruneState inside an optimizer state (wrapped by other transformations or not)."""
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, PruneState))
             if isinstance(s, PruneState)]
    if len(found) > 1:
        raise ValueError(f"{len(found)} pruning states in one optimizer state; expected one")
    return found[0] if found else None


def strip(params, opt_state):
    """Plain params with every pruned weight exactly 0 (the masks applied), for saving or export."""
    state = find_prune_state(opt_state)
    if state is None:
        return params
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, state.masks)


def sparsity_report(params, prunable: Callable = is_kernel) -> dict:
    """`{"params", "nonzero", "sparsity", "kernel_sparsity"}`: counts over all leaves, and the
    fraction of zeros among the prunable (kernel) weights."""
    total = nonzero = k_total = k_zero = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.asarray(leaf)
        nz = int(np.count_nonzero(a))
        total, nonzero = total + a.size, nonzero + nz
        if prunable(path, a):
            k_total, k_zero = k_total + a.size, k_zero + a.size - nz
    return {"params": total, "nonzero": nonzero, "sparsity": 1.0 - nonzero / max(total, 1),
            "kernel_sparsity": k_zero / max(k_total, 1)}


def pruning_from_spec(spec, total_steps: int) -> Callable[[optax.GradientTransformation], Any]:
    """`inner -> prune(inner, ...)` from a `--prune` spec (jaxcnn.compress.spec) for a run of
    `total_steps` updates. Unset, the polynomial schedule ends at 2/3 of the run (the last third
    fine-tunes at the final sparsity) and prunes every `min(100, span // 10)` steps."""
    s = parse_prune_spec(spec)
    begin = s["begin"]
    end = s["end"] if s["end"] is not None else max(begin + 1, (2 * total_steps) // 3)
    frequency = s["frequency"] or max(1, min(100, (end - begin) // 10))
    sparsity = s["sparsity"] if s["sparsity"] is not None else 0.0
    if s["nm"] is not None or s["schedule"] == "constant":
        schedule = ConstantSparsity(sparsity, begin_step=begin, end_step=s["end"] if s["end"] is not None else -1,
                                    frequency=frequency)
    else:
        schedule = PolynomialDecay(s["initial"], sparsity, begin_step=begin, end_step=end, power=s["power"],
                                   frequency=frequency)
    return lambda inner: prune(inner, schedule, scope=s["scope"], nm=s["nm"])
