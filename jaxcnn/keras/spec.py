"""Keras model configs -> the normalized layer spec that `KerasGraph` runs.

`keras_spec` reads a Sequential or functional config (nested models and shared layers too),
keeps the options of each layer that `KerasGraph` uses (`jaxcnn.keras.options`), and refuses
everything else with one `WeightConversionError` naming the file and every layer that cannot
come over (count, path, class, option; at most ~200 characters): never a silently different
model.
`strip_output_activations` drops a final softmax/sigmoid (jaxcnn models return logits).
"""

from __future__ import annotations

from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.ops import KERAS_OPS, MODEL_CLASSES
from jaxcnn.keras.options import CLASS_ALIASES, SUPPORTED, normalize_layer  # noqa: F401  (SUPPORTED re-exported)

MAX_MESSAGE = 200  # characters of a refusal, beyond the source's name


class _Problems:
    """Every layer the import cannot carry, with its path through nested models."""

    def __init__(self, source: str, keras2: bool):
        self.source, self.keras2, self.items = source, keras2, []

    def layer(self, path: str, cls: str, cfg: dict) -> dict:
        found: list[str] = []
        out = normalize_layer(cls, cfg, found, self.keras2)
        self.items += [(path, CLASS_ALIASES.get(cls, cls), what) for what in found]
        return out

    def op(self, path: str, layer: dict) -> dict:
        op = layer["class_name"]
        if op not in KERAS_OPS:
            self.items.append((path, op, f"Keras operation {layer['module'].split('.')[-1]}.{op} "
                                         f"(supported: see --supported)"))
        return {"op": op, **{k: v for k, v in layer["config"].items() if k != "name"}}

    def raise_if_any(self):
        if not self.items:
            return
        layers = list(dict.fromkeys((p, c) for p, c, _ in self.items))
        if len(layers) == 1:
            (path, cls), what = layers[0], "; ".join(w for _, _, w in self.items)
            msg = f"layer {path!r} ({cls}): {what} is not supported"
        else:
            parts, shown = [], 0
            for path, cls in layers:
                what = next(w for p, c, w in self.items if (p, c) == (path, cls)).split(" (")[0]
                part = f"{path} ({cls}: {what})" if not what.startswith("layer class") else f"{path} ({cls})"
                if shown and len(", ".join(parts + [part])) > MAX_MESSAGE - 45:
                    break
                parts.append(part)
                shown += 1
            more = f" and {len(layers) - shown} more" if shown < len(layers) else ""
            msg = f"{len(layers)} layers cannot be imported: {', '.join(parts)}{more}"
        if len(msg) > MAX_MESSAGE:
            msg = msg[:MAX_MESSAGE - 3] + "..."
        raise WeightConversionError(f"{self.source}: {msg} (see `jaxcnn import-keras --supported`)")


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


def _template(obj, count: list):
    """A Keras 3 node's args with each tensor replaced by its position ({"__tensor__": i})."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            count[0] += 1
            return {"__tensor__": count[0] - 1}
        if obj.get("class_name") == "__slice__":
            c = obj["config"]
            return {"__slice__": [c.get("start"), c.get("stop"), c.get("step")]}
        return {k: _template(v, count) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_template(v, count) for v in obj]
    return obj


def _parse_node(node, cls: str = "") -> dict:
    if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
        kwargs = node.get("kwargs") or {}
        out = {"inputs": [list(t) for t in _history(node.get("args", []))], "training": kwargs.get("training")}
        if cls == "KerasOp":
            out["args"] = _template(node.get("args", []), [0])
        return out
    # Keras 2: [[name, node, tensor, kwargs], ...]
    entries = [node] if node and isinstance(node[0], str) else node
    kwargs = entries[0][3] if entries and len(entries[0]) > 3 and isinstance(entries[0][3], dict) else {}
    out = {"inputs": [[e[0], int(e[1]), int(e[2])] for e in entries], "training": kwargs.get("training")}
    if cls == "TFOpLambda":  # the op's second operand: a constant (x + 3.0 -> {"y": 3.0}) or a tensor
        y = kwargs.get("y")
        if isinstance(y, list) and len(y) >= 3 and isinstance(y[0], str):
            out["inputs"].append([y[0], int(y[1]), int(y[2])])
            out["kwargs"] = {"tensor_y": True}
        else:
            out["kwargs"] = {"y": y} if isinstance(y, (int, float)) else {}
    return out


def _refs(v) -> list[list]:
    if v and isinstance(v[0], str):
        return [[v[0], int(v[1]), int(v[2])]]
    return [[r[0], int(r[1]), int(r[2])] for r in v]


def _input_shape(cfg: dict) -> list | None:
    shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
    return list(shape[1:]) if shape else None


def keras_spec(config: dict, source: str = "<keras model>") -> dict:
    """Keras' model config ({"class_name", "config"}) -> the normalized spec `KerasGraph` runs.

    Refuses (`WeightConversionError`) with every layer that cannot come over, named by its path
    through nested models (`sequential/random_flip`).
    """
    problems = _Problems(source, keras2="module" not in config)  # Keras 3 configs name their module
    spec = _spec(config, problems, "")
    problems.raise_if_any()
    return spec


def _spec(config: dict, problems: _Problems, prefix: str) -> dict:
    cls, cfg = config["class_name"], config["config"]
    name = cfg.get("name", "model")
    if cls not in MODEL_CLASSES:
        raise WeightConversionError(f"{problems.source}: the file's top level ({cls}) is not a Keras model")
    layers, input_shapes = [], []

    def layer_spec(layer, lname):
        lcls = CLASS_ALIASES.get(layer["class_name"], layer["class_name"])
        if str(layer.get("module", "")).startswith("keras.src.ops"):  # `x + 3.0`, `ops.mean(x)`
            return "KerasOp", problems.op(prefix + lname, layer)
        if lcls in MODEL_CLASSES:
            return lcls, _spec(layer, problems, f"{prefix}{lname}/")
        return lcls, problems.layer(prefix + lname, lcls, layer["config"])

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
                shape = _spec(raw[0], _Problems(problems.source, problems.keras2), "")["input_shapes"][0]
            if shape is None:
                raise WeightConversionError(f"{problems.source}: Sequential model {name!r} has no input "
                                            f"shape (build it with keras.Input)")
            prev = [f"{name}_input", 0, 0]
            input_shapes.append(shape)
        inputs = [prev]
        for layer in raw:
            lname = layer["config"]["name"]
            lcls, lcfg = layer_spec(layer, lname)
            layers.append({"name": lname, "class": lcls, "config": lcfg,
                           "nodes": [{"inputs": [prev], "training": None}]})
            prev = [lname, 0, 0]
        outputs = [prev]
    else:
        for layer in cfg["layers"]:
            lname = layer.get("name") or layer["config"]["name"]
            lcls, lcfg = layer_spec(layer, lname)
            nodes = [_parse_node(n, lcls) for n in layer.get("inbound_nodes", [])]
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
                if "activity" in cfg.get("regularizers", {}):  # Keras penalizes the activated output
                    cfg["activity_activation"] = act
            elif layer["class"] == "Softmax" and cfg.get("axis", -1) in (-1, [-1]):
                act = "softmax"
                layer["class"], layer["config"] = "Activation", {"activation": "linear"}
            elif layer["class"] in MODEL_CLASSES and len(cfg["outputs"]) == 1:
                act = strip_output_activations(cfg)[0]
        dropped.append(act)
    spec["output_activations"] = dropped
    return dropped
