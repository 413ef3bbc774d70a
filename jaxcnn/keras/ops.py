"""Keras' activations and weightless layers as jax functions (the lowest module of the import).

`ACTIVATIONS` maps Keras' activation names to functions (tf_keras' `hard_sigmoid` differs from
Keras 3's and is kept apart as `hard_sigmoid_tf_keras`). `stateless(cls, cfg, xs, train, rng)`
runs one weightless layer with Keras' semantics (NHWC). `AUGMENTATION` lists the random
preprocessing layers: identity at inference as in Keras; at training time RandomFlip flips as
Keras does, the others stop with an error naming the layer unless the import was asked to skip
them (`from_keras(..., train_augmentation="skip")`).
"""

from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

MODEL_CLASSES = ("Model", "Functional", "Sequential")


def _hard_sigmoid(x):  # Keras 3: relu6(x + 3) / 6
    return jnp.clip(x / 6.0 + 0.5, 0.0, 1.0)


ACTIVATIONS: dict[str, Callable] = {
    "linear": lambda x: x, "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh,
    "softmax": lambda x: nn.softmax(x, axis=-1), "log_softmax": lambda x: nn.log_softmax(x, axis=-1),
    "elu": nn.elu, "selu": nn.selu, "softplus": nn.softplus, "softsign": nn.soft_sign,
    "swish": nn.swish, "silu": nn.swish, "exponential": jnp.exp, "relu6": nn.relu6,
    "gelu": functools.partial(nn.gelu, approximate=False),
    "hard_sigmoid": _hard_sigmoid, "hard_silu": lambda x: x * _hard_sigmoid(x),
    "hard_swish": lambda x: x * _hard_sigmoid(x),
    "hard_sigmoid_tf_keras": lambda x: jnp.clip(0.2 * x + 0.5, 0.0, 1.0),
    "mish": lambda x: x * jnp.tanh(nn.softplus(x)),
    "leaky_relu": lambda x: nn.leaky_relu(x, 0.2),
    "celu": nn.celu, "hard_tanh": lambda x: jnp.clip(x, -1.0, 1.0), "log_sigmoid": nn.log_sigmoid,
    "hard_shrink": lambda x: jnp.where(jnp.abs(x) > 0.5, x, 0.0),
    "soft_shrink": lambda x: jnp.sign(x) * jnp.maximum(jnp.abs(x) - 0.5, 0.0),
    "tanh_shrink": lambda x: x - jnp.tanh(x), "squareplus": lambda x: (x + jnp.sqrt(x * x + 4.0)) / 2.0,
    "sparse_plus": lambda x: jnp.where(x <= -1.0, 0.0, jnp.where(x >= 1.0, x, (x + 1.0) ** 2 / 4.0)),
    "glu": lambda x: nn.glu(x, axis=-1),
}

# Random preprocessing layers: identity at inference (Keras' `training=False`).
AUGMENTATION = (
    "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomBrightness", "RandomHeight", "RandomWidth", "RandomSaturation", "RandomHue",
    "RandomGrayscale", "RandomColorJitter", "RandomColorDegeneration", "RandomSharpness",
    "RandomShear", "RandomPerspective", "RandomErasing", "RandomGaussianBlur", "RandomInvert",
    "RandomPosterization", "RandomElasticTransform", "AugMix", "CutMix", "MixUp", "RandAugment",
)
# Layers that only add noise in training (identity at inference), done here as Keras does.
NOISE = ("GaussianNoise", "GaussianDropout", "SpatialDropout1D", "SpatialDropout2D", "ActivityRegularization")


def pair(v, n: int = 2) -> tuple:
    return (v,) * n if isinstance(v, int) else tuple(v)


def pad_pairs(padding, n: int = 2) -> tuple:
    """Keras' ZeroPadding/Cropping argument -> ((before, after),) * n."""
    if isinstance(padding, int):
        return ((padding, padding),) * n
    return tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)


def _augment(cls: str, cfg: dict, x, train: bool, rng, path: str):
    if not train or cfg.get("on_train") == "identity":
        return x
    if cls == "RandomFlip":
        mode = cfg.get("mode", "horizontal_and_vertical")
        flips = jax.random.uniform(rng, (x.shape[0],) + (1,) * (x.ndim - 1)) <= 0.5
        if "horizontal" in mode:
            x = jnp.where(flips, jnp.flip(x, axis=-2), x)
        if "vertical" in mode:
            x = jnp.where(flips, jnp.flip(x, axis=-3), x)
        return x
    raise ValueError(f"layer {path!r} ({cls}) augments images at training time, which the import "
                     f"does not reproduce; import with train_augmentation='skip' (identity) and augment "
                     f"with jaxcnn (augment=...), or remove the layer")


