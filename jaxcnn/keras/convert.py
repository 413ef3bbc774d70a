"""Keras weight files -> the variables of a registered jaxcnn model, and Orbax folders of them.

    variables = load_keras_h5("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
    model, variables = load_keras_weights("mnist_cnn", "weights.h5")   # any registered model
    convert_keras_h5("vgg16", "in.h5", "out_dir")                       # saved with Orbax

Both frameworks use NHWC with HWIO conv kernels and (in, out) dense kernels, and Flatten is
row-major over (H, W, C) in both, so every array copies as is. BatchNorm's gamma, beta,
moving_mean, moving_variance become params scale, bias and batch_stats mean, var. The files are
read by `jaxcnn.keras.h5`; every name, role and shape is checked here against the jaxcnn model.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.h5 import object_order, read_keras_h5
from jaxcnn.models import TUTORIAL_INPUT_SHAPES, get_model
from jaxcnn.checkpoint.weights import save_variables

ARCHS = ("vgg16", "resnet50")
# Layers that exist only with include_top=True.
TOP_LAYERS = {"vgg16": ("fc1", "fc2", "predictions"), "resnet50": ("predictions",)}
# Published keras.applications files (the URLs and md5 hashes keras itself uses).
_KERAS_APP_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
PUBLISHED = {
    ("vgg16", True): ("vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                      "64373286793e3c8b2b4e3219cbf3544b"),
    ("vgg16", False): ("vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                       "6d6bbae143d832006294945121d1f1fc"),
    ("resnet50", True): ("resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                         "2cb95161c43110f7111970584f804107"),
    ("resnet50", False): ("resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                          "4d473c1dd8becc155b73f8504c6f6626"),
}

# Positional roles when names carry none (Keras 3 `vars/0..n`), by layer kind.
_ORDER = {"conv": ("kernel", "bias"), "dense": ("kernel", "bias"),
          "bn": ("gamma", "beta", "moving_mean", "moving_variance")}



def build_model(arch: str, include_top: bool = True, num_classes: int = 1000, **kw):
    """The jaxcnn module for `arch` in Keras' layout."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHS)}")
    return get_model(arch, include_top=include_top, num_classes=num_classes, **kw)


def _expected_shapes(arch: str, include_top: bool, num_classes: int, input_shape=(224, 224, 3)):
    model = build_model(arch, include_top, num_classes)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape))))


def _layer_kind(p) -> str:
    if "scale" in p:
        return "bn"
    return "conv" if len(p["kernel"].shape) == 4 else "dense"


