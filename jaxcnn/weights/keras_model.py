"""Whole Keras models (architecture + weights) -> a `KerasGraph` linen module and its variables.

    model, variables = jaxcnn.weights.from_keras("model.keras")       # or "model.h5", or a model
    logits = model.apply(variables, x)

Reads, with h5py and json only (no TensorFlow, no Keras):
  * Keras 3 `.keras` archives (config.json + model.weights.h5);
  * Keras 2 / tf_keras full-model `.h5` files (`model.save("x.h5")`: attr `model_config`, weights
    under `model_weights`).
A live Keras model (tf_keras or Keras 3) is saved to a temporary file in its own format first.

Sequential and functional models, nested models (a VGG16/ResNet50 base inside a transfer
model) and shared layers are supported; see `SUPPORTED` for the layer classes and the options
read. Anything else stops with `WeightConversionError` naming the file, the layer, its class
and the option: never a silently different model. Training-only options that the import
cannot carry (regularizers, constraints, recurrent dropout) are refused as well.

The final softmax/sigmoid: jaxcnn models return logits and leave the activation to the loss.
With `logits=True` (default) a softmax or sigmoid that produces a model output (the
activation of its last Dense/Conv2D/Activation layer, or a Softmax layer) is dropped and named
in `output_activations(model)`; `logits=False` keeps Keras' outputs exactly.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from jaxcnn.models.keras_graph import ACTIVATIONS, MODEL_CLASSES, KerasGraph, eval_variables, weight_roles
from jaxcnn.weights.keras_h5 import WeightConversionError, _decode, _role, k3_arrays

# Class -> the options read (anything else must be absent, null or false, or it is refused).
SUPPORTED: dict[str, tuple[str, ...]] = {
    "InputLayer": (),
    "Conv2D": ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
               "groups", "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "LSTM": ("units", "activation", "recurrent_activation", "use_bias", "return_sequences"),
    "Dropout": ("rate",),
    "Activation": ("activation",),
    "ReLU": ("max_value",),
    "LeakyReLU": ("negative_slope", "alpha"),
    "Softmax": ("axis",),
    "Flatten": ("data_format",),
    "Reshape": ("target_shape",),
    "Rescaling": ("scale", "offset"),
    "ZeroPadding2D": ("padding", "data_format"),
    "MaxPooling2D": ("pool_size", "strides", "padding", "data_format"),
    "AveragePooling2D": ("pool_size", "strides", "padding", "data_format"),
    "GlobalAveragePooling2D": ("data_format", "keepdims"),
    "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "GlobalAveragePooling1D": ("data_format", "keepdims"),
    "GlobalMaxPooling1D": ("data_format", "keepdims"),
    "Add": (), "Subtract": (), "Multiply": (), "Average": (), "Maximum": (),
    "Concatenate": ("axis",),
    "TimeDistributed": ("layer",),
}
# Options with no effect on the imported function or its training (weights come from the file).
_IGNORED = {"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape",
            "sparse", "ragged", "optional", "unroll", "implementation", "unit_forget_bias", "seed",
            "use_cudnn", "fused", "synchronized", "renorm_clipping", "renorm_momentum",
            "zero_output_for_mask", "input_dim", "input_length", "threshold", "negative_slope"}
# Options that must keep their default; (option, default, why).
_DEFAULTS = {
    "LSTM": {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
             "return_state": False, "go_backwards": False, "stateful": False, "time_major": False,
             "dropout": 0.0, "recurrent_dropout": 0.0},
    "ReLU": {"negative_slope": 0.0, "threshold": 0.0},
    "BatchNormalization": {"renorm": False, "virtual_batch_size": None, "adjustment": None},
    "Dropout": {"noise_shape": None},
}
_CLASS_ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D",
                  "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D"}


class _Refuse:
    def __init__(self, source: str):
        self.source = source

    def __call__(self, layer: str, cls: str, what: str):
        raise WeightConversionError(f"{self.source}: layer {layer!r} ({cls}): {what}")


def _dtype_name(d) -> str | None:
    if isinstance(d, dict):
        return (d.get("config") or {}).get("name")
    return d


def _normalize_layer(cls: str, cfg: dict, refuse: _Refuse) -> dict:
    """The options of one Keras layer that `KerasGraph` reads, after checking all others."""
    name = cfg.get("name", "?")
    cls = _CLASS_ALIASES.get(cls, cls)
    if cls not in SUPPORTED and cls not in MODEL_CLASSES:
        refuse(name, cls, f"layer class {cls} is not supported (supported: "
                          f"{', '.join(sorted(SUPPORTED))}, nested models)")
    dtype = _dtype_name(cfg.get("dtype"))
    if dtype not in (None, "float32"):
        refuse(name, cls, f"option dtype={dtype!r} is not supported (float32 only)")
    out: dict[str, Any] = {}
    defaults = _DEFAULTS.get(cls, {})
    for key, value in cfg.items():
        if key in SUPPORTED[cls] or key.endswith("_initializer") or key in ("layer",):
            continue
        if key in defaults:
            if value != defaults[key] and not (value in (None, 0) and defaults[key] in (0.0, None)):
                refuse(name, cls, f"option {key}={value!r} is not supported (only {defaults[key]!r})")
            continue
        if key.endswith(("_regularizer", "_constraint")) and value is not None:
            kind = value.get("class_name", value) if isinstance(value, dict) else value
            refuse(name, cls, f"option {key}={kind} is not supported (training-time term the "
                              f"import cannot carry; remove it or rebuild the model without it)")
        if key in _IGNORED or value in (None, False, 0, {}, [], "") or key.endswith(("_regularizer", "_constraint")):
            continue
        refuse(name, cls, f"option {key}={value!r} is not supported")
    for key in SUPPORTED[cls]:
        if key in cfg:
            out[key] = cfg[key]
    if out.get("data_format") not in (None, "channels_last"):
        refuse(name, cls, f"option data_format={out['data_format']!r} is not supported (channels_last only)")
    out.pop("data_format", None)
    if "activation" in out:
        act = out["activation"]
        if isinstance(act, dict):  # Keras 3 may serialize a function as {"class_name": "function", ...}
            act = act.get("config", act.get("class_name"))
        if act not in ACTIVATIONS:
            refuse(name, cls, f"option activation={act!r} is not supported "
                              f"(supported: {', '.join(sorted(ACTIVATIONS))})")
        out["activation"] = act
    if cls == "Conv2D" and out["padding"] not in ("valid", "same"):
        refuse(name, cls, f"option padding={out['padding']!r} is not supported (valid, same)")
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        out.setdefault("strides", None)
        if out["padding"] not in ("valid", "same"):
            refuse(name, cls, f"option padding={out['padding']!r} is not supported (valid, same)")
    if cls == "BatchNormalization":
        axis = out.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if not isinstance(axis, int):
            refuse(name, cls, f"option axis={axis!r} is not supported (the channel axis only)")
        out["axis"] = axis
        out["trainable"] = bool(cfg.get("trainable", True))
    if cls == "LeakyReLU":
        slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        out = {"negative_slope": float(slope)}
    if cls == "ReLU":
        out = {"max_value": cfg.get("max_value")}
    if cls == "Rescaling":
        if not all(isinstance(cfg.get(k, 0.0), (int, float)) for k in ("scale", "offset")):
            refuse(name, cls, "per-channel scale/offset is not supported (scalars only)")
        out = {"scale": float(cfg["scale"]), "offset": float(cfg.get("offset", 0.0))}
    if cls == "Reshape":
        out["target_shape"] = list(out["target_shape"])
    if cls == "TimeDistributed":
        inner = cfg["layer"]
        icls = _CLASS_ALIASES.get(inner["class_name"], inner["class_name"])
        if icls in MODEL_CLASSES or icls in ("TimeDistributed", "LSTM"):
            refuse(name, cls, f"wrapping a {icls} is not supported")
        out["layer"] = {"class": icls, "config": _normalize_layer(icls, inner["config"], refuse)}
    return out


def _history(obj) -> list[tuple[str, int, int]]:
    """(layer, node, tensor) triples of a Keras 3 node's args, in order."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            name, node, tensor = obj["config"]["keras_history"]
            return [(name, node, tensor)]
        return [t for v in obj.values() for t in _history(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _history(v)]
    return []


def _parse_node(node) -> dict:
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        kwargs = node.get("kwargs") or {}
        return {"inputs": [list(t) for t in _history(node.get("args", []))],
                "training": kwargs.get("training")}
    # Keras 2: [[name, node, tensor, kwargs], ...]
    entries = [node] if node and isinstance(node[0], str) else node
    kwargs = entries[0][3] if entries and len(entries[0]) > 3 and isinstance(entries[0][3], dict) else {}
    return {"inputs": [[e[0], int(e[1]), int(e[2])] for e in entries], "training": kwargs.get("training")}


def _refs(v) -> list[list]:
    if v and isinstance(v[0], str):
        return [[v[0], int(v[1]), int(v[2])]]
    return [[r[0], int(r[1]), int(r[2])] for r in v]


def _input_shape(cfg: dict) -> list | None:
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    return list(shape[1:]) if shape else None


def keras_spec(config: dict, source: str = "<keras model>") -> dict:
    """Keras' model config ({"class_name", "config"}) -> the normalized spec `KerasGraph` runs."""
    refuse = _Refuse(source)
    cls, cfg = config["class_name"], config["config"]
    name = cfg.get("name", "model")
    if cls not in MODEL_CLASSES:
        refuse(name, cls, "the file's top level is not a Keras model")
    layers, input_shapes = [], []
    if cls == "Sequential":
        raw = list(cfg["layers"] if isinstance(cfg, dict) else cfg)
        prev = None
        if raw and raw[0]["class_name"] == "InputLayer":
            first = raw.pop(0)
            prev = [first["config"]["name"], 0, 0]
            input_shapes.append(_input_shape(first["config"]))
        else:
            shape = (_input_shape(raw[0]["config"]) if raw else None) or (
                list(cfg["build_input_shape"][1:]) if cfg.get("build_input_shape") else None)
            if shape is None and raw and raw[0]["class_name"] in MODEL_CLASSES:
                shape = keras_spec(raw[0], source)["input_shapes"][0]
            if shape is None:
                refuse(name, cls, "a Sequential model without an input shape (build it with keras.Input)")
            prev = [f"{name}_input", 0, 0]
            input_shapes.append(shape)
        inputs = [prev]
        for layer in raw:
            lcls = _CLASS_ALIASES.get(layer["class_name"], layer["class_name"])
            lname = layer["config"]["name"]
            lcfg = keras_spec(layer, source) if lcls in MODEL_CLASSES else _normalize_layer(lcls, layer["config"], refuse)
            layers.append({"name": lname, "class": lcls, "config": lcfg,
                           "nodes": [{"inputs": [prev], "training": None}]})
            prev = [lname, 0, 0]
        outputs = [prev]
    else:
        for layer in cfg["layers"]:
            lcls = _CLASS_ALIASES.get(layer["class_name"], layer["class_name"])
            lname = layer.get("name") or layer["config"]["name"]
            lcfg = keras_spec(layer, source) if lcls in MODEL_CLASSES else _normalize_layer(lcls, layer["config"], refuse)
            nodes = [_parse_node(n) for n in layer.get("inbound_nodes", [])]
            layers.append({"name": lname, "class": lcls, "config": lcfg, "nodes": nodes})
        inputs, outputs = _refs(cfg["input_layers"]), _refs(cfg["output_layers"])
        # Keras 2 numbers a nested model's calls from 1 (its node 0 is its own construction).
        refs = outputs + [r for layer in layers for n in layer["nodes"] for r in n["inputs"]]
        for layer in layers:
            if layer["class"] in MODEL_CLASSES and any(
                    r[0] == layer["name"] and r[1] == len(layer["nodes"]) for r in refs):
                for r in refs:
                    if r[0] == layer["name"]:
                        r[1] -= 1
        by_name = {layer["name"]: layer for layer in cfg["layers"]}
        for ref in inputs:
            input_shapes.append(_input_shape(by_name[ref[0]]["config"]))
    return {"name": name, "inputs": inputs, "outputs": outputs, "layers": layers,
            "input_shapes": input_shapes, "sequential": cls == "Sequential"}


def _strip_output_activations(spec: dict) -> list[str]:
    """Drop a softmax/sigmoid that produces a model output (see module doc); returns them."""
    used = {tuple(r) for layer in spec["layers"] for n in layer["nodes"] for r in n["inputs"]}
    by_name = {layer["name"]: layer for layer in spec["layers"]}
    dropped = []
    for ref in spec["outputs"]:
        layer, act = by_name.get(ref[0]), "linear"
        if layer is not None and tuple(ref) not in used and len(layer["nodes"]) == 1:
            cfg = layer["config"]
            if layer["class"] in ("Dense", "Conv2D", "Activation") and cfg.get("activation") in ("softmax", "sigmoid"):
                act, cfg["activation"] = cfg["activation"], "linear"
            elif layer["class"] == "Softmax" and cfg.get("axis", -1) in (-1, [-1]):
                act = "softmax"
                layer["class"], layer["config"] = "Activation", {"activation": "linear"}
            elif layer["class"] in MODEL_CLASSES and len(cfg["outputs"]) == 1:
                act = _strip_output_activations(cfg)[0]
        dropped.append(act)
    spec["output_activations"] = dropped
    return dropped


# ---------------------------------------------------------------- reading files

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
            names[_decode(v.attrs["name"])] = key
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
    for lname in (_decode(n) for n in group.attrs["layer_names"]):
        g = group[lname]
        weights = [(w, np.asarray(g[w])) for w in (_decode(n) for n in g.attrs.get("weight_names", []))]
        if not weights:
            continue
        layer = by_layer.get(lname)
        if layer is not None and layer["class"] in MODEL_CLASSES:
            out[lname] = _split_nested(weights, layer["config"], source, lname)
        else:
            out[lname] = [(_role(w, w.split("/")[-2] if "/" in w else lname), a) for w, a in weights]
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
            out.setdefault(owner, []).append((_role(w, scope), a))
    for layer in spec["layers"]:
        if layer["class"] in MODEL_CLASSES and layer["name"] in out:
            out[layer["name"]] = _split_nested(out[layer["name"]], layer["config"], source,
                                               f"{where}/{layer['name']}")
    return out


def read_keras_model(path) -> tuple[dict, dict, str]:
    """(Keras config, {layer: weights}, format) of a `.keras` or full-model `.h5` file."""
    import h5py

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
            spec = keras_spec(config, path)
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
            config = json.loads(_decode(f.attrs["model_config"]))
            spec = keras_spec(config, path)
            return config, _read_k2(f["model_weights"], spec, path), "keras2"
    except (KeyError, RuntimeError, ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        if isinstance(e, WeightConversionError):
            raise
        raise WeightConversionError(f"{path}: damaged Keras file ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------- weights -> variables

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
    import jax

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


def from_keras(path_or_model, logits: bool = True) -> tuple[KerasGraph, dict]:
    """(module, variables) of a Keras model file (`.keras`, full-model `.h5`) or a live model.

    variables: {"params", "batch_stats"} as numpy arrays, shapes checked against the module.
    logits: drop an output softmax/sigmoid (see the module doc); False keeps Keras' outputs.
    """
    if not isinstance(path_or_model, (str, os.PathLike)):
        with tempfile.TemporaryDirectory() as tmp:
            return from_keras(_save_live_model(path_or_model, tmp), logits)
    source = os.fspath(path_or_model)
    config, weights, _ = read_keras_model(source)
    spec = keras_spec(config, source)
    if logits:
        _strip_output_activations(spec)
    else:
        spec["output_activations"] = ["linear"] * len(spec["outputs"])
    variables = _variables(spec, weights, source)
    model = KerasGraph(json.dumps(spec, sort_keys=True))
    for i, shape in enumerate(spec["input_shapes"]):
        if shape is None or any(d is None for d in shape):
            spec["input_shapes"][i] = [32 if d is None else d for d in (shape or [])]
    _check_shapes(KerasGraph(json.dumps(spec, sort_keys=True)), variables, source)
    return model, variables


def output_activations(model: KerasGraph) -> list[str]:
    """The softmax/sigmoid `from_keras(logits=True)` dropped per output ("linear": none)."""
    return list(json.loads(model.spec).get("output_activations", []))


def import_keras(path, out_dir, logits: bool = True) -> tuple[KerasGraph, dict]:
    """`from_keras(path)` saved as a jaxcnn weights folder (Orbax variables + the spec in meta.json)."""
    from jaxcnn.weights.store import save_variables

    model, variables = from_keras(path, logits)
    spec = json.loads(model.spec)
    save_variables(out_dir, variables, metadata={
        "arch": "keras", "source": os.path.basename(os.fspath(path)), "keras_spec": spec,
        "input_shapes": spec["input_shapes"], "output_activations": spec["output_activations"]})
    return model, variables


def load_imported(path) -> tuple[KerasGraph, dict]:
    """The (module, variables) that `import_keras` / `jaxcnn import-keras` saved at `path`."""
    from jaxcnn.weights.store import read_metadata, restore_variables

    meta = read_metadata(path)
    if meta.get("arch") != "keras" or "keras_spec" not in meta:
        raise WeightConversionError(f"{os.fspath(path)}: not a folder written by `jaxcnn import-keras`")
    return KerasGraph(json.dumps(meta["keras_spec"], sort_keys=True)), restore_variables(path)


def main_import(argv=None) -> int:
    """`jaxcnn import-keras FILE OUT_DIR`: a whole Keras model as a jaxcnn weights folder."""
    import argparse

    import jax

    ap = argparse.ArgumentParser(
        prog="jaxcnn import-keras",
        description="Import a whole Keras model (Keras 3 .keras, or a tf_keras/Keras 2 full-model "
                    ".h5) as a Flax module built from its config plus its variables; load it back "
                    "with jaxcnn.weights.load_imported(OUT_DIR).")
    ap.add_argument("file", help="the Keras model file")
    ap.add_argument("out_dir", help="output folder (Orbax variables + meta.json with the model spec)")
    ap.add_argument("--keep-output-activation", action="store_true",
                    help="keep a final softmax/sigmoid (default: drop it, return logits as jaxcnn models do)")
    args = ap.parse_args(argv)
    # A WeightConversionError or a missing file goes to the command line's one-line report (exit 2).
    model, variables = import_keras(args.file, args.out_dir, logits=not args.keep_output_activation)
    spec = json.loads(model.spec)
    n = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(variables))
    dropped = [a for a in spec["output_activations"] if a != "linear"]
    print(f"{spec['name']}: {len(spec['layers'])} layers, {n:,} values from {args.file} -> {args.out_dir}"
          + (f" (output {', '.join(dropped)} dropped: the module returns logits)" if dropped else ""))
    return 0


def imported_module(path, num_classes: int | None = None, **kwargs) -> KerasGraph:
    """The module saved by `import_keras` at `path` (`get_model("keras:PATH")`).

    num_classes, if given (the experiment runner passes the dataset's), must equal the model's
    output width: an imported architecture is taken as it is.
    """
    from jaxcnn.weights.store import read_metadata

    meta = read_metadata(path)
    if meta.get("arch") != "keras" or "keras_spec" not in meta:
        raise WeightConversionError(f"{os.fspath(path)}: not a folder written by `jaxcnn import-keras`")
    bad = sorted(k for k in kwargs if k != "bn_axis_name")
    if bad:
        raise ValueError(f"keras:{os.fspath(path)}: an imported model takes no options ({', '.join(bad)})")
    spec = meta["keras_spec"]
    model = KerasGraph(json.dumps(spec, sort_keys=True), kwargs.get("bn_axis_name"))
    if num_classes is not None:
        import jax
        import jax.numpy as jnp

        shapes = [[32 if d is None else d for d in s] for s in spec["input_shapes"]]
        out = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *[jnp.zeros((1, *s)) for s in shapes]))
        out = jax.eval_shape(lambda v: model.apply(v, *[jnp.zeros((1, *s)) for s in shapes]), out)
        width = out.shape[-1]
        if width not in (num_classes, 1):
            raise ValueError(f"keras:{os.fspath(path)}: the model has {width} outputs, the data "
                             f"{num_classes} classes")
    return model
