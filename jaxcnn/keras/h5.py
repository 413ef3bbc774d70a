"""Reading Keras files with h5py only (no TensorFlow, no Keras): weight files and whole models.

`read_keras_h5` gives the weighted layers of any Keras weight file (what `jaxcnn.keras.convert`
maps onto a registered jaxcnn model); `read_keras_model` gives the config and weights of a
`.keras` archive or a full-model `.h5` (what `jaxcnn.keras.model.from_keras` builds from).

Formats read:
  * Keras 2 / tf_keras `save_weights("x.h5")`, `model.save("x.h5")` (under "model_weights") and
    the published `keras.applications` files: root attr `layer_names`, each layer group with
    attr `weight_names` such as `block1_conv1/kernel:0`, or Keras-1-era `block1_conv1_W_1:0`,
    `bn_conv1_running_mean:0`; a weight's role (kernel, bias, gamma, ...) is read from its
    name, or from its position when the name says nothing.
  * Keras 3 `save_weights("x.weights.h5")` (and the same inside a `.keras` archive):
    `layers/<object name>/vars/0..n`, the Keras layer name in the `vars` group's attr `name`
    (Keras >= 3.x); without it, layers of one class are matched in creation order (the object
    names' counters).
  * Whole models: a `.keras` archive's config.json, a full-model `.h5`'s attr `model_config`.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
import zlib
from typing import Any

import h5py
import numpy as np

from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.graph import MODEL_CLASSES
from jaxcnn.keras.spec import keras_spec

# What reading a damaged file raises, in h5py or in the readers below (a group where a dataset
# should be, an attribute of another type): reported as a damaged file, naming the error.
_DAMAGE = (KeyError, RuntimeError, OSError, ValueError, TypeError, AttributeError, IndexError, RecursionError)
_ROLE_ALIASES = {
    "kernel": "kernel", "W": "kernel", "bias": "bias", "b": "bias",
    "gamma": "gamma", "beta": "beta",
    "moving_mean": "moving_mean", "running_mean": "moving_mean",
    "moving_variance": "moving_variance", "running_std": "moving_variance",
    "running_var": "moving_variance",
}


def decode(s) -> str:
    """An HDF5 attribute (bytes or str) as str."""
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


def weight_role(weight_name: str, layer_name: str) -> str | None:
    """'block1_conv1/kernel:0' -> kernel; 'block1_conv1_W_1:0' -> kernel; '0' -> None."""
    base = weight_name.split("/")[-1].split(":")[0]
    if base.startswith(layer_name + "_"):
        base = base[len(layer_name) + 1:]
    if base in _ROLE_ALIASES:
        return _ROLE_ALIASES[base]
    base = re.sub(r"_\d+$", "", base)  # Keras 1 suffixes: W_1, b_1
    return _ROLE_ALIASES.get(base)


def _read_keras2(group) -> dict[str, list[tuple[str | None, np.ndarray]]]:
    layers: dict[str, list] = {}
    for lname in (decode(n) for n in group.attrs["layer_names"]):
        g = group[lname]
        wnames = [decode(n) for n in g.attrs.get("weight_names", [])]
        scopes = {w.split("/")[0] for w in wnames if "/" in w}
        nested = len(scopes) > 1 or (len(scopes) == 1 and _unsuffixed(next(iter(scopes))) != _unsuffixed(lname))
        for wname in wnames:
            # A nested model's group ("vgg16") holds its sublayers' weights ("block1_conv1/kernel:0");
            # a layer's own group may carry a uniquified scope ("block1_conv1_1/kernel:0") or a
            # cell's ("lstm/lstm_cell/kernel:0"): the group name is the layer's.
            owner = wname.split("/")[0] if nested and "/" in wname else lname
            layers.setdefault(owner, []).append((weight_role(wname, wname.split("/")[-2] if "/" in wname else owner),
                                                 np.asarray(g[wname])))
    return _unsuffix_scopes(layers)


def _unsuffixed(name: str) -> str:
    return re.sub(r"_\d+$", "", name)


def _unsuffix_scopes(layers: dict) -> dict:
    """Scopes uniquified by a second model in one session ('block1_conv1_1') -> the layer name,
    where that name is free and no two scopes collapse onto one."""
    stripped = [_unsuffixed(k) for k in layers]
    if len(set(stripped)) != len(stripped) or all(a == b for a, b in zip(stripped, layers)):
        return layers
    if any(k != s and s in layers for k, s in zip(layers, stripped)):
        return layers
    return dict(zip(stripped, layers.values()))


def object_order(key: str):
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", key)
    return m.group(1), int(m.group(2) or 0)


def k3_arrays(g) -> list[np.ndarray]:
    """A Keras 3 object's arrays: its own vars, then its sub-objects' (an LSTM's cell, a
    TimeDistributed's layer)."""
    out = [np.asarray(g["vars"][str(i)]) for i in range(len(g["vars"]))] if "vars" in g else []
    for key in sorted(k for k in g.keys() if k not in ("vars", "layers")):
        out += k3_arrays(g[key])
    return out


def _read_keras3(group, layers=None) -> dict[str, list[tuple[str | None, np.ndarray]]]:
    layers = {} if layers is None else layers
    # Nested models (a transfer model's base) first, then creation order within a class.
    keys = sorted(group["layers"].keys(), key=lambda k: ("layers" not in group["layers"][k], object_order(k)))
    for key in keys:
        g = group["layers"][key]
        if "layers" in g:  # nested model
            _read_keras3(g, layers)
            continue
        arrays = k3_arrays(g)
        if arrays:
            v = g.get("vars")
            # Without the `name` attr (early Keras 3), keep the object name, marked with "@".
            name = decode(v.attrs["name"]) if v is not None and "name" in v.attrs else "@" + key
            layers[name] = [(None, a) for a in arrays]
    return layers


def read_keras_h5(path) -> tuple[dict[str, list[tuple[str | None, np.ndarray]]], str]:
    """{layer name: [(role or None, array), ...] in saved order}, and the format found."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such Keras weight file")
    source = path
    if zipfile.is_zipfile(path):  # a Keras 3 `.keras` archive: its weights are model.weights.h5
        try:
            with zipfile.ZipFile(path) as z:
                if "model.weights.h5" not in z.namelist():
                    raise WeightConversionError(f"{path}: a zip archive without model.weights.h5")
                source = io.BytesIO(z.read("model.weights.h5"))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise WeightConversionError(f"{path}: damaged .keras archive ({type(e).__name__}: {e})") from None
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise WeightConversionError(f"{path}: not a readable HDF5 file ({e})") from None
    try:
        with f:
            group = f["model_weights"] if "model_weights" in f else f
            if "layer_names" in group.attrs:
                return _read_keras2(group), "keras2"
            if "layers" in group:
                return _read_keras3(group), "keras3"
    except _DAMAGE as e:  # HDF5 reports damage as any of these, from any object it touches
        if isinstance(e, WeightConversionError):
            raise
        raise WeightConversionError(f"{path}: damaged Keras weight file ({type(e).__name__}: {e})") from None
    raise WeightConversionError(
        f"{path}: neither a Keras 2 weight file (no 'layer_names' attribute) nor a Keras 3 "
        f".weights.h5 file (no 'layers' group)")


# ---------------------------------------------------------------- whole models (config + weights)

def _snake(name: str) -> str:
    """Keras 3's object names in .weights.h5 (keras.src.utils.naming.to_snake_case)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _read_k3(group, spec: dict) -> dict:
    """{layer name: [(None, array), ...] or a nested model's dict} from a Keras 3 weights group."""
    if "layers" not in group:
        return {}
    objects = group["layers"]
    names = {}
    for key in objects:
        v = objects[key].get("vars")
        if v is not None and "name" in v.attrs:
            names[decode(v.attrs["name"])] = key
    if not names:  # early Keras 3: object names from class names, numbered in layer order
        counts: dict[str, int] = {}
        layer_list = spec["layers"] if spec is not None else []
        # A functional model saves its InputLayers as objects too; a Sequential model does not.
        input_names = [] if spec is None or spec.get("sequential") else [r[0] for r in spec["inputs"]]
        for lname, cls in [(n, "InputLayer") for n in input_names] + [(x["name"], x["class"]) for x in layer_list]:
            base = _snake("Functional" if cls == "Model" else cls)
            i = counts.get(base, 0)
            counts[base] = i + 1
            names[lname] = base if i == 0 else f"{base}_{i}"
    by_layer = {layer["name"]: layer for layer in (spec or {}).get("layers", [])}
    out: dict[str, Any] = {}
    for lname, key in names.items():
        g = objects.get(key)
        if g is None:
            continue
        layer = by_layer.get(lname)
        if layer is not None and layer["class"] in MODEL_CLASSES or (layer is None and "layers" in g):
            out[lname] = _read_k3(g, layer["config"] if layer is not None else None)
        else:
            arrays = k3_arrays(g)
            if arrays:
                out[lname] = [(None, a) for a in arrays]
    return out


def _read_k2(group, spec: dict, source: str) -> dict:
    """{layer name: [(role, array), ...] or a nested model's dict} from a Keras 2 weights group."""
    by_layer = {layer["name"]: layer for layer in spec["layers"]}
    out: dict[str, Any] = {}
    for lname in (decode(n) for n in group.attrs["layer_names"]):
        g = group[lname]
        weights = [(w, np.asarray(g[w])) for w in (decode(n) for n in g.attrs.get("weight_names", []))]
        if not weights:
            continue
        layer = by_layer.get(lname)
        if layer is not None and layer["class"] in MODEL_CLASSES:
            out[lname] = _split_nested(weights, layer["config"], source, lname)
        else:
            out[lname] = [(weight_role(w, w.split("/")[-2] if "/" in w else lname), a) for w, a in weights]
    return out


def _split_nested(weights, spec: dict, source: str, where: str) -> dict:
    """A nested model's weights ('block1_conv1/kernel:0', ...) grouped by its layers' names."""
    names = [layer["name"] for layer in spec["layers"]]
    out: dict[str, Any] = {}
    for w, a in weights:
        scope = w.split("/")[0]
        owner = scope if scope in names else re.sub(r"_\d+$", "", scope)
        if owner not in names:
            raise WeightConversionError(f"{source}: weight {w!r} of {where!r} belongs to no layer of "
                                        f"{spec['name']!r}")
        layer = next(x for x in spec["layers"] if x["name"] == owner)
        if layer["class"] in MODEL_CLASSES:
            out.setdefault(owner, []).append(("/".join(w.split("/")[1:]), a))
        else:
            out.setdefault(owner, []).append((weight_role(w, scope), a))
    for layer in spec["layers"]:
        if layer["class"] in MODEL_CLASSES and layer["name"] in out:
            out[layer["name"]] = _split_nested(out[layer["name"]], layer["config"], source,
                                               f"{where}/{layer['name']}")
    return out


def _spec(config, path: str) -> dict:
    """`keras_spec` of a config read from a file: one that is not a Keras model config (damaged,
    or another program's JSON) is a WeightConversionError, whatever it trips over first."""
    try:
        return keras_spec(config, path)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise WeightConversionError(f"{path}: the model config is not a Keras model config, or is damaged "
                                    f"({type(e).__name__}: {e})") from None


def read_keras_model(path) -> tuple[dict, dict, str]:
    """(Keras config, {layer: weights}, format) of a `.keras` or full-model `.h5` file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such Keras model file")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                if "config.json" not in names or "model.weights.h5" not in names:
                    raise WeightConversionError(f"{path}: a zip archive without config.json and "
                                                f"model.weights.h5 (not a Keras 3 .keras file)")
                config = json.loads(z.read("config.json"))
                raw = io.BytesIO(z.read("model.weights.h5"))
            spec = _spec(config, path)
            with h5py.File(raw, "r") as f:
                return config, _read_k3(f, spec), "keras3"
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise WeightConversionError(f"{path}: not a readable HDF5 file ({e})") from None
        with f:
            if "model_config" not in f.attrs:
                kind = "a weights-only file" if ("layer_names" in f.attrs or "layers" in f) else "no Keras model"
                raise WeightConversionError(
                    f"{path}: {kind} (no model_config): import the architecture from a full-model "
                    f"file (model.save), or load the weights into a named model with "
                    f"`jaxcnn convert-weights NAME`")
            config = json.loads(decode(f.attrs["model_config"]))
            spec = _spec(config, path)
            return config, _read_k2(f["model_weights"], spec, path), "keras2"
    except (*_DAMAGE, EOFError, zlib.error, zipfile.BadZipFile) as e:
        if isinstance(e, WeightConversionError):
            raise
        raise WeightConversionError(f"{path}: damaged Keras file ({type(e).__name__}: {e})") from None
