"""`as_model`: any way of naming an NNX model -> the `NnxModel` the trainer steps, with its spec.

    as_model(MyNet(rngs=nnx.Rngs(0)))              # an instance: its own values
    as_model(MyNet, num_classes=10)                # a class + fields: built in init from the seed
    as_model("my_pkg.models:MyNet", num_classes=10) or as_model("path/to/net.py:MyNet", ...)
    as_model("mnist_cnn")                          # a registered network (get_model(api="nnx"))
    model_reference(model)                         # (name, kwargs): what a run folder's card records

The spec (`NnxModel.spec`) is the model card's own fields, `{"api": "nnx", "model": NAME,
"model_kwargs": {...}}`, where NAME is a registered name or an import path: the card rebuilds it
with `get_model(NAME, api="nnx", **model_kwargs)` (then the checkpoint gives the values). A module
built by `get_model` keeps its name and arguments; any other instance is named by its class, with
the fields read back from same-named attributes (`self.num_classes = num_classes`); when a
required one is not stored, the spec's `model_kwargs` is None and `as_model(Class, **fields)` is
the way.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys

import flax.linen as nn
from flax import nnx

from jaxcnn.models.registry import get_model, is_import_path, model_origin, resolve_import_path
from jaxcnn.nnx.adapter import NnxModel

_JSON = (bool, int, float, str, type(None))


def class_path(cls) -> str:
    """`module:QualName` of a class; one defined in a script or a loaded file: `/abs/file.py:QualName`."""
    if cls.__module__ == "__main__" or cls.__module__.startswith("_jaxcnn_user_"):
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if file:
            return f"{os.path.abspath(file)}:{cls.__qualname__}"
    return f"{cls.__module__}:{cls.__qualname__}"


def _jsonable(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v) for k, v in value.items())
    return isinstance(value, _JSON)


def fields_of(module: nnx.Module) -> dict | None:
    """Constructor fields of `module` read back from its attributes; None if a required one is not stored."""
    fields = {}
    for name, p in inspect.signature(type(module).__init__).parameters.items():
        if name in ("self", "rngs") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        value = getattr(module, name, p.default)
        if value is p.empty or not _jsonable(value):
            if p.default is p.empty:
                return None
            continue
        fields[name] = list(value) if isinstance(value, tuple) else value
    return fields


def _spec(name: str, kwargs) -> dict:
    return {"api": "nnx", "model": name, "model_kwargs": kwargs}


def _instance_spec(module: nnx.Module) -> dict:
    origin = model_origin(module)
    if origin is not None:  # built by get_model(NAME, api="nnx", **kwargs)
        return _spec(*origin)
    return _spec(class_path(type(module)), fields_of(module))


def as_model(model, **kwargs) -> NnxModel:
    """An NNX model as the trainer, checkpoints and the testing kit take it (see the module doc).

    `model`: an `nnx.Module` instance, an `nnx.Module` class with its constructor `kwargs`
    (built with `rngs=nnx.Rngs(...)` from the trainer's seed), an import path of such a class,
    a registered network's name, or an `NnxModel` (returned as is).
    """
    if isinstance(model, NnxModel):
        if kwargs:
            raise TypeError("as_model(NnxModel) takes no fields")
        return model
    if isinstance(model, str):
        if is_import_path(model):
            obj = resolve_import_path(model)
            if isinstance(obj, type) and issubclass(obj, nnx.Module):
                return as_model(obj, **kwargs)
        return as_model(get_model(model, api="nnx", **kwargs))
    if isinstance(model, nn.Module):
        raise TypeError(f"{type(model).__name__} is a linen module: give it to Trainer as it is "
                        "(jaxcnn.nnx is for flax.nnx modules)")
    if isinstance(model, nnx.Module):
        if kwargs:
            raise TypeError(f"as_model({type(model).__name__} instance) takes no fields: it is built already")
        return NnxModel.from_module(model, spec=_instance_spec(model))
    if isinstance(model, type) and issubclass(model, nnx.Module):
        factory = functools.partial(_build, model, kwargs)
        template = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
        return NnxModel.from_module(template, spec=_spec(class_path(model), dict(kwargs)), factory=factory)
    raise TypeError(f"as_model takes an nnx.Module, its class, 'pkg.mod:Class' or a registered name; "
                    f"got {type(model).__name__}")


def _build(cls, kwargs, rngs):
    return cls(**kwargs, rngs=rngs)


def model_reference(model) -> tuple[str, dict]:
    """(name, kwargs) that rebuild `model` with `get_model(name, api="nnx", **kwargs)`: what a
    model card records (jaxcnn.model_card). `model`: an NnxModel or an `nnx.Module`."""
    spec = model.spec if isinstance(model, NnxModel) else _instance_spec(model)
    if spec is None or spec.get("model_kwargs") is None:
        name = spec["model"] if spec else getattr(model, "name", type(model).__name__)
        raise ValueError(f"{name}: its constructor fields are not stored as attributes of the same names, so "
                         "it cannot be rebuilt elsewhere: store them (self.width = width), or build it with "
                         "jaxcnn.models.get_model('pkg.mod:Class', api='nnx', **fields) or "
                         "jaxcnn.nnx.as_model(Class, **fields)")
    return spec["model"], dict(spec["model_kwargs"])


def from_spec(spec: dict) -> NnxModel:
    """The model a spec (`NnxModel.spec`, or a card's model/model_kwargs with api "nnx") describes."""
    if spec.get("api") != "nnx" or "model" not in spec:
        raise ValueError(f"not an NNX model spec: {spec!r}")
    name, kwargs = spec["model"], spec.get("model_kwargs")
    if kwargs is None:
        raise ValueError(f"the spec of {name} has no constructor fields: build it with "
                         "jaxcnn.nnx.as_model(Class, **fields)")
    return as_model(get_model(name, api="nnx", **kwargs))


def adapt(model):
    """`model` as the step takes it: an NNX module or class through `as_model`, anything else as is.

    The trainer and `create_train_state` call it, so they take NNX models wherever linen ones go.
    """
    if isinstance(model, nnx.Module) or (isinstance(model, type) and issubclass(model, nnx.Module)):
        return as_model(model)
    return model
