"""Fuzzed Keras readers (`jaxcnn.keras.h5`): weight files, full-model .h5 and .keras archives, damaged
byte by byte or in their structure (a dataset or attribute gone or replaced, the model config
changed), answer with a WeightConversionError naming the file, never a raw KeyError, TypeError... or a hang.

The valid files are written here with h5py in the layouts Keras writes (tf_keras `save` /
`save_weights`, Keras 3 `.weights.h5` and `.keras`), so no TensorFlow is needed.
"""

import io
import json
import os
import tempfile
import zipfile

import h5py
import numpy as np
import pytest
from hypothesis import strategies as st

from jaxcnn.keras.errors import WeightConversionError
from jaxcnn.keras.h5 import read_keras_h5, read_keras_model
from tests._fuzz import count, damaged, fuzz_tests, json_values, mutated_json, reporter

counts = pytest.fixture(scope="module", autouse=True)(reporter)
SCRATCH = tempfile.mkdtemp(prefix="jaxcnn-fuzz-keras-")

WEIGHTS = {"conv": [("kernel", (3, 3, 1, 2)), ("bias", (2,))],
           "bn": [("gamma", (2,)), ("beta", (2,)), ("moving_mean", (2,)), ("moving_variance", (2,))],
           "flat": [], "out": [("kernel", (8, 3)), ("bias", (3,))]}
LAYERS = [("Conv2D", "conv", {"filters": 2, "kernel_size": [3, 3], "strides": [1, 1], "padding": "valid",
                              "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
                              "activation": "linear", "use_bias": True}),
          ("BatchNormalization", "bn", {"axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": True,
                                        "scale": True}),
          ("Flatten", "flat", {"data_format": "channels_last"}),
          ("Dense", "out", {"units": 3, "activation": "softmax", "use_bias": True})]
CONFIG = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
    {"class_name": "InputLayer", "config": {"batch_shape": [None, 4, 4, 1], "dtype": "float32", "name": "input"}},
    *[{"class_name": c, "config": {"name": n, "trainable": True, "dtype": "float32", **o}} for c, n, o in LAYERS]]}}
K3_OBJECTS = {"conv": "conv2d", "bn": "batch_normalization", "flat": "flatten", "out": "dense"}


def _array(shape):
    return (np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape) % 5) / 5


def _keras2(group):
    group.attrs["layer_names"] = np.array([n.encode() for n in WEIGHTS])
    for layer, weights in WEIGHTS.items():
        g = group.create_group(layer)
        g.attrs["weight_names"] = np.array([f"{layer}/{w}:0".encode() for w, _ in weights])
        for w, shape in weights:
            g[f"{layer}/{w}:0"] = _array(shape)


def _keras3(f):
    f.create_group("vars").attrs["name"] = "sequential"
    for layer, weights in WEIGHTS.items():
        v = f.create_group(f"layers/{K3_OBJECTS[layer]}/vars")
        v.attrs["name"] = layer
        for i, (_, shape) in enumerate(weights):
            v[str(i)] = _array(shape)


def _h5_bytes(write) -> bytes:
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        write(f)
    return buf.getvalue()


def _full_model(f, config=CONFIG):
    f.attrs["model_config"] = json.dumps(config)
    _keras2(f.create_group("model_weights"))


def _dot_keras(weights: bytes, config=CONFIG) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.0"}))
        z.writestr("config.json", config if isinstance(config, bytes) else json.dumps(config))
        z.writestr("model.weights.h5", weights)
    return buf.getvalue()


K2_WEIGHTS = _h5_bytes(_keras2)
K3_WEIGHTS = _h5_bytes(_keras3)
FULL_H5 = _h5_bytes(_full_model)
DOT_KERAS = _dot_keras(K3_WEIGHTS)
FILES = {"keras2.h5": K2_WEIGHTS, "keras3.weights.h5": K3_WEIGHTS, "model.h5": FULL_H5, "model.keras": DOT_KERAS}


def _read(name: str, raw: bytes, what: str):
    """Both readers on `raw` saved as `name`: each answers or raises WeightConversionError naming the file."""
    path = os.path.join(SCRATCH, name)
    with open(path, "wb") as f:
        f.write(raw)
    count(what)
    for reader in (read_keras_h5, read_keras_model):
        try:
            reader(path)
        except WeightConversionError as e:
            assert path in str(e)


def test_the_valid_files_read():
    """The fuzzed inputs start from files both readers accept."""
    for name in ("keras2.h5", "keras3.weights.h5", "model.keras"):
        path = os.path.join(SCRATCH, "valid-" + name)
        with open(path, "wb") as f:
            f.write(FILES[name])
        layers, _ = read_keras_h5(path)
        assert sorted(layers) == ["bn", "conv", "out"] and len(layers["bn"]) == 4
    for name in ("model.h5", "model.keras"):
        path = os.path.join(SCRATCH, "valid-" + name)
        with open(path, "wb") as f:
            f.write(FILES[name])
        config, weights, _ = read_keras_model(path)
        assert config["config"]["name"] == "sequential" and np.array_equal(weights["out"][1][1], _array((3,)))


def check_bytes(data):
    name = data.draw(st.sampled_from(sorted(FILES)))
    _read(name, data.draw(damaged(FILES[name])), "keras files (bytes)")


def _objects(f) -> list[str]:
    names = []
    f.visit(names.append)
    return names


def check_structure(data):
    """One object deleted or one attribute replaced, in any of the files (inside the .keras archive too)."""
    name = data.draw(st.sampled_from(sorted(FILES)))
    inner = FILES[name] if name != "model.keras" else K3_WEIGHTS
    buf = io.BytesIO(inner)
    with h5py.File(buf, "a") as f:
        objects = _objects(f)
        what = data.draw(st.sampled_from(["delete", "attr"]))
        if what == "delete" and objects:
            del f[data.draw(st.sampled_from(objects))]
        else:
            where = f[data.draw(st.sampled_from(["/", *objects]))]
            key = data.draw(st.sampled_from([*where.attrs.keys(), "layer_names", "weight_names", "name"]))
            # HDF5 strings: UTF-8 without NUL (h5py cannot store a lone surrogate at all)
            chars = st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))
            value = data.draw(st.one_of(
                st.text(chars, max_size=8), st.integers(-5, 5),
                st.lists(st.text(chars, max_size=6), max_size=3).map(
                    lambda xs: np.array([x.encode() for x in xs])),
                st.binary(min_size=1, max_size=8).map(np.void), st.just(np.zeros((2, 2)))))
            where.attrs[key] = value
    raw = buf.getvalue() if name != "model.keras" else _dot_keras(buf.getvalue())
    _read(name, raw, "keras files (structure)")


def check_config(data):
    """A model config with one value changed or removed, in a full-model .h5 and a .keras archive."""
    config = data.draw(st.one_of(mutated_json(CONFIG), json_values))
    _read("model.h5", _h5_bytes(lambda f: _full_model(f, config)), "keras model config")
    _read("model.keras", _dot_keras(K3_WEIGHTS, config), "keras model config")


def check_raw_config(data):
    """A model_config attribute that is not JSON at all (or not UTF-8)."""
    raw = data.draw(damaged(json.dumps(CONFIG).encode()))

    def write(f):
        _full_model(f)
        # bytes as a string (no NULs), or as opaque data (HDF5 keeps that in the object header: < 64 KiB)
        opaque = 0 < len(raw) < 60_000 and data.draw(st.booleans())
        f.attrs["model_config"] = np.void(raw) if opaque else raw.replace(b"\0", b"")

    _read("model.h5", _h5_bytes(write), "keras model config (bytes)")
    _read("model.keras", _dot_keras(K3_WEIGHTS, raw), "keras model config (bytes)")


test_keras_files_bytes_fuzzed, test_keras_files_bytes_fuzzed_long = fuzz_tests(check_bytes, 25, 1500)
test_keras_files_structure_fuzzed, test_keras_files_structure_fuzzed_long = fuzz_tests(check_structure, 15, 1000)
test_keras_config_fuzzed, test_keras_config_fuzzed_long = fuzz_tests(check_config, 8, 1000)
test_keras_raw_config_fuzzed, test_keras_raw_config_fuzzed_long = fuzz_tests(check_raw_config, 5, 300)