def convert_layers(layers: dict, arch: str, include_top: bool | None = None,
                   source: str = "<weights>", input_shape=(224, 224, 3)) -> dict[str, Any]:
    """Map `read_keras_h5`'s layers onto `arch`'s variables; checks names, roles and shapes.

    Every weighted layer of the file must be used (a VGG19 file is no VGG16, a transfer
    model's head is no part of its base), except the top layers with include_top=False.
    `input_shape` decides the top's Flatten size (VGG16's fc1 expects 7x7x512 at 224x224).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHS)}")
    if any(k.startswith("@") for k in layers):
        layers = _match_by_creation_order(layers, arch, source)
    top = TOP_LAYERS[arch]
    has_top = all(name in layers for name in top)
    if include_top is None:
        include_top = has_top
    if include_top and not has_top:
        missing = [n for n in top if n not in layers]
        raise WeightConversionError(
            f"{source}: include_top=True but the file has no layer {missing[0]!r} "
            f"(a notop file?); convert with include_top=False")
    num_classes = 1000
    if include_top:
        num_classes = int(dict((r, a) for r, a in _assign_roles(layers["predictions"], "dense",
                                                                "predictions", source))["bias"].shape[0])
    expected = _expected_shapes(arch, include_top, num_classes, tuple(input_shape))
    names = list(expected["params"])
    extra = [n for n in layers if n not in names and not (n in top and not include_top)]
    if not any(n in layers for n in names):
        if arch == "resnet50" and "res2a_branch2a" in layers:
            raise WeightConversionError(
                f"{source}: the pre-2019 Keras ResNet50 file (res2a_branch2a, bn_conv1 names) "
                f"belongs to a different network (no pool1 padding, BatchNorm epsilon 1e-3); "
                f"use resnet50_weights_tf_dim_ordering_tf_kernels.h5 from keras-applications")
        raise WeightConversionError(
            f"{source}: holds no layer of {arch} (expected e.g. {names[0]!r}; the file has "
            f"{', '.join(sorted(layers)[:6]) or 'no weighted layers'}): wrong file or architecture")
    if extra and any(n in layers for n in names):
        hint = (" (a transfer model's head? convert the file as vgg16_transfer_a/b/c or "
                "resnet50_transfer_a/c, or import it whole with `jaxcnn import-keras`)"
                if all(re.fullmatch(r"(dense|flatten|dropout|global_\w+)(_\d+)?", n) for n in extra)
                else " (a deeper sibling such as VGG19 or ResNet101, or another network?)")
        raise WeightConversionError(
            f"{source}: the file has layers that {arch} does not use: {', '.join(extra[:6])}"
            f"{' ...' if len(extra) > 6 else ''}{hint}")
    params, stats = {}, {}
    for name in names:
        p = expected["params"][name]
        if name not in layers:
            raise WeightConversionError(f"{source}: layer {name!r} of {arch} is missing from the file")
        kind = _layer_kind(p)
        w = dict(_assign_roles(layers[name], kind, name, source))
        if kind == "bn":
            s = expected["batch_stats"][name]
            got = {"scale": w["gamma"], "bias": w["beta"]}
            want = {"scale": p["scale"].shape, "bias": p["bias"].shape}
            stats[name] = {"mean": _check(w["moving_mean"], s["mean"].shape, source, name, "moving_mean"),
                           "var": _check(w["moving_variance"], s["var"].shape, source, name, "moving_variance")}
        else:
            got = {"kernel": w["kernel"], "bias": w["bias"]}
            want = {"kernel": p["kernel"].shape, "bias": p["bias"].shape}
        if kind == "dense" and tuple(got["kernel"].shape)[1:] == tuple(want["kernel"])[1:] and \
                tuple(got["kernel"].shape) != tuple(want["kernel"]):
            raise WeightConversionError(
                f"{source}: layer {name!r} kernel has shape {tuple(got['kernel'].shape)}, expected "
                f"{tuple(want['kernel'])} at input {'x'.join(map(str, input_shape))}: the file was "
                f"saved at another input size (give input_shape / --input-shape)")
        params[name] = {k: _check(got[k], want[k], source, name, k) for k in want}
    return {"params": params, "batch_stats": stats}


_KERAS3_CLASS = {"conv": "conv2d", "dense": "dense", "bn": "batch_normalization"}


def _keras_layer_order(names) -> list[str]:
    """Our layer names in Keras' `model.layers` order (which numbers Keras 3's objects): Keras
    lists a ResNet block's shortcut (`_0_`) after `_1_` and `_2_`; we create it first."""
    def rank(i_name):
        i, name = i_name
        m = re.fullmatch(r"(conv\d_block\d+)_(\d)_(conv|bn)", name)
        return (i, 0) if m is None or m.group(2) != "0" else (i + 5, 0.5)  # after _2_, before _3_
    return [name for _, name in sorted(enumerate(names), key=rank)]


def _match_by_creation_order(layers: dict, arch: str, source: str) -> dict:
    """Keras 3 files without layer names: the n-th `conv2d_*` object is the n-th conv, etc."""
    by_class: dict[str, list] = {}
    for key in layers:  # already in creation order per class (see _read_keras3)
        cls, _ = object_order(key.lstrip("@"))
        by_class.setdefault(cls, []).append(key)
    n_dense = len(by_class.get("dense", []))
    expected = _expected_shapes(arch, n_dense > 0, 1000)["params"]
    kinds: dict[str, list] = {}
    for name in _keras_layer_order(list(expected)):
        p = expected[name]
        kinds.setdefault(_layer_kind(p), []).append(name)
    out = {}
    for kind, names in kinds.items():
        keys = by_class.get(_KERAS3_CLASS[kind], [])
        if kind == "dense" and len(keys) != len(names):
            if keys:
                raise WeightConversionError(
                    f"{source}: Keras 3 file without layer names has {len(keys)} dense layers, "
                    f"{arch} has {len(names)} with its top and 0 without")
            continue  # no top: reported by convert_layers
        if len(keys) != len(names):
            raise WeightConversionError(
                f"{source}: Keras 3 file without layer names has {len(keys)} "
                f"{_KERAS3_CLASS[kind]} layers, {arch} has {len(names)} (first: {names[0]!r})")
        out.update({name: layers[key] for name, key in zip(names, keys)})
    return out


def _assign_roles(weights, kind: str, name: str, source: str):
    order = _ORDER[kind]
    if len(weights) != len(order):
        raise WeightConversionError(
            f"{source}: layer {name!r} has {len(weights)} weights, expected {len(order)} "
            f"({', '.join(order)}) for a {kind} layer")
    roles = [r for r, _ in weights]
    if all(r is not None for r in roles) and sorted(roles) == sorted(order):
        return [(r, a) for r, a in weights]
    return list(zip(order, (a for _, a in weights)))


