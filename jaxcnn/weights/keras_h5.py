"""Keras HDF5 weight files -> Flax variables {"params", "batch_stats"}, with h5py only (no TF).

Formats read:
  * Keras 2 / tf_keras `save_weights("x.h5")`, `model.save("x.h5")` (under "model_weights") and
    the published `keras.applications` files: root attr `layer_names`, each layer group with
    attr `weight_names` such as `block1_conv1/kernel:0`, or Keras-1-era `block1_conv1_W_1:0`,
    `bn_conv1_running_mean:0`; a weight's role (kernel, bias, gamma, ...) is read from its
    name, or from its position when the name says nothing.
  * Keras 3 `save_weights("x.weights.h5")` (and the same inside a `.keras` archive): `layers/<object name>/vars/0..n`, the Keras layer
    name in the `vars` group's attr `name` (Keras >= 3.x); without it, layers of one class
    are matched in creation order (the object names' counters).

Both frameworks use NHWC with HWIO conv kernels and (in, out) dense kernels, and Flatten is
row-major over (H, W, C) in both, so every array copies as is. BatchNorm's gamma, beta,
moving_mean, moving_variance become params scale, bias and batch_stats mean, var.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import zipfile
import zlib
from typing import Any

import jax
import numpy as np

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

_ROLE_ALIASES = {
    "kernel": "kernel", "W": "kernel", "bias": "bias", "b": "bias",
    "gamma": "gamma", "beta": "beta",
    "moving_mean": "moving_mean", "running_mean": "moving_mean",
    "moving_variance": "moving_variance", "running_std": "moving_variance",
    "running_var": "moving_variance",
}
# Positional roles when names carry none (Keras 3 `vars/0..n`), by layer kind.
_ORDER = {"conv": ("kernel", "bias"), "dense": ("kernel", "bias"),
          "bn": ("gamma", "beta", "moving_mean", "moving_variance")}


class WeightConversionError(ValueError):
    """A Keras weight file does not fit the requested architecture (names the file and layer)."""


def _decode(s) -> str:
    return s.decode("utf8") if isinstance(s, bytes) else str(s)


def _role(weight_name: str, layer_name: str) -> str | None:
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
    for lname in (_decode(n) for n in group.attrs["layer_names"]):
        g = group[lname]
        wnames = [_decode(n) for n in g.attrs.get("weight_names", [])]
        scopes = {w.split("/")[0] for w in wnames if "/" in w}
        nested = len(scopes) > 1 or (len(scopes) == 1 and _unsuffixed(next(iter(scopes))) != _unsuffixed(lname))
        for wname in wnames:
            # A nested model's group ("vgg16") holds its sublayers' weights ("block1_conv1/kernel:0");
            # a layer's own group may carry a uniquified scope ("block1_conv1_1/kernel:0") or a
            # cell's ("lstm/lstm_cell/kernel:0"): the group name is the layer's.
            owner = wname.split("/")[0] if nested and "/" in wname else lname
            layers.setdefault(owner, []).append((_role(wname, wname.split("/")[-2] if "/" in wname else owner),
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


def _object_order(key: str):
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
    keys = sorted(group["layers"].keys(), key=lambda k: ("layers" not in group["layers"][k], _object_order(k)))
    for key in keys:
        g = group["layers"][key]
        if "layers" in g:  # nested model
            _read_keras3(g, layers)
            continue
        arrays = k3_arrays(g)
        if arrays:
            v = g.get("vars")
            # Without the `name` attr (early Keras 3), keep the object name, marked with "@".
            name = _decode(v.attrs["name"]) if v is not None and "name" in v.attrs else "@" + key
            layers[name] = [(None, a) for a in arrays]
    return layers


def read_keras_h5(path) -> tuple[dict[str, list[tuple[str | None, np.ndarray]]], str]:
    """{layer name: [(role or None, array), ...] in saved order}, and the format found."""
    import h5py

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
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        try:
            if "layer_names" in group.attrs:
                return _read_keras2(group), "keras2"
            if "layers" in group:
                return _read_keras3(group), "keras3"
        except (KeyError, RuntimeError, OSError, ValueError) as e:
            raise WeightConversionError(f"{path}: damaged Keras weight file ({type(e).__name__}: {e})") from None
    raise WeightConversionError(
        f"{path}: neither a Keras 2 weight file (no 'layer_names' attribute) nor a Keras 3 "
        f".weights.h5 file (no 'layers' group)")


def build_model(arch: str, include_top: bool = True, num_classes: int = 1000, **kw):
    """The jaxcnn module for `arch` in Keras' layout."""
    from jaxcnn.models import get_model

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHS)}")
    return get_model(arch, include_top=include_top, num_classes=num_classes, **kw)


