"""`as_model`: any way of naming an NNX model -> the `NnxModel` the trainer steps, with its spec.

    as_model(MyNet(rngs=nnx.Rngs(0)))              # an instance: its own values
    as_model(MyNet, num_classes=10)                # a class + fields: built in init from the seed
    as_model("my_pkg.models:MyNet", num_classes=10) or as_model("path/to/net.py:MyNet", ...)
    as_model("mnist_cnn")                          # a registered network (get_model(api="nnx"))
    from_spec(model.spec)                          # what a run folder's card records

`spec` is `{"api": "nnx", "class": "pkg.mod:Class", "kwargs": {...}}`: enough to build the
model again in a fresh process (its values then come from the checkpoint). For an instance the
fields are read back from same-named attributes of the module (`self.num_classes = num_classes`);
when a required one is not stored, `kwargs` is None and `as_model(Class, **fields)` is the way.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys

import flax.linen as nn
from flax import nnx

from jaxcnn.models.registry import get_model
from jaxcnn.nnx.adapter import NnxModel

_JSON = (bool, int, float, str, type(None))


def import_object(path: str):
    """`pkg.module:Name` or `path/to/file.py:Name` -> the object (a file is loaded as a module once)."""
    where, sep, attr = path.rpartition(":")
    if not sep or not where or not attr:
        raise ValueError(f"an import path is 'pkg.module:Name' or 'path/to/file.py:Name', got {path!r}")
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise FileNotFoundError(f"{path!r}: no file {where}")
        name = "jaxcnn_user_" + os.path.splitext(os.path.basename(where))[0]
        module = sys.modules.get(name)
        if module is None or getattr(module, "__file__", None) != os.path.abspath(where):
            spec = importlib.util.spec_from_file_location(name, os.path.abspath(where))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def class_path(cls) -> str:
    """`module:QualName` of a class; a class defined in a script file gives that file's path."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    if cls.__module__ in ("__main__",) or cls.__module__.startswith("jaxcnn_user_"):
        return f"{os.path.abspath(file)}:{cls.__qualname__}" if file else f"{cls.__module__}:{cls.__qualname__}"
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


def _spec(cls, kwargs) -> dict:
    return {"api": "nnx", "class": class_path(cls), "kwargs": kwargs}


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
        if ":" in model:
            return as_model(import_object(model), **kwargs)
        return as_model(get_model(model, api="nnx", **kwargs))
    if isinstance(model, nn.Module):
        raise TypeError(f"{type(model).__name__} is a linen module: give it to Trainer as it is "
                        "(jaxcnn.nnx is for flax.nnx modules)")
    if isinstance(model, nnx.Module):
        if kwargs:
            raise TypeError(f"as_model({type(model).__name__} instance) takes no fields: it is built already")
        fields = fields_of(model)
        return NnxModel.from_module(model, spec=_spec(type(model), fields))
    if isinstance(model, type) and issubclass(model, nnx.Module):
        factory = functools.partial(_build, model, kwargs)
        template = nnx.eval_shape(lambda: factory(nnx.Rngs(0)))
        return NnxModel.from_module(template, spec=_spec(model, dict(kwargs)), factory=factory)
    raise TypeError(f"as_model takes an nnx.Module, its class, 'pkg.mod:Class' or a registered name; "
                    f"got {type(model).__name__}")


def _build(cls, kwargs, rngs):
    return cls(**kwargs, rngs=rngs)


def from_spec(spec: dict) -> NnxModel:
    """The model a spec (`NnxModel.spec`, e.g. from a run folder's card) describes."""
    if spec.get("api") != "nnx" or "class" not in spec:
        raise ValueError(f"not an NNX model spec: {spec!r}")
    if spec.get("kwargs") is None:
        raise ValueError(f"the spec of {spec['class']} has no constructor fields (the module does not store "
                         "them as attributes): build it with jaxcnn.nnx.as_model(Class, **fields)")
    return as_model(spec["class"], **spec["kwargs"])


def adapt(model):
    """`model` as the step takes it: an NNX module or class through `as_model`, anything else as is.

    The trainer and `create_train_state` call it, so they take NNX models wherever linen ones go.
    """
    if isinstance(model, nnx.Module) or (isinstance(model, type) and issubclass(model, nnx.Module)):
        return as_model(model)
    return model
