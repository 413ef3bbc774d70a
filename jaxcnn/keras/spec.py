"""Keras model configs -> the normalized layer spec that `KerasGraph` runs.

`keras_spec` reads a Sequential or functional config (nested models and shared layers too),
keeps the options of each layer that `KerasGraph` uses, and refuses everything else with
`WeightConversionError` naming the file, the layer, its class and the option: never a silently
different model. `SUPPORTED` lists the layer classes and the options read; training-only options
the import cannot carry (regularizers, constraints, recurrent dropout) are refused as well.
`strip_output_activations` drops a final softmax/sigmoid (jaxcnn models return logits).
"""

from __future__ import annotations

from typing import Any

from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.graph import ACTIVATIONS, MODEL_CLASSES

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


def strip_output_activations(spec: dict) -> list[str]:
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
                act = strip_output_activations(cfg)[0]
        dropped.append(act)
    spec["output_activations"] = dropped
    return dropped