def _expected_shapes(arch: str, include_top: bool, num_classes: int, input_shape=(224, 224, 3)):
    import jax
    import jax.numpy as jnp

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
        cls, _ = _object_order(key.lstrip("@"))
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


def _target_layers(variables) -> list[tuple[tuple[str, ...], str]]:
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
    import jax
    import jax.numpy as jnp

    from jaxcnn.models import TUTORIAL_INPUT_SHAPES, get_model

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
    matched = match_layers(layers, _target_layers(expected), source, name)
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
    from jaxcnn.weights.store import save_variables

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


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,3), got {text!r}") from None


def main_convert(argv=None) -> int:
    """`jaxcnn convert-weights MODEL IN.h5 OUT_DIR` (or `ARCH --download OUT_DIR`)."""
    from jaxcnn.config_flags import positive_int
    from jaxcnn.models import list_models

    ap = argparse.ArgumentParser(
        prog="jaxcnn convert-weights",
        description="Load a Keras weight file (tf_keras .h5, Keras 3 .weights.h5 or .keras) into a "
                    "registered jaxcnn model and save its variables as an Orbax checkpoint. Layers "
                    "match by name, else by order within each type; every shape is checked.")
    ap.add_argument("arch", metavar="MODEL", help=f"a registered model: {', '.join(list_models())}")
    ap.add_argument("paths", nargs="+", metavar="IN.h5 OUT_DIR",
                    help="input file and output directory (only OUT_DIR with --download)")
    top = ap.add_mutually_exclusive_group()
    top.add_argument("--include-top", dest="include_top", action="store_true", default=None,
                     help="vgg16/resnet50: require and convert the classifier layers")
    top.add_argument("--no-top", dest="include_top", action="store_false",
                     help="vgg16/resnet50: convert the conv base only")
    ap.add_argument("--input-shape", type=_shape, metavar="H,W,C",
                    help="input the file's model was built for (default: the network's tutorial "
                         "input; 224,224,3 for VGG16/ResNet50 models)")
    ap.add_argument("--num-classes", type=positive_int, help="default: the file's last layer's width")
    ap.add_argument("--download", action="store_true",
                    help="vgg16/resnet50: fetch the published ImageNet weights with keras.utils.get_file first")
    args = ap.parse_args(argv)
    if args.arch not in list_models():
        ap.error(f"unknown model {args.arch!r}; known: {', '.join(list_models())}")
    if args.download:
        if len(args.paths) != 1:
            ap.error("with --download give only OUT_DIR")
        if args.arch not in ARCHS:
            ap.error(f"--download is for {', '.join(ARCHS)}")
        in_path = download_keras_weights(args.arch, args.include_top is not False)
        out_dir = args.paths[0]
    else:
        if len(args.paths) != 2:
            ap.error("give IN.h5 and OUT_DIR")
        in_path, out_dir = args.paths
    # A WeightConversionError or a missing file goes to the command line's one-line report (exit 2).
    variables = convert_keras_h5(args.arch, in_path, out_dir, args.include_top, args.input_shape,
                                 args.num_classes)
    n = sum(int(np.prod(np.shape(a))) for a in jax.tree.leaves(variables))
    print(f"{args.arch}: {len(_target_layers(variables))} layers, {n:,} values from {in_path} -> {out_dir}")
    return 0
