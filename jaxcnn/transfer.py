"""Transfer learning: pretrained base into a model's params, freezing by prefix, frozen features.

    model = jaxcnn.models.get_model("vgg16_transfer_a", num_classes=10)   # params {"base", "head"}
    variables = jaxcnn.train.init_variables(model, (224, 224, 3))
    variables = load_base(variables, jaxcnn.checkpoint.restore_variables("vgg16_notop"))
    tx = make_transfer_optimizer(optax.adam(1e-3), variables["params"], trainable=("head",))
    # later, fine-tune the top block too at a low rate:
    tx = make_transfer_optimizer(optax.rmsprop(2e-5), params, trainable=("head", "base/block5"))

Frozen params get `optax.set_to_zero()`: no update and no optimizer state (the multi_transform
masks them out of the inner optimizer), and under `jit` XLA drops the gradient computation for
them as dead code. When the whole base is frozen, `extract_features` runs it once over the data,
and the head alone (`TransferHead`) trains on the stored features at the speed of a dense layer.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.core import unfreeze

from jaxcnn.keras.graph import KerasGraph
from jaxcnn.train.state import init_variables
from jaxcnn.checkpoint.weights import restore_variables


def _path_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _matches(path: str, prefix: str) -> bool:
    """'base/block5' matches 'base/block5_conv1/kernel' and 'base/block5/...', not 'base/block50'."""
    prefix = prefix.strip("/")
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] in "/_")


def freeze_mask(params, trainable_prefixes: Iterable[str]):
    """A tree like `params` of bools: True where the '/'-joined path starts with a prefix."""
    prefixes = (trainable_prefixes,) if isinstance(trainable_prefixes, str) else tuple(trainable_prefixes)
    mask = jax.tree_util.tree_map_with_path(
        lambda p, _: any(_matches(_path_str(p), pre) for pre in prefixes), params)
    if prefixes and not any(jax.tree.leaves(mask)):
        raise ValueError(f"no parameter matches the trainable prefixes {prefixes}; top-level "
                         f"names: {', '.join(map(str, params))}")
    return mask


def make_transfer_optimizer(tx: optax.GradientTransformation, params=None,
                            trainable: Iterable[str] = ("head",)) -> optax.GradientTransformation:
    """`tx` on params under the `trainable` prefixes; the rest frozen (zero update, no state).

    `params` may be left out: the labels are then computed from the params given to `init`,
    so the optimizer can be built before the model (e.g. for `Trainer(optimizer=...)`).
    """
    trainable = (trainable,) if isinstance(trainable, str) else tuple(trainable)

    def labels(p):
        return jax.tree.map(lambda m: "trainable" if m else "frozen", freeze_mask(p, trainable))

    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()},
                                 labels if params is None else labels(params))


def _check_and_copy(dst, src, where: str):
    if isinstance(dst, Mapping):
        if not isinstance(src, Mapping):
            raise ValueError(f"pretrained weights: {where!r} is a leaf, expected a layer")
        out = {}
        for k, v in dst.items():
            if k not in src:
                raise ValueError(f"pretrained weights lack {where + '/' + k!r} "
                                 f"(found: {', '.join(sorted(src)[:8])})")
            out[k] = _check_and_copy(v, src[k], f"{where}/{k}")
        return out
    if tuple(np.shape(src)) != tuple(np.shape(dst)):
        raise ValueError(f"pretrained weights: {where!r} has shape {tuple(np.shape(src))}, "
                         f"the model expects {tuple(np.shape(dst))}")
    return jnp.asarray(src, dtype=jnp.result_type(dst))


def load_base(variables: Mapping[str, Any], pretrained: Mapping[str, Any], prefix: str | None = "base"):
    """`variables` ({"params", "batch_stats"?}) with `variables[col][prefix]` replaced by the
    pretrained layers of the same names (e.g. `restore_variables(...)` or `load_keras_h5(...)`);
    prefix None replaces every layer (a whole imported Keras model).

    Extra pretrained layers (a full model's fc1/fc2/predictions) are ignored; a missing layer or
    a shape mismatch raises, naming it.
    """
    out = {k: unfreeze(v) if hasattr(v, "unfreeze") else dict(v) for k, v in variables.items()}
    if prefix is None:
        for col in ("params", "batch_stats"):
            if out.get(col):
                out[col] = _check_and_copy(out[col], pretrained.get(col, {}), col)
        return out
    for col in ("params", "batch_stats"):
        if col in out and prefix in out[col]:
            out[col][prefix] = _check_and_copy(out[col][prefix], pretrained.get(col, {}),
                                               f"{col}/{prefix}")
    if prefix not in out.get("params", {}):
        raise ValueError(f"the model has no params[{prefix!r}] to load a base into")
    return out


def _batches(images, batch_size):
    if isinstance(images, np.ndarray) or hasattr(images, "__array__"):
        images = np.asarray(images)
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size]
    else:  # an iterable of batches (e.g. decoded and resized on the fly): never all in memory
        for batch in images:
            batch = np.asarray(batch)
            for i in range(0, len(batch), batch_size):
                yield batch[i:i + batch_size]


@functools.lru_cache(maxsize=32)
def _jitted_apply(owner, func, compute_dtype):
    fn = func if owner is None else func.__get__(owner)
    return jax.jit(lambda v, x: fn(v, x if compute_dtype is None else x.astype(compute_dtype)))


def _compiled_apply(apply_fn: Callable, compute_dtype):
    """One jitted `apply_fn` per (module, method, dtype): repeated `extract_features` calls with
    `model.apply` (a new bound method each time, an equal module) reuse the compilation."""
    owner = getattr(apply_fn, "__self__", None)
    try:
        return _jitted_apply(owner, getattr(apply_fn, "__func__", apply_fn), compute_dtype)
    except TypeError:  # an unhashable owner: compile for this call only
        return jax.jit(lambda v, x: apply_fn(v, x if compute_dtype is None else x.astype(compute_dtype)))


def extract_features(apply_fn: Callable, variables, images, batch_size: int = 32,
                     compute_dtype=None) -> np.ndarray:
    """`apply_fn(variables, x)` over `images` in batches, on device, gathered as float32 numpy.

    Use it with the frozen base, e.g. `VGG16(include_top=False).apply` and
    `{"params": params["base"]}`, so the base runs once per image instead of once per epoch.
    `images`: an array, or an iterable of image batches. Short batches are padded to
    `batch_size` (one compilation) and the padding dropped.
    """
    step = _compiled_apply(apply_fn, compute_dtype)
    out = []
    for x in _batches(images, batch_size):
        real = len(x)
        if real < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - real, *x.shape[1:]), x.dtype)])
        out.append(np.asarray(jax.device_get(step(variables, x)), np.float32)[:real])
    if not out:
        raise ValueError("extract_features: no images")
    return np.concatenate(out)


def init_with_pretrained_base(model, input_shape, pretrained, seed: int = 0, prefix: str | None = "base"):
    """`model`'s variables (fresh head, seeded) with the base taken from `pretrained`: a folder
    written by `jaxcnn convert-weights` / `save_variables`, or a variables dict.

    A model imported from Keras (`jaxcnn import-keras`, `get_model("keras:FOLDER")`) has no
    `base`: from its own folder it takes every layer (prefix None), head included.
    """
    if not isinstance(pretrained, Mapping):
        pretrained = restore_variables(pretrained)
    variables = init_variables(model, input_shape, seed)
    if prefix == "base" and "base" not in variables.get("params", {}) and isinstance(model, KerasGraph):
        prefix = None
    return load_base(variables, pretrained, prefix)
