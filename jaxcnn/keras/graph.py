"""A linen module built from a Keras model's layer graph (`jaxcnn.keras.from_keras` makes one).

    model = KerasGraph(spec)          # spec: the JSON string of `jaxcnn.keras.keras_spec`'s dict
    logits = model.apply(variables, x, train=False)

The spec is a normalized Keras config: each layer's class, the options we read, and its calls
(`nodes`, each a list of (layer, node, tensor) inputs), nested models as nested specs. Params
live under the Keras layer names (`conv2d`, `dense_1`, `vgg16/block1_conv1`), BatchNorm
statistics under `batch_stats`, so a transfer model's base is `params["vgg16"]`.

Layer semantics are Keras': NHWC, HWIO conv kernels, (in, out) dense kernels, row-major Flatten,
BatchNorm with its moving averages (inference mode where Keras has it: `trainable=False` layers
and calls with `training=False`), Dropout active only with `train=True`. Layers and options
outside `SUPPORTED` never get here: the spec builder refuses them, naming layer and option.
Keras regularizers are sown into the "losses" collection (the train step adds them).
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.keras.layers_conv import (WEIGHT_ORDER as _MORE_WEIGHTS, KerasConv, KerasConvTranspose,
                                      KerasLayerNormalization, KerasLayerScale, KerasNormalization, family)
from jaxcnn.keras.ops import ACTIVATIONS, MODEL_CLASSES, dropout, keras_op, pair, stateless
from jaxcnn.keras.regularizers import penalty
from jaxcnn.models.layers import LSTM, Conv, Dense

# Keras classes with weights, and the Keras order of those weights -> (collection, name).
WEIGHT_ORDER = {
    "Conv2D": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "Dense": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "BatchNormalization": (("gamma", "params", "scale"), ("beta", "params", "bias"),
                           ("moving_mean", "batch_stats", "mean"),
                           ("moving_variance", "batch_stats", "var")),
    "LSTM": (("kernel", "params", "kernel"), ("recurrent_kernel", "params", "recurrent_kernel"),
             ("bias", "params", "bias")),
}
_CONV = ("Conv1D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
_TRANSPOSE = ("Conv1DTranspose", "Conv2DTranspose")
_FLAX_MODULES = {"Normalization": KerasNormalization, "LayerNormalization": KerasLayerNormalization,
                 "LayerScale": KerasLayerScale}
_RNG_LAYERS = ("Dropout", "StochasticDepth", "GaussianNoise", "GaussianDropout", "SpatialDropout1D",
               "SpatialDropout2D", "RandomFlip")


def _order(cls: str):
    if cls in WEIGHT_ORDER:
        return WEIGHT_ORDER[cls]
    return _MORE_WEIGHTS.get(family(cls), ()) if cls in _CONV + _TRANSPOSE or cls in _FLAX_MODULES else ()


def weight_roles(cls: str, cfg: dict) -> list[tuple[str, str, str]]:
    """The (Keras role, collection, name) of each weight a layer saves, in Keras' order."""
    if cls == "TimeDistributed":
        return weight_roles(cfg["layer"]["class"], cfg["layer"]["config"])
    if cls == "Normalization" and cfg.get("mean") is not None:
        return []
    roles = list(_order(cls))
    if not cfg.get("use_bias", True):
        roles = [r for r in roles if r[0] != "bias"]
    if cls == "BatchNormalization":
        roles = [r for r in roles if (r[0] != "gamma" or cfg["scale"]) and (r[0] != "beta" or cfg["center"])]
    if cls == "LayerNormalization":
        rms = cfg.get("rms_scaling", False)
        roles = [r for r in roles if (r[0] != "gamma" or cfg.get("scale", True) or rms)
                 and (r[0] != "beta" or (cfg.get("center", True) and not rms))]
    return roles


@functools.lru_cache(maxsize=64)
def _load(spec: str) -> dict:
    return json.loads(spec)


def _timedistributed(fn, x):
    """Keras TimeDistributed: the inner layer on [B*T, ...], reshaped back to [B, T, ...]."""
    b, t = x.shape[:2]
    y = fn(x.reshape((b * t, *x.shape[2:])))
    return y.reshape((b, t, *y.shape[1:]))


