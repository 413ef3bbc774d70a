"""Whole Keras models (architecture + weights) -> a `KerasGraph` linen module and its variables.

    model, variables = jaxcnn.keras.from_keras("model.keras")       # or "model.h5", or a model
    logits = model.apply(variables, x)
    jaxcnn.keras.import_keras("model.keras", "weights/my_model")     # saved; `keras:FOLDER` model

Reads, with h5py and json only (no TensorFlow, no Keras; see `jaxcnn.keras.h5`):
  * Keras 3 `.keras` archives (config.json + model.weights.h5);
  * Keras 2 / tf_keras full-model `.h5` files (`model.save("x.h5")`: attr `model_config`, weights
    under `model_weights`).
A live Keras model (tf_keras or Keras 3) is saved to a temporary file in its own format first.

Sequential and functional models, nested models (a VGG16/ResNet50 base inside a transfer
model) and shared layers are supported; see `jaxcnn.keras.spec.SUPPORTED` for the layer classes
and the options read. Anything else stops with `WeightConversionError` naming the file, the
layer, its class and the option: never a silently different model.

The final softmax/sigmoid: jaxcnn models return logits and leave the activation to the loss.
With `logits=True` (default) a softmax or sigmoid that produces a model output (the
activation of its last Dense/Conv2D/Activation layer, or a Softmax layer) is dropped and named
in `output_activations(model)`; `logits=False` keeps Keras' outputs exactly.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.graph import MODEL_CLASSES, KerasGraph, eval_variables, weight_roles
from jaxcnn.keras.h5 import read_keras_model
from jaxcnn.keras.ops import AUGMENTATION
from jaxcnn.keras.spec import keras_spec, strip_output_activations
from jaxcnn.checkpoint.weights import read_metadata, restore_variables, save_variables

def _layer_variables(layer: dict, weights: list, source: str, where: str) -> dict:
    roles = weight_roles(layer["class"], layer["config"])
    if len(weights) != len(roles):
        raise WeightConversionError(
            f"{source}: layer {where!r} ({layer['class']}) has {len(weights)} weights in the file, "
            f"expected {len(roles)} ({', '.join(r for r, _, _ in roles)})")
    named = [r for r, _ in weights]
    if all(r is not None for r in named) and sorted(named) == sorted(r for r, _, _ in roles):
        arrays = dict(weights)
    else:
        arrays = {r: a for (r, _, _), (_, a) in zip(roles, weights)}
    out: dict[str, dict] = {}
    for role, col, key in roles:
        if col is not None:  # None: a weight that does not act (Normalization's count)
            out.setdefault(col, {})[key] = np.asarray(arrays[role], np.float32)
    return out


def _variables(spec: dict, weights: dict, source: str, prefix: str = "") -> dict:
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {}
    known = set()
    for layer in spec["layers"]:
        name, where = layer["name"], prefix + layer["name"]
        known.add(name)
        if layer["class"] in MODEL_CLASSES:
            sub = _variables(layer["config"], weights.get(name, {}), source, where + "/")
            if sub["params"]:
                params[name] = sub["params"]
            if sub["batch_stats"]:
                stats[name] = sub["batch_stats"]
            continue
        if not weight_roles(layer["class"], layer["config"]):
            continue
        if name not in weights:
            raise WeightConversionError(f"{source}: layer {where!r} ({layer['class']}) has no weights in the file")
        v = _layer_variables(layer, weights[name], source, where)
        if "params" in v:
            params[name] = v["params"]
        if "batch_stats" in v:
            stats[name] = v["batch_stats"]
    extra = sorted(set(weights) - known)
    if extra:
        raise WeightConversionError(f"{source}: weights for {', '.join(prefix + e for e in extra)} "
                                    f"match no layer of the model's config")
    return {"params": params, "batch_stats": stats}


def _check_shapes(model: KerasGraph, variables: dict, source: str):
    """Every array's shape against the module's own at the model's input shape."""
    expected = eval_variables(model)
    for col in ("params", "batch_stats"):
        want = jax.tree_util.tree_leaves_with_path(expected.get(col, {}))
        got = dict((jax.tree_util.keystr(p), a) for p, a in jax.tree_util.tree_leaves_with_path(variables[col]))
        for path, leaf in want:
            key = jax.tree_util.keystr(path)
            where = "/".join(str(k.key) for k in path)
            if key not in got:
                raise WeightConversionError(f"{source}: no value for {col} {where}")
            if tuple(got[key].shape) != tuple(leaf.shape):
                raise WeightConversionError(
                    f"{source}: layer {'/'.join(where.split('/')[:-1])!r} {where.split('/')[-1]} has "
                    f"shape {tuple(got[key].shape)} in the file, the model needs {tuple(leaf.shape)}")


def _save_live_model(model, tmp: str) -> str:
    module = type(model).__module__
    if module.startswith("tf_keras") or module.startswith("keras.src.engine") or module.startswith("tensorflow"):
        path = os.path.join(tmp, "model.h5")
        model.save(path)
    else:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
    return path


