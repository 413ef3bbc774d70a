"""The model registry: the CLI and experiments name networks by string.

    @register_model("mnist_cnn")            # a module class or a factory
    model = get_model("mnist_cnn", num_classes=10)
    model = get_model("keras:weights/my_model")   # a name prefix: a plugin builds it
    model = get_model("my_pkg.models:SmallCNN", num_classes=10)   # an import path
    model = get_model("path/to/models.py:SmallCNN")                # a class in a file

Names with a prefix (`PREFIX:SPEC`) go to the builder registered for that prefix with
`register_prefix`, as `jaxcnn.data.base.register_source` does for datasets. The registry never
imports those builders' packages statically (they build on the models, not the other way):
`PREFIX_PROVIDERS` names the package that registers each known prefix, and `get_model` imports
it by name (a plugin lookup, `importlib`) the first time a name with that prefix is asked for.

An import path (`module.path:Name` or `file.py:Name`) names a user's own module class (or
factory); a file is loaded once per process under a private module name, so the class is one
object however often it is asked for. `model_origin(model)` gives back the name and keyword
arguments a module was built from by `get_model` (what a model card records).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import weakref
from typing import Callable

import flax.linen as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PREFIXES: dict[str, Callable[..., nn.Module]] = {}
# Prefix -> the package that calls `register_prefix` for it when imported.
PREFIX_PROVIDERS: dict[str, str] = {"keras:": "jaxcnn.keras"}
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_ORIGINS: dict[int, tuple] = {}  # id(module) -> (weakref, name, kwargs), for `model_origin`


def register_model(name: str):
    """Decorator: register a module class or factory under `name`."""

    def wrap(ctor):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ctor
        return ctor

    return wrap


def register_prefix(prefix: str, builder: Callable[..., nn.Module]):
    """Build models named `PREFIX:SPEC` with `builder(SPEC, **kwargs)` (prefix given with its colon,
    e.g. "keras:"). Registering a prefix again replaces its builder (a package imported twice)."""
    if not prefix.endswith(":") or ":" in prefix[:-1]:
        raise ValueError(f"a model name prefix ends with one colon, e.g. 'keras:'; got {prefix!r}")
    _PREFIXES[prefix] = builder
    return builder


def _prefix_builder(prefix: str) -> Callable[..., nn.Module]:
    if prefix not in _PREFIXES and prefix in PREFIX_PROVIDERS:
        importlib.import_module(PREFIX_PROVIDERS[prefix])  # registers the prefix on import
    try:
        return _PREFIXES[prefix]
    except KeyError:
        known = sorted(set(_PREFIXES) | set(PREFIX_PROVIDERS))
        raise KeyError(f"unknown model name prefix {prefix!r}; known prefixes: {', '.join(known)} "
                       f"(or a registered model: {', '.join(list_models())}; or an import path: "
                       "my_pkg.models:SmallCNN, path/to/models.py:SmallCNN)") from None


def is_import_path(name: str) -> bool:
    """True for `module.path:Name` and `path/to/file.py:Name` (not a registered name or prefix)."""
    if name in _REGISTRY or ":" not in name:
        return False
    where, _, attr = name.rpartition(":")
    if not _DOTTED.match(attr):
        return False
    if where.endswith(".py"):
        return True
    if not _DOTTED.match(where) or where + ":" in list_prefixes():
        return False
    # `name:spec` with a bare name that no module has is an unknown prefix, not an import path.
    return "." in where or importlib.util.find_spec(where) is not None


def _load_file(path: str):
    """The module in a .py file, loaded once per process (a private name in sys.modules)."""
    path = os.path.realpath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such model file")
    for module in list(sys.modules.values()):  # already imported under its own name (or as __main__)
        if os.path.realpath(getattr(module, "__file__", None) or "") == path and module.__name__ != "__main__":
            return module
    name = "_jaxcnn_user_" + re.sub(r"\W", "_", os.path.splitext(path)[0].lstrip(os.sep))
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def resolve_import_path(name: str):
    """The object an import path names: `module.path:Name` (imported) or `file.py:Name` (loaded)."""
    where, _, attr = name.rpartition(":")
    try:
        module = _load_file(where) if where.endswith(".py") else importlib.import_module(where)
    except (ImportError, FileNotFoundError) as e:
        raise KeyError(f"model {name!r}: cannot import {where} ({e}); give an importable module "
                       "(my_pkg.models:SmallCNN) or a file (path/to/models.py:SmallCNN)") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise KeyError(f"model {name!r}: {where} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name` with keyword overrides (e.g. num_classes).

    `keras:FOLDER` names a Keras model imported with `jaxcnn import-keras FILE FOLDER` (its
    module; the variables load through `pretrained=FOLDER` / `init_with_pretrained_base`).
    `module.path:Name` or `path/to/file.py:Name` names a module class (or factory) of one's own.
    """
    if is_import_path(name):
        model = resolve_import_path(name)(**kwargs)
    elif name not in _REGISTRY and ":" in name:
        prefix, _, spec = name.partition(":")
        model = _prefix_builder(prefix + ":")(spec, **kwargs)
    else:
        try:
            ctor = _REGISTRY[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())} "
                           "(or an import path: my_pkg.models:SmallCNN, path/to/models.py:SmallCNN)") from None
        model = ctor(**kwargs)
    _remember(model, name, kwargs)
    return model


def _remember(model, name: str, kwargs: dict) -> None:
    key = id(model)
    try:
        ref = weakref.ref(model, lambda _: _ORIGINS.pop(key, None))
    except TypeError:  # not weak-referenceable: no origin kept
        return
    _ORIGINS[key] = (ref, name, dict(kwargs))


def model_origin(model) -> tuple[str, dict] | None:
    """(name, kwargs) that `get_model` built `model` from, or None for a module built otherwise."""
    entry = _ORIGINS.get(id(model))
    if entry is None or entry[0]() is not model:
        return None
    return entry[1], dict(entry[2])


def list_models() -> list[str]:
    """The registered names (prefixed names such as `keras:FOLDER` are not listed)."""
    return sorted(_REGISTRY)


def list_prefixes() -> list[str]:
    """The name prefixes `get_model` knows (registered, or with a provider to import)."""
    return sorted(set(_PREFIXES) | set(PREFIX_PROVIDERS))
