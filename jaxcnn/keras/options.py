"""Which Keras layers and options the import carries: `SUPPORTED`, and one layer's config checked.

`normalize_layer` keeps the options of a layer that `KerasGraph` reads and reports every other
one that would change the function (an unknown class, channels_first, a constraint, ...) as a
problem `(what)` appended to a list, so that the spec builder can name all of them at once.
Regularizers (L1, L2, L1L2 on weights and activity) are kept under `regularizers` by role.
"""

from __future__ import annotations

from typing import Any

from jaxcnn.keras.ops import ACTIVATIONS, AUGMENTATION, KERAS_OPS, MODEL_CLASSES, TF_OPS
from jaxcnn.keras.regularizers import parse_regularizer

_CONV = ("filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups",
         "activation", "use_bias")
_DEPTHWISE = ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
              "activation", "use_bias")
_POOL = ("pool_size", "strides", "padding", "data_format")
SUPPORTED: dict[str, tuple[str, ...]] = {
    "InputLayer": (),
    "Conv1D": _CONV, "Conv2D": _CONV, "Conv3D": _CONV,
    "DepthwiseConv1D": _DEPTHWISE, "DepthwiseConv2D": _DEPTHWISE,
    "SeparableConv1D": _DEPTHWISE + ("filters",), "SeparableConv2D": _DEPTHWISE + ("filters",),
    "Conv1DTranspose": _CONV[:-3] + ("output_padding", "activation", "use_bias"),
    "Conv2DTranspose": _CONV[:-3] + ("output_padding", "activation", "use_bias"),
    "Dense": ("units", "activation", "use_bias"),
    "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
    "LayerNormalization": ("axis", "epsilon", "center", "scale", "rms_scaling"),
    "Normalization": ("axis", "mean", "variance", "invert"),
    "LayerScale": ("init_values", "projection_dim"),
    "LSTM": ("units", "activation", "recurrent_activation", "use_bias", "return_sequences"),
    "Dropout": ("rate", "noise_shape"), "StochasticDepth": ("drop_path_rate",),
    "SpatialDropout1D": ("rate", "data_format"), "SpatialDropout2D": ("rate", "data_format"),
    "GaussianNoise": ("stddev",), "GaussianDropout": ("rate",), "ActivityRegularization": ("l1", "l2"),
    "Activation": ("activation",), "ReLU": ("max_value", "negative_slope", "threshold"),
    "LeakyReLU": ("negative_slope", "alpha"), "ELU": ("alpha",), "Softmax": ("axis",),
    "Flatten": ("data_format",), "Reshape": ("target_shape",), "Permute": ("dims",),
    "RepeatVector": ("n",), "Rescaling": ("scale", "offset"), "CustomScaleLayer": ("scale",),
    "ZeroPadding1D": ("padding",), "ZeroPadding2D": ("padding", "data_format"),
    "Cropping1D": ("cropping",), "Cropping2D": ("cropping", "data_format"),
    "UpSampling1D": ("size",), "UpSampling2D": ("size", "data_format", "interpolation"),
    "MaxPooling1D": _POOL, "MaxPooling2D": _POOL, "AveragePooling1D": _POOL, "AveragePooling2D": _POOL,
    "GlobalAveragePooling1D": ("data_format", "keepdims"), "GlobalMaxPooling1D": ("data_format", "keepdims"),
    "GlobalAveragePooling2D": ("data_format", "keepdims"), "GlobalMaxPooling2D": ("data_format", "keepdims"),
    "Add": (), "Subtract": (), "Multiply": (), "Average": (), "Maximum": (), "Minimum": (),
    "Concatenate": ("axis",),
    "TimeDistributed": ("layer",),
    "RandomCrop": ("height", "width", "data_format"), "CenterCrop": ("height", "width", "data_format"),
    "TFOpLambda": ("function",),
    **{cls: ("*",) for cls in AUGMENTATION},  # identity at inference: every option is accepted
}
# Options with no effect on the imported function or its training (weights come from the file).
_IGNORED = {"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape",
            "sparse", "ragged", "optional", "unroll", "implementation", "unit_forget_bias", "seed",
            "use_cudnn", "fused", "synchronized", "renorm_clipping", "renorm_momentum",
            "zero_output_for_mask", "input_dim", "input_length", "quantization_config", "lora_rank",
            "lora_alpha"}