def from_keras(path_or_model, logits: bool = True, train_augmentation: str = "refuse",
               source: str | None = None) -> tuple[KerasGraph, dict]:
    """(module, variables) of a Keras model file (`.keras`, full-model `.h5`) or a live model.

    variables: {"params", "batch_stats"} as numpy arrays, shapes checked against the module.
    logits: drop an output softmax/sigmoid (see the module doc); False keeps Keras' outputs.
    train_augmentation: what random preprocessing layers (RandomRotation, ...) do with
    train=True: "refuse" (an error naming the layer; RandomFlip flips as Keras does) or
    "identity" (skipped: augment with jaxcnn instead). At inference they are identity, as in Keras.
    source: the name errors give the file (a live model: "the Keras model passed in").
    """
    if train_augmentation not in ("refuse", "identity"):
        raise ValueError(f"train_augmentation={train_augmentation!r}: 'refuse' or 'identity'")
    if not isinstance(path_or_model, (str, os.PathLike)):
        with tempfile.TemporaryDirectory() as tmp:
            return from_keras(_save_live_model(path_or_model, tmp), logits, train_augmentation,
                              source or "the Keras model passed in")
    path = os.fspath(path_or_model)
    source = source or path
    try:
        config, weights, _ = read_keras_model(path)
    except WeightConversionError as e:
        raise WeightConversionError(str(e).replace(path, source)) from None
    spec = keras_spec(config, source)
    if train_augmentation == "identity":
        _augmentation_identity(spec)
    if logits:
        strip_output_activations(spec)
    else:
        spec["output_activations"] = ["linear"] * len(spec["outputs"])
    variables = _variables(spec, weights, source)
    model = KerasGraph(json.dumps(spec, sort_keys=True))
    for i, shape in enumerate(spec["input_shapes"]):
        if shape is None or any(d is None for d in shape):
            spec["input_shapes"][i] = [32 if d is None else d for d in (shape or [])]
    _check_shapes(KerasGraph(json.dumps(spec, sort_keys=True)), variables, source)
    return model, variables


def _augmentation_identity(spec: dict) -> None:
    for layer in spec["layers"]:
        if layer["class"] in MODEL_CLASSES:
            _augmentation_identity(layer["config"])
        elif layer["class"] in AUGMENTATION + ("RandomCrop",):
            layer["config"]["on_train"] = "identity"


def output_activations(model: KerasGraph) -> list[str]:
    """The softmax/sigmoid `from_keras(logits=True)` dropped per output ("linear": none)."""
    return list(json.loads(model.spec).get("output_activations", []))


def import_keras(path, out_dir, logits: bool = True, train_augmentation: str = "refuse") -> tuple[KerasGraph, dict]:
    """`from_keras(path)` saved as a jaxcnn weights folder (Orbax variables + the spec in meta.json)."""
    model, variables = from_keras(path, logits, train_augmentation)
    spec = json.loads(model.spec)
    save_variables(out_dir, variables, metadata={
        "arch": "keras", "source": os.path.basename(os.fspath(path)), "keras_spec": spec,
        "input_shapes": spec["input_shapes"], "output_activations": spec["output_activations"]})
    return model, variables


def load_imported(path) -> tuple[KerasGraph, dict]:
    """The (module, variables) that `import_keras` / `jaxcnn import-keras` saved at `path`."""
    meta = read_metadata(path)
    if meta.get("arch") != "keras" or "keras_spec" not in meta:
        raise WeightConversionError(f"{os.fspath(path)}: not a folder written by `jaxcnn import-keras`")
    return KerasGraph(json.dumps(meta["keras_spec"], sort_keys=True)), restore_variables(path)




def imported_module(path, num_classes: int | None = None, **kwargs) -> KerasGraph:
    """The module saved by `import_keras` at `path` (`get_model("keras:PATH")`).

    num_classes, if given (the experiment runner passes the dataset's), must equal the model's
    output width: an imported architecture is taken as it is.
    """
    meta = read_metadata(path)
    if meta.get("arch") != "keras" or "keras_spec" not in meta:
        raise WeightConversionError(f"{os.fspath(path)}: not a folder written by `jaxcnn import-keras`")
    bad = sorted(k for k in kwargs if k != "bn_axis_name")
    if bad:
        raise ValueError(f"keras:{os.fspath(path)}: an imported model takes no options ({', '.join(bad)})")
    spec = meta["keras_spec"]
    model = KerasGraph(json.dumps(spec, sort_keys=True), kwargs.get("bn_axis_name"))
    if num_classes is not None:
        shapes = [[32 if d is None else d for d in s] for s in spec["input_shapes"]]
        out = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *[jnp.zeros((1, *s)) for s in shapes]))
        out = jax.eval_shape(lambda v: model.apply(v, *[jnp.zeros((1, *s)) for s in shapes]), out)
        width = out.shape[-1]
        if width not in (num_classes, 1):
            raise ValueError(f"keras:{os.fspath(path)}: the model has {width} outputs, the data "
                             f"{num_classes} classes")
    return model