class KerasGraph(nn.Module):
    """The Keras model described by `spec` (JSON); returns its output (a tuple for several).

    Called with one array per model input (or one tuple of them), and `train` as every jaxcnn
    model. BatchNorm statistics update (mutable "batch_stats") only with train=True. Keras
    regularizers are sown as penalties into the "losses" collection (see `jaxcnn.keras.regularizers`).
    """

    spec: str
    # Set by the pmap strategy: BatchNorm statistics over the global batch (jaxcnn.parallel).
    bn_axis_name: str | None = None
    path: str = ""  # the enclosing models' names, for error messages ("sequential/")

    @property
    def input_range(self) -> str:
        """ "0..255" when the model scales its own pixels (a Rescaling layer takes its input, as
        Keras models built for raw images have), else "0..1" (jaxcnn.models.inputs)."""
        return "0..255" if scales_own_inputs(_load(self.spec)) else "0..1"

    def _layer(self, cls: str, cfg: dict, name: str) -> Callable:
        """A function (inputs, train) -> output for one Keras layer; weighted ones own a submodule."""
        act = ACTIVATIONS[cfg.get("activation", "linear")]
        if cls == "InputLayer":
            return lambda xs, train: xs[0]
        if cls == "Conv2D":
            conv = Conv(cfg["filters"], pair(cfg["kernel_size"]), strides=pair(cfg["strides"]),
                        padding=cfg["padding"].upper(), kernel_dilation=pair(cfg["dilation_rate"]),
                        feature_group_count=cfg.get("groups", 1), use_bias=cfg["use_bias"], name=name)
            return lambda xs, train: act(conv(xs[0]))
        if cls in _CONV:
            conv = KerasConv(family(cls), cfg, name=name)
            return lambda xs, train: act(conv(xs[0]))
        if cls in _TRANSPOSE:
            tconv = KerasConvTranspose(cfg, name=name)
            return lambda xs, train: act(tconv(xs[0]))
        if cls in _FLAX_MODULES:
            module = _FLAX_MODULES[cls](cfg, name=name)
            return lambda xs, train: module(xs[0])
        if cls == "Dense":
            dense = Dense(cfg["units"], use_bias=cfg["use_bias"], name=name)
            return lambda xs, train: act(dense(xs[0]))
        if cls == "BatchNormalization":
            frozen = not cfg.get("trainable", True)
            bn = nn.BatchNorm(momentum=cfg["momentum"], epsilon=cfg["epsilon"], use_bias=cfg["center"],
                              use_scale=cfg["scale"], axis_name=self.bn_axis_name, name=name)
            axis = cfg.get("axis", -1)

            def batch_norm(xs, train):
                if axis not in (-1, xs[0].ndim - 1):
                    raise ValueError(f"BatchNormalization {name!r}: axis {axis} is not the last axis "
                                     f"of its {xs[0].ndim}-d input (channels_last only)")
                return bn(xs[0], use_running_average=frozen or not train)
            return batch_norm
        if cls == "LSTM":
            lstm = LSTM(cfg["units"], return_sequences=cfg["return_sequences"], name=name)
            return lambda xs, train: lstm(xs[0])
        if cls == "TimeDistributed":
            inner = self._layer(cfg["layer"]["class"], cfg["layer"]["config"], name)
            return lambda xs, train: _timedistributed(lambda y: inner([y], train), xs[0])
        if cls in MODEL_CLASSES:
            sub = KerasGraph(json.dumps(cfg, sort_keys=True), self.bn_axis_name, f"{self.path}{name}/", name=name)
            return lambda xs, train: sub(*xs, train=train)
        if cls == "Dropout":
            return lambda xs, train: dropout(cfg, xs[0], train, self.make_rng("dropout") if train and cfg["rate"] else None)
        where = self.path + name

        def weightless(xs, train):
            rng = self.make_rng("dropout") if train and cls in _RNG_LAYERS else None
            return stateless(cls, cfg, xs, train, rng, where)
        return weightless

    def _sow_penalties(self, layer: dict, node: int, out):
        """Keras' regularization terms of one layer call: its output's activity (each call) and
        its weights' (the first call only: a shared layer's weights count once, as in Keras)."""
        regs = layer["config"].get("regularizers")
        if not regs or self.is_initializing():
            return
        cfg = layer["config"]
        roles = {role: (col, key) for role, col, key in weight_roles(layer["class"], cfg)}
        for role, reg in regs.items():
            if role == "activity":
                act = ACTIVATIONS[cfg.get("activity_activation", "linear")]  # an output softmax dropped
                for y in (act(o) for o in (out if isinstance(out, tuple) else (out,))):
                    self.sow("losses", f"{layer['name']}/activity", penalty(reg, y) / y.shape[0])
            elif role == "input":  # ActivityRegularization: the penalty of its input (= output)
                self.sow("losses", f"{layer['name']}/activity", penalty(reg, out) / out.shape[0])
        if node:
            return
        weights = self.variables.get("params", {}).get(layer["name"], {})
        for role, reg in regs.items():
            if role in roles and roles[role][0] == "params" and roles[role][1] in weights:
                self.sow("losses", f"{layer['name']}/{role}", penalty(reg, weights[roles[role][1]]))

    @nn.compact
    def __call__(self, *inputs, train: bool = False):
        spec = _load(self.spec)
        if len(inputs) == 1 and isinstance(inputs[0], (tuple, list)):
            inputs = tuple(inputs[0])
        if len(inputs) != len(spec["inputs"]):
            raise ValueError(f"Keras model {spec['name']!r} takes {len(spec['inputs'])} inputs, "
                             f"got {len(inputs)}")
        values: dict[tuple, Any] = {}
        for (lname, node, tensor), x in zip(spec["inputs"], inputs):
            values[(lname, node, tensor)] = jnp.asarray(x)
        calls = {layer["name"]: self._layer(layer["class"], layer["config"], layer["name"])
                 for layer in spec["layers"] if layer["class"] != "InputLayer"}
        pending = [(layer, i, node) for layer in spec["layers"] if layer["class"] != "InputLayer"
                   for i, node in enumerate(layer["nodes"])]
        while pending:  # Keras configs list layers in call order; shared layers may need a second pass
            left = []
            for layer, i, node in pending:
                refs = [tuple(r) for r in node["inputs"]]
                if not all(r in values for r in refs):
                    left.append((layer, i, node))
                    continue
                training = train if node.get("training") is None else (train and node["training"])
                xs = [values[r] for r in refs]
                if layer["class"] == "KerasOp":  # an operation with its constants in the node
                    out = keras_op(layer["config"], xs, node["args"])
                elif node.get("kwargs"):  # TFOpLambda: the node's constants
                    out = stateless(layer["class"], {**layer["config"], **node["kwargs"]}, xs)
                else:
                    out = calls[layer["name"]](xs, training)
                self._sow_penalties(layer, i, out)
                for t, y in enumerate(out if isinstance(out, tuple) else (out,)):
                    values[(layer["name"], i, t)] = y
            if len(left) == len(pending):
                missing = sorted({tuple(r)[0] for _, _, n in left for r in n["inputs"]} - {k[0] for k in values})
                raise ValueError(f"Keras model {spec['name']!r}: no path to layers {missing}")
            pending = left
        outs = tuple(values[tuple(r)] for r in spec["outputs"])
        return outs[0] if len(outs) == 1 else outs


def scales_own_inputs(spec: dict) -> bool:
    """True when every input of the model goes straight into a Rescaling layer (or into a nested
    model that does so)."""
    inputs = {tuple(r) for r in spec["inputs"]}
    takers = [layer for layer in spec["layers"] if layer["class"] != "InputLayer"
              and any(tuple(r) in inputs for n in layer["nodes"] for r in n["inputs"])]
    return bool(takers) and all(layer["class"] == "Rescaling" or (layer["class"] in MODEL_CLASSES
                                                                  and scales_own_inputs(layer["config"]))
                                for layer in takers)


def init_shapes(spec: str) -> list[tuple]:
    """The model's input shapes without the batch axis, as its InputLayers declare them."""
    return [tuple(s) for s in _load(spec)["input_shapes"]]


def eval_variables(model: KerasGraph, batch: int = 1):
    """Shapes of `model`'s variables (no compute) at its declared input shapes."""
    shapes = init_shapes(model.spec)
    xs = [jnp.zeros((batch, *s)) for s in shapes]
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *xs))
