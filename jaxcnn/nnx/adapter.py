"""An `nnx.Module` presented as a linen-like model: `init(rngs, x, train=)` / `apply(variables, ...)`.

The pure train step (jaxcnn.train.step) never holds a stateful module: it holds the variables
dict `{'params', 'batch_stats'}` and calls `apply`. `NnxModel` keeps the module's graph
definition and, on every `apply`, merges it with the given variables into a fresh module (at
trace time only; under `jax.jit` the step is one XLA program), then

- sets the mode: `module.train()` / `module.eval()` (Dropout's `deterministic`, BatchNorm's
  `use_running_average`), and passes `train=` too when `__call__` takes it;
- reseeds every RNG stream from the step's dropout key, folded with the stream's path, so the
  masks depend on the seed and the step only (as linen's do), never on a count carried along;
- sets every `nnx.BatchNorm`'s `axis_name` to `bn_axis_name` (the pmap strategy sets it to its
  device axis, as it does for linen models with a `bn_axis_name` field), and the same field of a
  bridged linen network (`nnx.bridge.ToNNX`);
- returns the new BatchNorm statistics when `mutable` asks for them.

    model = NnxModel.from_module(MyNet(rngs=nnx.Rngs(0)))   # or jaxcnn.nnx.as_model(...)
    variables = model.init({"params": key}, x)               # the module's own values
    logits = model.apply(variables, x, train=False)
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
import zlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcnn.nnx.convert import dict_to_state, split_module, state_to_dict

_EVAL_KEY = 0  # the RNG seed in inference (unused by a module whose dropout honours `train`)


def _typed_key(key):
    if key is None:
        return jax.random.key(_EVAL_KEY)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _takes(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def reseed(module: nnx.Module, key) -> None:
    """Every RNG stream of `module` from `key`, folded with the stream's tag and path.

    Two Dropout layers thus draw different masks; the same key gives the same masks.
    """
    base = _typed_key(key)
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.RngStream):
            where = "/".join(map(str, path)) + "#" + str(node.tag)
            k = jax.random.fold_in(base, zlib.crc32(where.encode()) & 0x7FFFFFFF)
            shape = node.key.get_value().shape
            if shape:
                k = jax.random.split(k, shape)
            node.key.set_value(k)
            node.count.set_value(jnp.zeros(shape, jnp.uint32))


def _linen_bn_field(node) -> bool:
    inner = getattr(node, "to_nnx__module", None)
    return inner is not None and "bn_axis_name" in {f.name for f in dataclasses.fields(inner)}


def set_bn_axis(module: nnx.Module, axis_name: str | None) -> list[str]:
    """Point every BatchNorm at `axis_name`; returns the paths of statistics it cannot reach."""
    owners, stats = [], []
    for path, node in nnx.iter_graph(module):
        if isinstance(node, nnx.BatchNorm):
            node.axis_name = axis_name
            owners.append(path)
        elif isinstance(node, nnx.bridge.ToNNX) and _linen_bn_field(node):
            node.to_nnx__module = node.to_nnx__module.clone(bn_axis_name=axis_name)
            owners.append(path)
        elif isinstance(node, nnx.BatchStat):
            stats.append(path)
    return ["/".join(map(str, p)) for p in stats if not any(p[:len(o)] == o for o in owners)]


@dataclasses.dataclass(eq=False)
class NnxModel:
    """A linen-like face of an NNX module (see the module docstring).

    `factory(rngs) -> nnx.Module` builds fresh parameters in `init` (a class with its
    constructor fields); without it `init` returns the wrapped instance's own values.
    `spec`: how to rebuild it in a fresh process, `{"api": "nnx", "model": "pkg.mod:Class",
    "model_kwargs": {...}}` (a model card's fields; jaxcnn.nnx.from_spec). Hashed by identity.
    """

    graphdef: Any
    params: nnx.State
    batch_stats: nnx.State
    rng_state: nnx.State
    factory: Callable | None = None
    bn_axis_name: str | None = None
    spec: dict | None = None
    name: str = "NnxModel"

    api = "nnx"

    @classmethod
    def from_module(cls, module: nnx.Module, spec: dict | None = None, factory=None) -> "NnxModel":
        graphdef, params, stats, rng = split_module(module)
        return cls(graphdef, params, stats, rng, factory=factory, spec=spec, name=type(module).__name__)

    # -- linen's interface ----------------------------------------------------------------------
    def init(self, rngs, x=None, *args, train: bool = False, **kwargs) -> dict:
        """The variables: fresh from `factory` with `rngs['params']`, else the module's own."""
        del x, args, train, kwargs  # NNX modules know their shapes at construction
        if self.factory is None:
            return self._variables(self.params, self.batch_stats)
        rngs = rngs if isinstance(rngs, dict) else {"params": rngs}
        key = rngs.get("params")
        module = self.factory(nnx.Rngs(key, params=key, dropout=rngs.get("dropout", key)))
        _, params, stats, _ = split_module(module)
        return self._variables(params, stats)

    def init_with_output(self, rngs, x, *args, train: bool = False, **kwargs):
        variables = self.init(rngs, x)
        return self.apply(variables, x, *args, train=train, **kwargs), variables

    def apply(self, variables, x, *args, train: bool = False, rngs=None, mutable=False, **kwargs):
        """Run the module on `variables` (linen layout). `rngs`: {'dropout': key} (or a key).

        `mutable` (a collection list, True or 'batch_stats'): also return
        `{'batch_stats': new statistics}`, as linen does.
        """
        module = self.bind(variables)
        if train:
            module.train()
        else:
            module.eval()
        key = rngs.get("dropout") if isinstance(rngs, dict) else rngs
        reseed(module, key)
        if _takes(type(module).__call__, "train"):
            kwargs["train"] = train
        out = module(x, *args, **kwargs)
        if mutable is False or mutable is None:
            return out
        stats = nnx.state(module, nnx.BatchStat)
        return out, ({"batch_stats": state_to_dict(stats)} if nnx.to_flat_state(self.batch_stats) else {})

    def clone(self, **changes) -> "NnxModel":
        """A copy with fields replaced (the pmap strategy: `clone(bn_axis_name='data')`)."""
        model = dataclasses.replace(self, **changes)
        if changes.get("bn_axis_name"):
            template = nnx.merge(model.graphdef, model.params, model.batch_stats, model.rng_state)
            unreached = set_bn_axis(template, model.bn_axis_name)
            if unreached:
                warnings.warn(f"{self.name}: statistics {', '.join(unreached[:3])} are not those of an "
                              "nnx.BatchNorm, so they cannot be synchronized over devices (each device "
                              "normalizes with its own batch). Use nnx.BatchNorm, or pass its axis_name "
                              "to your layer's collectives.", stacklevel=2)
        return model

    # -- NNX's side ----------------------------------------------------------------------------
    def bind(self, variables) -> nnx.Module:
        """A fresh module holding `variables` (e.g. a trained state's): NNX's view of them."""
        params = dict_to_state(self.params, variables.get("params", {}), "params")
        states = [params]
        if nnx.to_flat_state(self.batch_stats):
            states.append(dict_to_state(self.batch_stats, variables.get("batch_stats", {}), "batch_stats"))
        # Fresh RNG variables (created in the current trace: reseed sets them; the template stays).
        rng = nnx.from_flat_state([(p, v.replace(v.get_value())) for p, v in nnx.to_flat_state(self.rng_state)])
        module = nnx.merge(self.graphdef, *states, rng)
        set_bn_axis(module, self.bn_axis_name)
        return module

    def summary(self, input_shape, depth: int = 1, flops: bool = True) -> str:
        """NNX's table of the module's layers (`nnx.tabulate`), for `Trainer.summary()`."""
        module = nnx.merge(self.graphdef, self.params, self.batch_stats, self.rng_state)
        module.eval()
        return nnx.tabulate(module, jnp.zeros((1, *input_shape), jnp.float32), depth=depth, compute_flops=flops,
                            console_kwargs={"no_color": True, "force_terminal": False, "width": 120})

    def _variables(self, params, stats) -> dict:
        variables = {"params": state_to_dict(params)}
        if nnx.to_flat_state(stats):
            variables["batch_stats"] = state_to_dict(stats)
        return variables

    def __repr__(self) -> str:
        return f"NnxModel({self.name}, bn_axis_name={self.bn_axis_name!r})"