def _noise(cls: str, cfg: dict, x, train: bool, rng):
    if cls == "ActivityRegularization" or not train:
        return x  # its penalty is sown by the graph
    if cls == "GaussianNoise":
        return x + cfg["stddev"] * jax.random.normal(rng, x.shape, x.dtype)
    if cls == "GaussianDropout":
        std = (cfg["rate"] / (1.0 - cfg["rate"])) ** 0.5
        return x * (1.0 + std * jax.random.normal(rng, x.shape, x.dtype))
    if cls.startswith("SpatialDropout"):
        keep = jax.random.bernoulli(rng, 1.0 - cfg["rate"], (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],))
        return jnp.where(keep, x / (1.0 - cfg["rate"]), 0.0)
    raise ValueError(f"{cls} at training time is not supported (identity at inference only)")


def dropout(cfg: dict, x, train: bool, rng):
    """Keras Dropout, `noise_shape` too (a 1 broadcasts the mask over that axis)."""
    rate = cfg["rate"]
    if not train or rate == 0.0:
        return x
    shape = list(x.shape)
    for i, n in enumerate(cfg.get("noise_shape") or []):
        if n is not None:
            shape[i] = n
    keep = jax.random.bernoulli(rng, 1.0 - rate, tuple(shape))
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _pool(cls: str, cfg: dict, x):
    nd = x.ndim - 2
    window = pair(cfg["pool_size"], nd)
    strides = pair(cfg.get("strides") or cfg["pool_size"], nd)
    padding = cfg["padding"].upper()
    if cls.startswith("MaxPooling"):
        return nn.max_pool(x, window, strides, padding)
    return nn.avg_pool(x, window, strides, padding, count_include_pad=False)


def _smart_resize(x, height: int, width: int):
    """keras.preprocessing.image.smart_resize: a centred crop to the aspect ratio, then bilinear."""
    h, w = x.shape[1:3]
    ch = min(h, int(w * height / width))
    cw = min(w, int(h * width / height))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = x[:, top:top + ch, left:left + cw]
    if (ch, cw) == (height, width):
        return x
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "bilinear", antialias=False)


def stateless(cls: str, cfg: dict, xs: list, train: bool = False, rng=None, path: str = ""):
    """The output of one weightless Keras layer on its inputs `xs`."""
    x = xs[0]
    act = ACTIVATIONS[cfg.get("activation", "linear")]
    if cls == "Activation":
        return act(x)
    if cls == "ReLU":
        y = jnp.where(x >= cfg.get("threshold", 0.0), x, cfg.get("negative_slope", 0.0) * (x - cfg.get("threshold", 0.0)))
        return y if cfg.get("max_value") is None else jnp.minimum(y, cfg["max_value"])
    if cls == "LeakyReLU":
        return nn.leaky_relu(x, cfg["negative_slope"])
    if cls == "ELU":
        return jnp.where(x > 0, x, cfg.get("alpha", 1.0) * jnp.expm1(x))
    if cls == "Softmax":
        return nn.softmax(x, axis=cfg.get("axis", -1))
    if cls == "Flatten":
        return x.reshape((x.shape[0], -1))
    if cls == "Reshape":
        return x.reshape((x.shape[0], *cfg["target_shape"]))
    if cls == "Permute":
        return jnp.transpose(x, (0, *cfg["dims"]))
    if cls == "RepeatVector":
        return jnp.repeat(x[:, None, :], cfg["n"], axis=1)
    if cls == "Rescaling":
        return x * jnp.asarray(cfg["scale"], x.dtype) + jnp.asarray(cfg["offset"], x.dtype)
    if cls == "CustomScaleLayer":  # InceptionResNetV2's residual scaling
        return xs[0] + xs[1] * cfg["scale"]
    if cls in ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"):
        pads = pad_pairs(cfg["padding"], x.ndim - 2)
        return jnp.pad(x, ((0, 0), *pads, (0, 0)))
    if cls in ("Cropping1D", "Cropping2D", "Cropping3D"):
        crops = pad_pairs(cfg["cropping"], x.ndim - 2)
        index = tuple(slice(a, n - b) for (a, b), n in zip(crops, x.shape[1:-1]))
        return x[(slice(None), *index)]
    if cls in ("UpSampling1D", "UpSampling2D"):
        size = pair(cfg["size"], x.ndim - 2)
        if cfg.get("interpolation", "nearest") == "nearest":
            for axis, s in enumerate(size, start=1):
                x = jnp.repeat(x, s, axis=axis)
            return x
        shape = (x.shape[0], *(n * s for n, s in zip(x.shape[1:-1], size)), x.shape[-1])
        return jax.image.resize(x, shape, cfg["interpolation"], antialias=False)
    if cls in ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"):
        return _pool(cls, cfg, x)
    if cls.startswith("Global"):
        axes = tuple(range(1, x.ndim - 1))
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
    if cls == "Minimum":
        return functools.reduce(jnp.minimum, xs)
    if cls == "Concatenate":
        return jnp.concatenate(xs, axis=cfg.get("axis", -1))
    if cls in ("Dropout", "StochasticDepth"):
        if cls == "StochasticDepth":  # ConvNeXt: drop whole residual branches per example
            cfg = {"rate": cfg["drop_path_rate"], "noise_shape": [None] + [1] * (x.ndim - 1)}
        return dropout(cfg, x, train, rng)
    if cls in NOISE:
        return _noise(cls, cfg, x, train, rng)
    if cls in AUGMENTATION:
        return _augment(cls, cfg, x, train, rng, path)
    if cls == "RandomCrop":  # at inference Keras resizes to the target (smart_resize)
        if train and cfg.get("on_train") != "identity":
            return _augment(cls, cfg, x, train, rng, path)
        return _smart_resize(x, cfg["height"], cfg["width"])
    if cls == "CenterCrop":
        return _smart_resize(x, cfg["height"], cfg["width"])
    if cls == "TFOpLambda":
        return tf_op(cfg, xs)
    raise ValueError(f"KerasGraph: no implementation for Keras layer class {cls!r}")