def _check(arr, shape, source, layer, what):
    if tuple(arr.shape) != tuple(shape):
        raise WeightConversionError(
            f"{source}: layer {layer!r} {what} has shape {tuple(arr.shape)}, "
            f"expected {tuple(shape)}")
    return np.asarray(arr, np.float32)


def load_keras_h5(arch: str, path, include_top: bool | None = None,
                  input_shape=(224, 224, 3)) -> dict[str, Any]:
    """Variables {"params", "batch_stats"} of `arch` (vgg16, resnet50) from a Keras HDF5 file.

    include_top None: taken from the file (top layers present or not). include_top=False on a
    full file drops the top layers. For any registered model, see `load_keras_weights`.
    """
    layers, _ = read_keras_h5(path)
    return convert_layers(layers, arch, include_top, source=os.fspath(path), input_shape=input_shape)


# ---------------------------------------------------------------- any registered model

_ORDER["lstm"] = ("kernel", "recurrent_kernel", "bias")
_KIND_NAMES = {"conv": "Conv2D", "dense": "Dense", "bn": "BatchNormalization", "lstm": "LSTM"}


def _file_kind(weights) -> str:
    """A Keras layer's kind from its saved arrays (roles, where named, or shapes)."""
    roles = {r for r, _ in weights}
    shapes = [a.shape for _, a in weights]
    if "recurrent_kernel" in roles or (len(shapes) == 3 and len(shapes[0]) == 2 and len(shapes[1]) == 2):
        return "lstm"
    if roles & {"gamma", "moving_mean"} or all(len(sh) == 1 for sh in shapes):
        return "bn"
    return "conv" if len(shapes[0]) == 4 else "dense" if len(shapes[0]) == 2 else "other"


def target_layers(variables) -> list[tuple[tuple[str, ...], str]]:
    """(path, kind) of every weighted layer of a jaxcnn model, in Keras' layer order."""
    out = []

    def walk(tree, path):
        if "kernel" in tree or "scale" in tree or ("bias" in tree and not isinstance(tree["bias"], dict)):
            p = tree
            kind = ("lstm" if "recurrent_kernel" in p else "bn" if "kernel" not in p
                    else "conv" if len(p["kernel"].shape) == 4 else "dense")
            out.append((path, kind))
            return
        for k, v in tree.items():
            walk(v, path + (k,))

    walk(variables["params"], ())
    order = {name: i for i, name in enumerate(_keras_layer_order([p[-1] for p, _ in out]))}
    return sorted(out, key=lambda pk: order.get(pk[0][-1], 0) if len(set(order)) == len(out) else 0)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def match_layers(layers: dict, targets, source: str, model_name: str) -> dict:
    """{target path: file layer name}: by name first, then by order within each kind."""
    kinds = {n: _file_kind(w) for n, w in layers.items()}
    matched, used = {}, set()
    for path, kind in targets:
        name = path[-1]
        if name in layers and kinds[name] == kind:
            matched[path], _ = name, used.add(name)
    for kind in ("conv", "dense", "bn", "lstm"):
        want = [p for p, k in targets if k == kind and p not in matched]
        have = [n for n in layers if kinds[n] == kind and n not in used]
        if len(have) > len(want):
            extra = have[len(want):]
            raise WeightConversionError(
                f"{source}: the file has {_KIND_NAMES[kind]} layers that {model_name} does not use: "
                f"{', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''} (a deeper or a different network?)")
        if len(have) < len(want):
            raise WeightConversionError(
                f"{source}: {model_name} layer {'/'.join(want[len(have)])!r} ({_KIND_NAMES[kind]}) has "
                f"no counterpart in the file ({len(have)} unmatched {_KIND_NAMES[kind]} layers there, "
                f"{len(want)} needed)")
        matched.update(zip(want, have))
        used.update(have)
    other = [n for n in layers if n not in used]
    if other:
        raise WeightConversionError(f"{source}: layers {', '.join(other[:6])} of the file fit no layer of "
                                    f"{model_name}")
    return matched


