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
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.layers import LSTM, Conv, Dense, max_pool

ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda x: x, "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh,
    "softmax": lambda x: nn.softmax(x, axis=-1), "elu": nn.elu, "selu": nn.selu,
    "softplus": nn.softplus, "softsign": nn.soft_sign, "swish": nn.swish, "silu": nn.swish,
    "exponential": jnp.exp, "relu6": nn.relu6,
    "gelu": functools.partial(nn.gelu, approximate=False),
}

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
MODEL_CLASSES = ("Model", "Functional", "Sequential")


def weight_roles(cls: str, cfg: dict) -> list[tuple[str, str, str]]:
    """The (Keras role, collection, name) of each weight a layer saves, in Keras' order."""
    if cls == "TimeDistributed":
        return weight_roles(cfg["layer"]["class"], cfg["layer"]["config"])
    roles = list(WEIGHT_ORDER.get(cls, ()))
    if cls in ("Conv2D", "Dense", "LSTM") and not cfg.get("use_bias", True):
        roles = [r for r in roles if r[0] != "bias"]
    if cls == "BatchNormalization":
        roles = [r for r in roles if (r[0] != "gamma" or cfg["scale"]) and (r[0] != "beta" or cfg["center"])]
    return roles


@functools.lru_cache(maxsize=64)
def _load(spec: str) -> dict:
    return json.loads(spec)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pad2d(padding):
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    a, b = padding
    return (_pair(a) if not isinstance(a, int) else (a, a), _pair(b) if not isinstance(b, int) else (b, b))


def _timedistributed(fn, x):
    """Keras TimeDistributed: the inner layer on [B*T, ...], reshaped back to [B, T, ...]."""
    b, t = x.shape[:2]
    y = fn(x.reshape((b * t, *x.shape[2:])))
    return y.reshape((b, t, *y.shape[1:]))


class KerasGraph(nn.Module):
    """The Keras model described by `spec` (JSON); returns its output (a tuple for several).

    Called with one array per model input (or one tuple of them), and `train` as every jaxcnn
    model. BatchNorm statistics update (mutable "batch_stats") only with train=True.
    """

    spec: str
    # Set by the pmap strategy: BatchNorm statistics over the global batch (jaxcnn.parallel).
    bn_axis_name: str | None = None

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
            conv = Conv(cfg["filters"], _pair(cfg["kernel_size"]), strides=_pair(cfg["strides"]),
                        padding=cfg["padding"].upper(), kernel_dilation=_pair(cfg["dilation_rate"]),
                        feature_group_count=cfg.get("groups", 1), use_bias=cfg["use_bias"], name=name)
            return lambda xs, train: act(conv(xs[0]))
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
        if cls == "Dropout":
            drop = nn.Dropout(cfg["rate"])
            return lambda xs, train: drop(xs[0], deterministic=not train)
        if cls == "TimeDistributed":
            inner = self._layer(cfg["layer"]["class"], cfg["layer"]["config"], name)
            return lambda xs, train: _timedistributed(lambda y: inner([y], train), xs[0])
        if cls in MODEL_CLASSES:
            sub = KerasGraph(json.dumps(cfg, sort_keys=True), self.bn_axis_name, name=name)
            return lambda xs, train: sub(*xs, train=train)
        return functools.partial(_stateless, cls, cfg, act)

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
                out = calls[layer["name"]]([values[r] for r in refs], training)
                for t, y in enumerate(out if isinstance(out, tuple) else (out,)):
                    values[(layer["name"], i, t)] = y
            if len(left) == len(pending):
                missing = sorted({tuple(r)[0] for _, _, n in left for r in n["inputs"]} - {k[0] for k in values})
                raise ValueError(f"Keras model {spec['name']!r}: no path to layers {missing}")
            pending = left
        outs = tuple(values[tuple(r)] for r in spec["outputs"])
        return outs[0] if len(outs) == 1 else outs


def _stateless(cls: str, cfg: dict, act: Callable, xs: list, train: bool):
    """The weightless Keras layers."""
    x = xs[0]
    if cls == "Activation":
        return act(x)
    if cls == "ReLU":
        y = nn.relu(x)
        return y if cfg.get("max_value") is None else jnp.minimum(y, cfg["max_value"])
    if cls == "LeakyReLU":
        return nn.leaky_relu(x, cfg["negative_slope"])
    if cls == "Softmax":
        return nn.softmax(x, axis=cfg.get("axis", -1))
    if cls == "Flatten":
        return x.reshape((x.shape[0], -1))
    if cls == "Reshape":
        return x.reshape((x.shape[0], *cfg["target_shape"]))
    if cls == "Rescaling":
        return x * cfg["scale"] + cfg["offset"]
    if cls == "ZeroPadding2D":
        (t, b), (l, r) = _pad2d(cfg["padding"])
        return jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
    if cls in ("MaxPooling2D", "AveragePooling2D"):
        window, strides = _pair(cfg["pool_size"]), _pair(cfg["strides"] or cfg["pool_size"])
        padding = cfg["padding"].upper()
        if cls == "MaxPooling2D":
            if window == strides and window[0] == window[1] and padding == "VALID":
                return max_pool(x, window[0])
            return nn.max_pool(x, window, strides, padding)
        return nn.avg_pool(x, window, strides, padding, count_include_pad=False)
    if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
               "GlobalMaxPooling1D"):
        axes = (1, 2) if cls.endswith("2D") else (1,)
        reduce = jnp.mean if "Average" in cls else jnp.max
        return reduce(x, axis=axes, keepdims=bool(cfg.get("keepdims", False)))
    if cls == "Add":
        return functools.reduce(jnp.add, xs)
    if cls == "Subtract":
        return xs[0] - xs[1]
    if cls == "Multiply":
        return functools.reduce(jnp.multiply, xs)
    if cls == "Average":
        return functools.reduce(jnp.add, xs) / len(xs)
    if cls == "Maximum":
        return functools.reduce(jnp.maximum, xs)
    if cls == "Concatenate":
        return jnp.concatenate(xs, axis=cfg.get("axis", -1))
    raise ValueError(f"KerasGraph: no implementation for Keras layer class {cls!r}")


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