# Options that must keep their default.
_DEFAULTS = {
    "LSTM": {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
             "return_state": False, "go_backwards": False, "stateful": False, "time_major": False,
             "dropout": 0.0, "recurrent_dropout": 0.0},
    "BatchNormalization": {"renorm": False, "virtual_batch_size": None, "adjustment": None},
}
CLASS_ALIASES = {"Convolution2D": "Conv2D", "Convolution1D": "Conv1D", "MaxPool2D": "MaxPooling2D",
                 "AvgPool2D": "AveragePooling2D", "MaxPool1D": "MaxPooling1D", "AvgPool1D": "AveragePooling1D",
                 "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
                 "GlobalAvgPool1D": "GlobalAveragePooling1D", "GlobalMaxPool1D": "GlobalMaxPooling1D",
                 "SeparableConvolution2D": "SeparableConv2D", "Conv2DTranspose": "Conv2DTranspose",
                 "Convolution2DTranspose": "Conv2DTranspose",
                 # the applications' own layers, as tf_keras registers them
                 "Custom>CustomScaleLayer": "CustomScaleLayer", "Custom>LayerScale": "LayerScale",
                 "Custom>StochasticDepth": "StochasticDepth", "Addons>StochasticDepth": "StochasticDepth"}
# A regularizer option -> the weight role it penalizes.
_REG_ROLES = {"kernel_regularizer": "kernel", "bias_regularizer": "bias", "depthwise_regularizer": "depthwise_kernel",
              "pointwise_regularizer": "pointwise_kernel", "recurrent_regularizer": "recurrent_kernel",
              "gamma_regularizer": "gamma", "beta_regularizer": "beta", "activity_regularizer": "activity"}


def _dtype_name(d) -> str | None:
    if isinstance(d, dict):
        return (d.get("config") or {}).get("name")
    return d


def _activation(act, keras2: bool):
    if isinstance(act, dict):  # Keras 3 may serialize a function as {"class_name": "function", ...}
        act = act.get("config", act.get("class_name"))
    if act == "hard_sigmoid" and keras2:  # tf_keras: clip(0.2 x + 0.5); Keras 3: relu6(x + 3) / 6
        return "hard_sigmoid_tf_keras"
    return act


def _number_or_list(v):
    if isinstance(v, dict) and "config" in v:  # a serialized numpy array
        v = v["config"].get("value", v)
    return float(v) if isinstance(v, (int, float)) else v


def normalize_layer(cls: str, cfg: dict, problems: list, keras2: bool = False) -> dict:
    """The options of one Keras layer that `KerasGraph` reads; problems are appended as text."""
    cls = CLASS_ALIASES.get(cls, cls)
    if cls not in SUPPORTED and cls not in MODEL_CLASSES:
        problems.append(f"layer class {cls} is not supported")
        return {}
    dtype = _dtype_name(cfg.get("dtype"))
    if dtype not in (None, "float32") and not (isinstance(dtype, str) and "float32" in dtype):
        problems.append(f"dtype={dtype!r} (float32 only)")
    if SUPPORTED[cls] == ("*",):  # augmentation: identity at inference
        return {"mode": cfg.get("mode", "horizontal_and_vertical")} if cls == "RandomFlip" else {}
    out: dict[str, Any] = {}
    regs: dict[str, dict] = {}
    defaults = _DEFAULTS.get(cls, {})
    for key, value in cfg.items():
        if key in SUPPORTED[cls] or key.endswith("_initializer") or key == "layer":
            continue
        if key in defaults:
            if value != defaults[key] and not (value in (None, 0) and defaults[key] in (0.0, None)):
                problems.append(f"option {key}={value!r} (only {defaults[key]!r})")
            continue
        if key == "groups" and value == 1:  # tf_keras writes it on every convolution
            continue
        if key in _REG_ROLES and value is not None:
            try:
                reg = parse_regularizer(value)
            except ValueError as e:
                problems.append(f"option {key}: {e}")
                continue
            if reg and (reg["l1"] or reg["l2"]):
                regs[_REG_ROLES[key]] = reg
            continue
        if key.endswith("_constraint") and value is not None:
            kind = value.get("class_name", value) if isinstance(value, dict) else value
            problems.append(f"option {key}={kind} (a training-time projection the import cannot carry)")
            continue
        if key in _IGNORED or value in (None, False, 0, {}, [], "") or key.endswith(("_regularizer", "_constraint")):
            continue
        problems.append(f"option {key}={value!r}")
    for key in SUPPORTED[cls]:
        if key in cfg:
            out[key] = cfg[key]
    if out.get("data_format") not in (None, "channels_last"):
        problems.append(f"option data_format={out['data_format']!r} (channels_last only)")
    out.pop("data_format", None)
    if "activation" in out:
        act = _activation(out["activation"], keras2)
        if act not in ACTIVATIONS:
            problems.append(f"option activation={act!r} (see --supported)")
        out["activation"] = act
    if regs:
        out["regularizers"] = regs
    return _specific(cls, cfg, out, problems, keras2)