def load_keras_weights(name, path, input_shape=None, num_classes: int | None = None,
                       **model_kwargs):
    """(model, variables) of the registered jaxcnn model `name` (or a module instance) with
    weights from a Keras file.

    Any Keras weight file (`save_weights` .h5 / .weights.h5, a full-model .h5 or .keras). Layers
    match by name where the names agree, else by order within each type (Conv2D, Dense,
    BatchNormalization, LSTM), as Keras' auto-names (`conv2d_1`, `dense`) never equal ours.
    Every shape is checked at `input_shape` (default: the network's tutorial input, 224x224x3
    for VGG16/ResNet50 models); num_classes defaults to the file's last layer's width. Layers of
    the file the model does not use are refused, naming them.
    """
    source = os.fspath(path)
    layers, _ = read_keras_h5(source)
    layers = {k.lstrip("@"): v for k, v in layers.items()}
    if not isinstance(name, str):  # a module instance: its own configuration, nothing inferred
        model, name = name, type(name).__name__
    else:
        model = None
    if input_shape is None:
        input_shape = TUTORIAL_INPUT_SHAPES.get(name, (224, 224, 3))
    if name in ARCHS and model is None:
        include_top = model_kwargs.pop("include_top", None)
        variables = load_keras_h5(name, source, include_top, input_shape=input_shape)
        top = "predictions" in variables["params"]
        n = int(variables["params"]["predictions"]["bias"].shape[0]) if top else 1000
        return get_model(name, include_top=top, num_classes=n, **model_kwargs), variables
    if model is None:
        if num_classes is None and layers:
            last = list(layers.values())[-1]
            if _file_kind(last) == "dense":
                num_classes = int(last[-1][1].shape[-1])
        kwargs = dict(model_kwargs, **({"num_classes": num_classes} if num_classes is not None else {}))
        model = get_model(name, **kwargs)
    expected = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *input_shape))))
    expected = {"params": expected["params"], "batch_stats": expected.get("batch_stats", {})}
    matched = match_layers(layers, target_layers(expected), source, name)
    variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
    for tpath, fname in matched.items():
        kind = _file_kind(layers[fname])
        w = dict(_assign_roles(layers[fname], kind, fname, source))
        want = _get(expected["params"], tpath)
        where = "/".join(tpath)
        if kind == "bn":
            got = {"scale": w["gamma"], "bias": w["beta"]}
            s = _get(expected["batch_stats"], tpath)
            stats = {"mean": _check(w["moving_mean"], s["mean"].shape, source, fname, "moving_mean"),
                     "var": _check(w["moving_variance"], s["var"].shape, source, fname, "moving_variance")}
            _set(variables["batch_stats"], tpath, stats)
        else:
            got = {k: w[k] for k in _ORDER[kind]}
            got = {("kernel" if k == "kernel" else k): v for k, v in got.items()}
        if kind == "dense" and got["kernel"].shape[1:] == want["kernel"].shape[1:] and \
                got["kernel"].shape != want["kernel"].shape:
            raise WeightConversionError(
                f"{source}: layer {fname!r} -> {where!r} kernel has shape {tuple(got['kernel'].shape)}, "
                f"expected {tuple(want['kernel'].shape)} at input {'x'.join(map(str, input_shape))}: "
                f"the file was saved at another input size (give input_shape / --input-shape)")
        label = where if fname == where else f"{fname} (as {where})"
        _set(variables["params"], tpath, {k: _check(got[k], want[k].shape, source, label, k) for k in want})
    return model, variables


def _set(tree, path, value):
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def convert_keras_h5(arch: str, in_path, out_dir, include_top: bool | None = None,
                     input_shape=None, num_classes: int | None = None) -> dict[str, Any]:
    """Convert a Keras weight file for the registered model `arch` to an Orbax checkpoint at
    `out_dir` (see `load_keras_weights`); returns the variables."""
    kwargs = {} if include_top is None or arch not in ARCHS else {"include_top": include_top}
    model, variables = load_keras_weights(arch, in_path, input_shape, num_classes, **kwargs)
    meta = {"arch": arch, "source": os.path.basename(os.fspath(in_path))}
    if arch in ARCHS:
        top = "predictions" in variables["params"]
        meta.update(include_top=top, num_classes=int(variables["params"]["predictions"]["bias"].shape[0])
                    if top else None)
    else:
        meta.update(num_classes=getattr(model, "num_classes", None),
                    input_shape=list(input_shape) if input_shape is not None else None)
    save_variables(out_dir, variables, metadata=meta)
    return variables


def download_keras_weights(arch: str, include_top: bool = True) -> str:
    """Fetch the published ImageNet file through `keras.utils.get_file` (needs internet and keras).

    Only on an explicit call; nothing in jaxcnn downloads at import or init.
    """
    try:
        import keras
    except ImportError:
        raise ImportError("--download needs keras (pip install keras); or pass a local .h5 file") from None
    rel, md5 = PUBLISHED[(arch, include_top)]
    return keras.utils.get_file(os.path.basename(rel), _KERAS_APP_URL + rel,
                                cache_subdir="models", file_hash=md5)
