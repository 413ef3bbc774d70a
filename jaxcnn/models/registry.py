"""The model registry: the CLI and experiments name networks by string.

    @register_model("mnist_cnn")            # a module class or a factory
    model = get_model("mnist_cnn", num_classes=10)
    model = get_model("keras:weights/my_model")   # a name prefix: a plugin builds it

Names with a prefix (`PREFIX:SPEC`) go to the builder registered for that prefix with
`register_prefix`, as `jaxcnn.data.base.register_source` does for datasets. The registry never
imports those builders' packages statically (they build on the models, not the other way):
`PREFIX_PROVIDERS` names the package that registers each known prefix, and `get_model` imports
it by name (a plugin lookup, `importlib`) the first time a name with that prefix is asked for.
Other model APIs plug in the same way: `get_model(name, api="nnx")` asks the builder that
`jaxcnn.nnx` registers with `register_api` (imported on first use, `API_PROVIDERS`).
"""

from __future__ import annotations

import importlib
from typing import Callable

import flax.linen as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PREFIXES: dict[str, Callable[..., nn.Module]] = {}
# Prefix -> the package that calls `register_prefix` for it when imported.
PREFIX_PROVIDERS: dict[str, str] = {"keras:": "jaxcnn.keras"}
_APIS: dict[str, Callable] = {}
# Model API -> the package that calls `register_api` for it when imported.
API_PROVIDERS: dict[str, str] = {"nnx": "jaxcnn.nnx"}


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


def register_api(api: str, builder: Callable) -> Callable:
    """Build `get_model(name, api=API, **kwargs)` with `builder(name, **kwargs)` (e.g. "nnx")."""
    _APIS[api] = builder
    return builder


def _api_builder(api: str) -> Callable:
    if api not in _APIS and api in API_PROVIDERS:
        importlib.import_module(API_PROVIDERS[api])  # registers the api on import
    try:
        return _APIS[api]
    except KeyError:
        raise ValueError(f"unknown model api {api!r}; known: linen, {', '.join(sorted(set(_APIS) | set(API_PROVIDERS)))}") from None


def _prefix_builder(prefix: str) -> Callable[..., nn.Module]:
    if prefix not in _PREFIXES and prefix in PREFIX_PROVIDERS:
        importlib.import_module(PREFIX_PROVIDERS[prefix])  # registers the prefix on import
    try:
        return _PREFIXES[prefix]
    except KeyError:
        known = sorted(set(_PREFIXES) | set(PREFIX_PROVIDERS))
        raise KeyError(f"unknown model name prefix {prefix!r}; known prefixes: {', '.join(known)} "
                       f"(or a registered model: {', '.join(list_models())})") from None


def get_model(name: str, api: str = "linen", **kwargs) -> nn.Module:
    """Build the registered model `name` with keyword overrides (e.g. num_classes).

    `keras:FOLDER` names a Keras model imported with `jaxcnn import-keras FILE FOLDER` (its
    module; the variables load through `pretrained=FOLDER` / `init_with_pretrained_base`).
    `api="nnx"`: the network as a `flax.nnx.Module` (jaxcnn.nnx; also takes `input_shape=`
    and `seed=`), with its variables in the linen network's layout.
    """
    if api != "linen":
        return _api_builder(api)(name, **kwargs)
    if name not in _REGISTRY and ":" in name:
        prefix, _, spec = name.partition(":")
        return _prefix_builder(prefix + ":")(spec, **kwargs)
    try:
        ctor = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    return ctor(**kwargs)


def list_models() -> list[str]:
    """The registered names (prefixed names such as `keras:FOLDER` are not listed)."""
    return sorted(_REGISTRY)


def list_prefixes() -> list[str]:
    """The name prefixes `get_model` knows (registered, or with a provider to import)."""
    return sorted(set(_PREFIXES) | set(PREFIX_PROVIDERS))