def _specific(cls: str, cfg: dict, out: dict, problems: list, keras2: bool) -> dict:
    """Per-class checks and defaults."""
    if "padding" in out and isinstance(out["padding"], str) and out["padding"] not in ("valid", "same") and \
            not (cls == "Conv1D" and out["padding"] == "causal"):
        problems.append(f"option padding={out['padding']!r} (valid, same)")
    if cls.startswith(("MaxPooling", "AveragePooling")):
        out.setdefault("strides", None)
    if cls in ("BatchNormalization",):
        axis = out.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if not isinstance(axis, int):
            problems.append(f"option axis={axis!r} (the channel axis only)")
        out["axis"] = axis
        out["trainable"] = bool(cfg.get("trainable", True))
    if cls == "LeakyReLU":
        out = {"negative_slope": float(cfg.get("negative_slope", cfg.get("alpha", 0.3)))}
    if cls == "ReLU":
        out = {k: cfg.get(k) for k in ("max_value", "negative_slope", "threshold") if cfg.get(k) is not None}
    if cls == "Rescaling":
        out = {"scale": _number_or_list(cfg["scale"]), "offset": _number_or_list(cfg.get("offset", 0.0))}
    if cls == "Normalization":
        out["mean"], out["variance"] = _number_or_list(cfg.get("mean")), _number_or_list(cfg.get("variance"))
    if cls == "Reshape":
        out["target_shape"] = list(out["target_shape"])
    if cls == "Dropout" and out.get("noise_shape") is not None:
        out["noise_shape"] = list(out["noise_shape"])
    if cls == "ActivityRegularization":
        out = {"regularizers": {"input": {"l1": float(cfg.get("l1", 0.0)), "l2": float(cfg.get("l2", 0.0))}}}
    if cls == "TFOpLambda" and cfg.get("function") not in TF_OPS:
        problems.append(f"TensorFlow op {cfg.get('function')!r} (supported: {', '.join(sorted(TF_OPS))})")
    if cls == "UpSampling2D" and out.get("interpolation", "nearest") not in ("nearest", "bilinear"):
        problems.append(f"option interpolation={out['interpolation']!r} (nearest, bilinear)")
    if cls == "TimeDistributed":
        inner = cfg["layer"]
        icls = CLASS_ALIASES.get(inner["class_name"], inner["class_name"])
        if icls in MODEL_CLASSES or icls in ("TimeDistributed", "LSTM"):
            problems.append(f"wrapping a {icls}")
            return out
        out["layer"] = {"class": icls, "config": normalize_layer(icls, inner["config"], problems, keras2)}
    return out


def supported_text() -> str:
    """What `jaxcnn import-keras --supported` prints (docs/keras.md holds the same text)."""
    classes = sorted(c for c in SUPPORTED if c not in AUGMENTATION) + ["Sequential", "Functional (nested models)"]
    acts = sorted(a for a in ACTIVATIONS if a != "hard_sigmoid_tf_keras")
    return "\n".join([
        f"Layers: {', '.join(classes)}",
        f"Augmentation (identity at inference; in training RandomFlip flips, the others refuse or, "
        f"with --train-augmentation identity, pass through): {', '.join(AUGMENTATION)}",
        f"Keras operations in functional models: {', '.join(sorted(KERAS_OPS))}",
        f"tf_keras TFOpLambda: {', '.join(sorted(TF_OPS))}",
        f"Activations: {', '.join(acts)}",
        "Regularizers (added to the training loss): L1, L2, L1L2 on weights and activity",
    ])