# tf_keras writes `x + 3.0`, `x * (1 / 6)` in a functional model as TFOpLambda layers.
TF_OPS = {"__operators__.add": jnp.add, "math.add": jnp.add, "math.multiply": jnp.multiply,
          "math.subtract": jnp.subtract, "math.truediv": jnp.divide, "math.divide": jnp.divide,
          "nn.relu6": lambda x: nn.relu6(x), "nn.relu": lambda x: nn.relu(x),
          "math.sigmoid": lambda x: nn.sigmoid(x), "nn.silu": lambda x: nn.swish(x),
          "nn.swish": lambda x: nn.swish(x)}


def tf_op(cfg: dict, xs: list):
    """One TFOpLambda call: the op on the node's tensor and its recorded constant (`y`)."""
    args = list(xs) + ([cfg["y"]] if cfg.get("y") is not None else [])
    return TF_OPS[cfg["function"]](*args)


# Keras 3 writes operations on KerasTensors (`x + 3.0`, `ops.mean(x, axis)`, `x[:, 1:]`) into a
# functional config as nodes of `keras.src.ops.*` classes, their constants in the node's args.
_BINARY = {"Add": jnp.add, "Subtract": jnp.subtract, "Multiply": jnp.multiply, "Divide": jnp.divide,
           "TrueDivide": jnp.divide, "Maximum": jnp.maximum, "Minimum": jnp.minimum, "Power": jnp.power}
_REDUCE = {"Mean": jnp.mean, "Sum": jnp.sum, "Max": jnp.max, "Min": jnp.min}
_UNARY = {"Relu": nn.relu, "Relu6": nn.relu6, "Sigmoid": nn.sigmoid, "Silu": nn.swish, "Swish": nn.swish,
          "HardSigmoid": _hard_sigmoid, "HardSilu": lambda x: x * _hard_sigmoid(x), "Tanh": jnp.tanh,
          "Exp": jnp.exp, "Sqrt": jnp.sqrt, "Abs": jnp.abs, "Negative": jnp.negative, "Square": jnp.square,
          "Gelu": functools.partial(nn.gelu, approximate=False)}
KERAS_OPS = tuple(_BINARY) + tuple(_REDUCE) + tuple(_UNARY) + (
    "Concatenate", "GetItem", "Reshape", "Transpose", "ExpandDims", "Squeeze", "Softmax")


def _fill(template, xs):
    """A node's args with its tensors put back ({"__tensor__": i}) and slices rebuilt."""
    if isinstance(template, dict):
        if "__tensor__" in template:
            return xs[template["__tensor__"]]
        if "__slice__" in template:
            return slice(*template["__slice__"])
        return {k: _fill(v, xs) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, xs) for v in template]
    return template


def keras_op(cfg: dict, xs: list, args_template: list):
    """One `keras.src.ops` node: the op named in `cfg["op"]` on the node's filled-in args."""
    op, args = cfg["op"], _fill(args_template, xs)
    if op in _BINARY:
        return _BINARY[op](args[0], args[1])
    if op in _UNARY:
        return _UNARY[op](args[0])
    if op in _REDUCE:
        return _REDUCE[op](args[0], axis=_axis(cfg.get("axis")), keepdims=bool(cfg.get("keepdims", False)))
    if op == "Concatenate":
        return jnp.concatenate(args[0], axis=cfg.get("axis", 0))
    if op == "GetItem":
        index = args[1]
        return args[0][tuple(index) if isinstance(index, list) else index]
    if op == "Reshape":
        return jnp.reshape(args[0], [-1 if d is None else d for d in cfg.get("newshape", args[1:2][0] if len(args) > 1 else None)])
    if op == "Transpose":
        return jnp.transpose(args[0], cfg.get("axes"))
    if op == "ExpandDims":
        return jnp.expand_dims(args[0], _axis(cfg["axis"]))
    if op == "Squeeze":
        return jnp.squeeze(args[0], _axis(cfg.get("axis")))
    if op == "Softmax":
        return nn.softmax(args[0], axis=cfg.get("axis", -1))
    raise ValueError(f"KerasGraph: no implementation for Keras op {op!r}")


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis
