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
from typing import Any

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
        for wname in (_decode(n) for n in g.attrs.get("weight_names", [])):
            # A nested model's group ("vgg16") holds its sublayers' weights ("block1_conv1/kernel:0").
            owner = wname.split("/")[-2] if "/" in wname else lname
            layers.setdefault(owner, []).append((_role(wname, owner), np.asarray(g[wname])))
    return layers


def _object_order(key: str):
    m = re.fullmatch(r"(.*?)(?:_(\d+))?", key)
    return m.group(1), int(m.group(2) or 0)


def _read_keras3(group, layers=None) -> dict[str, list[tuple[str | None, np.ndarray]]]:
    layers = {} if layers is None else layers
    keys = sorted(group["layers"].keys(), key=_object_order)  # creation order within a class
    for key in keys:
        g = group["layers"][key]
        if "vars" in g and len(g["vars"]):
            v = g["vars"]
            # Without the `name` attr (early Keras 3), keep the object name, marked with "@".
            name = _decode(v.attrs["name"]) if "name" in v.attrs else "@" + key
            layers[name] = [(None, np.asarray(v[str(i)])) for i in range(len(v))]
        if "layers" in g:  # nested model
            _read_keras3(g, layers)
    return layers


def read_keras_h5(path) -> tuple[dict[str, list[tuple[str | None, np.ndarray]]], str]:
    """{layer name: [(role or None, array), ...] in saved order}, and the format found."""
    import h5py

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Keras weight file not found: {path}")
    source = path
    if zipfile.is_zipfile(path):  # a Keras 3 `.keras` archive: its weights are model.weights.h5
        with zipfile.ZipFile(path) as z:
            if "model.weights.h5" not in z.namelist():
                raise WeightConversionError(f"{path}: a zip archive without model.weights.h5")
            source = io.BytesIO(z.read("model.weights.h5"))
    try:
        f = h5py.File(source, "r")
    except OSError as e:
        raise WeightConversionError(f"{path}: not a readable HDF5 file ({e})") from None
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in group.attrs:
            return _read_keras2(group), "keras2"
        if "layers" in group:
            return _read_keras3(group), "keras3"
    raise WeightConversionError(
        f"{path}: neither a Keras 2 weight file (no 'layer_names' attribute) nor a Keras 3 "
        f".weights.h5 file (no 'layers' group)")


def build_model(arch: str, include_top: bool = True, num_classes: int = 1000, **kw):
    """The jaxcnn module for `arch` in Keras' layout."""
    from jaxcnn.models import get_model

    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHS)}")
    return get_model(arch, include_top=include_top, num_classes=num_classes, **kw)


def _expected_shapes(arch: str, include_top: bool, num_classes: int):
    import jax
    import jax.numpy as jnp

    model = build_model(arch, include_top, num_classes)
    return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3))))


def _layer_kind(p) -> str:
    if "scale" in p:
        return "bn"
    return "conv" if len(p["kernel"].shape) == 4 else "dense"


def convert_layers(layers: dict, arch: str, include_top: bool | None = None,
                   source: str = "<weights>") -> dict[str, Any]:
    """Map `read_keras_h5`'s layers onto `arch`'s variables; checks names, roles and shapes."""
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
    expected = _expected_shapes(arch, include_top, num_classes)
    names = list(expected["params"])
    if not any(n in layers for n in names):
        if arch == "resnet50" and "res2a_branch2a" in layers:
            raise WeightConversionError(
                f"{source}: the pre-2019 Keras ResNet50 file (res2a_branch2a, bn_conv1 names) "
                f"belongs to a different network (no pool1 padding, BatchNorm epsilon 1e-3); "
                f"use resnet50_weights_tf_dim_ordering_tf_kernels.h5 from keras-applications")
        raise WeightConversionError(
            f"{source}: holds no layer of {arch} (expected e.g. {names[0]!r}; the file has "
            f"{', '.join(sorted(layers)[:6]) or 'no weighted layers'}): wrong file or architecture")
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
            continue  # no top, or not this architecture: reported by convert_layers
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


def load_keras_h5(arch: str, path, include_top: bool | None = None) -> dict[str, Any]:
    """Variables {"params", "batch_stats"} of `arch` from a Keras HDF5 weight file.

    include_top None: taken from the file (top layers present or not). include_top=False on a
    full file drops the top layers.
    """
    layers, _ = read_keras_h5(path)
    return convert_layers(layers, arch, include_top, source=os.fspath(path))


def convert_keras_h5(arch: str, in_path, out_dir, include_top: bool | None = None) -> dict[str, Any]:
    """Convert a Keras HDF5 file to an Orbax checkpoint at `out_dir`; returns the variables."""
    from jaxcnn.weights.store import save_variables

    variables = load_keras_h5(arch, in_path, include_top)
    top = "predictions" in variables["params"]
    save_variables(out_dir, variables, metadata={
        "arch": arch, "include_top": top, "source": os.path.basename(os.fspath(in_path)),
        "num_classes": int(variables["params"]["predictions"]["bias"].shape[0]) if top else None})
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


def main_convert(argv=None) -> int:
    """`jaxcnn convert-weights ARCH IN.h5 OUT_DIR` (or `ARCH --download OUT_DIR`)."""
    ap = argparse.ArgumentParser(
        prog="jaxcnn convert-weights",
        description="Convert Keras HDF5 weights (Keras 2/tf_keras .h5 or Keras 3 .weights.h5) "
                    "to a jaxcnn Orbax checkpoint.")
    ap.add_argument("arch", choices=ARCHS)
    ap.add_argument("paths", nargs="+", metavar="IN.h5 OUT_DIR",
                    help="input file and output directory (only OUT_DIR with --download)")
    top = ap.add_mutually_exclusive_group()
    top.add_argument("--include-top", dest="include_top", action="store_true", default=None,
                     help="require and convert the classifier layers")
    top.add_argument("--no-top", dest="include_top", action="store_false",
                     help="convert the conv base only")
    ap.add_argument("--download", action="store_true",
                    help="fetch the published ImageNet weights with keras.utils.get_file first")
    args = ap.parse_args(argv)
    if args.download:
        if len(args.paths) != 1:
            ap.error("with --download give only OUT_DIR")
        in_path = download_keras_weights(args.arch, args.include_top is not False)
        out_dir = args.paths[0]
    else:
        if len(args.paths) != 2:
            ap.error("give IN.h5 and OUT_DIR")
        in_path, out_dir = args.paths
    variables = convert_keras_h5(args.arch, in_path, out_dir, args.include_top)
    n = sum(int(np.prod(a.shape)) for g in variables.values() for layer in g.values()
            for a in layer.values())
    print(f"{args.arch}: {len(variables['params'])} layers, {n:,} values from {in_path} -> {out_dir}")
    return 0
