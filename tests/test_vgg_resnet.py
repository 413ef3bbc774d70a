"""VGG16 / ResNet50 against Keras, and the Keras HDF5 converter in every format it reads.

Keras models get random weights (no download) with He-scaled kernels and random biases and
BatchNorm statistics, so every weight shows in the outputs; each format's file is converted
and compared with Keras' own forward pass on random 224x224 images.
"""

import os

import chex
import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf_keras = pytest.importorskip("tf_keras")
keras = pytest.importorskip("keras")

import jaxcnn.weights  # noqa: E402
from jaxcnn.cli import main as cli_main  # noqa: E402
from jaxcnn.keras import WeightConversionError, convert_keras_h5, load_keras_h5  # noqa: E402
from jaxcnn.models import get_model  # noqa: E402
from jaxcnn.models.vgg import preprocess_input  # noqa: E402
from jaxcnn.weights import read_metadata, restore_variables  # noqa: E402

TOL = 1e-4


def _randomize(model, seed):
    """He-scaled kernels (the first one also undoes the ~70 std of preprocessed pixels), random
    biases and BatchNorm statistics: every weight shows in outputs of moderate size."""
    rng = np.random.default_rng(seed)
    first = True
    for layer in model.layers:
        new = []
        for w in layer.weights:
            role = w.name.split("/")[-1].split(":")[0]
            shape = tuple(w.shape)
            if role == "kernel":
                v = rng.standard_normal(shape, np.float32) * np.sqrt(2.0 / np.prod(shape[:-1]))
                v, first = (v / 70.0 if first else v), False
            elif role == "gamma" and layer.name.endswith("_3_bn"):
                v = rng.uniform(0.1, 0.3, shape)  # damp each residual branch: no blow-up over 16 blocks
            elif role in ("gamma", "moving_variance"):
                v = rng.uniform(0.5, 1.5, shape)
            else:  # bias, beta, moving_mean
                v = 0.1 * rng.standard_normal(shape)
            new.append(v.astype(np.float32))
        if new:
            layer.set_weights(new)


def _images(n=2, seed=0):
    raw = np.random.default_rng(seed).uniform(0, 255, (n, 224, 224, 3)).astype(np.float32)
    return preprocess_input(raw)


def _keras1_file(path, tfk_model, layer_names=None):
    """A file in the published Keras-1-era layout: `block1_conv1_W_1:0`, `bn_running_std:0`."""
    roles = {"kernel": "W_1", "bias": "b_1", "gamma": "gamma", "beta": "beta",
             "moving_mean": "running_mean", "moving_variance": "running_std"}
    with h5py.File(path, "w") as f:
        names = [layer.name for layer in tfk_model.layers if layer_names is None or layer.name in layer_names]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for layer in tfk_model.layers:
            if layer.name not in names:
                continue
            g = f.create_group(layer.name)
            wnames = []
            for w, v in zip(layer.weights, layer.get_weights()):
                role = w.name.split("/")[-1].split(":")[0]
                wname = f"{layer.name}_{roles[role]}:0"
                g.create_dataset(wname, data=v)
                wnames.append(wname.encode())
            g.attrs["weight_names"] = np.array(wnames)


def _assert_close(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    assert np.abs(ref).max() > 0.1  # the random weights give outputs of a visible size
    np.testing.assert_allclose(ours, ref, rtol=0, atol=TOL)


# ---------------------------------------------------------------- VGG16

@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    d = tmp_path_factory.mktemp("vgg")
    m = tf_keras.applications.VGG16(weights=None, classifier_activation=None)
    _randomize(m, 1)
    x = _images()
    logits = m.predict(x, verbose=0)
    base = tf_keras.Model(m.input, m.get_layer("block5_pool").output)
    features = base.predict(x, verbose=0)
    m.save_weights(str(d / "vgg16_tfk.h5"))
    base_names = [layer.name for layer in base.layers]
    _keras1_file(str(d / "vgg16_keras1_notop.h5"), m, base_names)
    k3 = keras.applications.VGG16(weights=None, include_top=False)
    for layer in k3.layers:
        if layer.weights:
            layer.set_weights(m.get_layer(layer.name).get_weights())
    k3.save_weights(str(d / "vgg16_k3_notop.weights.h5"))
    k3.save(str(d / "vgg16_k3_notop.keras"))
    return dict(dir=d, x=x, logits=logits, features=features)


def test_vgg16_parity_include_top(vgg):
    variables = load_keras_h5("vgg16", vgg["dir"] / "vgg16_tfk.h5")
    assert set(variables["params"]) >= {"fc1", "fc2", "predictions"}
    model = get_model("vgg16")
    _assert_close(jax.jit(model.apply)({"params": variables["params"]}, vgg["x"]), vgg["logits"])


def test_vgg16_parity_notop_all_formats(vgg):
    top = load_keras_h5("vgg16", vgg["dir"] / "vgg16_tfk.h5", include_top=False)
    assert "fc1" not in top["params"] and len(top["params"]) == 13
    k3 = load_keras_h5("vgg16", vgg["dir"] / "vgg16_k3_notop.weights.h5")
    k1 = load_keras_h5("vgg16", vgg["dir"] / "vgg16_keras1_notop.h5")
    chex.assert_trees_all_equal(top, k3)
    chex.assert_trees_all_equal(top, k1)
    chex.assert_trees_all_equal(top, load_keras_h5("vgg16", vgg["dir"] / "vgg16_k3_notop.keras"))
    out = jax.jit(get_model("vgg16", include_top=False).apply)({"params": k3["params"]}, vgg["x"])
    _assert_close(out, vgg["features"])


def test_vgg16_orbax_roundtrip_and_errors(vgg, tmp_path):
    src = vgg["dir"] / "vgg16_keras1_notop.h5"
    variables = convert_keras_h5("vgg16", src, tmp_path / "vgg16_notop")
    assert read_metadata(tmp_path / "vgg16_notop")["include_top"] is False
    restored = restore_variables(tmp_path / "vgg16_notop")
    assert restored["batch_stats"] == {}
    chex.assert_trees_all_equal(variables["params"], restored["params"])
    with pytest.raises(WeightConversionError, match="notop"):
        load_keras_h5("vgg16", src, include_top=True)
    with pytest.raises(WeightConversionError, match="holds no layer of resnet50"):
        load_keras_h5("resnet50", src)
    # A wrong shape and a missing layer are reported with the layer's name.
    bad = tmp_path / "bad.h5"
    with h5py.File(src) as f, h5py.File(bad, "w") as g:
        for k in f:
            f.copy(k, g)
        g.attrs["layer_names"] = f.attrs["layer_names"]
        del g["block3_conv2"]["block3_conv2_W_1:0"]
        g["block3_conv2"]["block3_conv2_W_1:0"] = np.zeros((3, 3, 256, 128), np.float32)
    with pytest.raises(WeightConversionError, match=r"'block3_conv2' kernel has shape \(3, 3, 256, 128\)"):
        load_keras_h5("vgg16", bad)
    with h5py.File(bad, "a") as g:
        g.attrs["layer_names"] = [n for n in g.attrs["layer_names"] if n != b"block4_conv3"]
    with pytest.raises(WeightConversionError, match="'block3_conv2'"):
        load_keras_h5("vgg16", bad)
    with h5py.File(bad, "a") as g:
        del g["block3_conv2"]["block3_conv2_W_1:0"]
        g["block3_conv2"]["block3_conv2_W_1:0"] = np.zeros((3, 3, 256, 256), np.float32)
    with pytest.raises(WeightConversionError, match="'block4_conv3' of vgg16 is missing"):
        load_keras_h5("vgg16", bad)
    not_h5 = tmp_path / "not.h5"
    not_h5.write_text("hello")
    with pytest.raises(WeightConversionError, match="not.h5"):
        load_keras_h5("vgg16", not_h5)
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_keras_h5("vgg16", tmp_path / "nope.h5")


def test_convert_weights_cli(vgg, tmp_path, capsys):
    out = tmp_path / "cli_out"
    assert cli_main(["convert-weights", "vgg16", str(vgg["dir"] / "vgg16_k3_notop.weights.h5"), str(out)]) == 0
    assert "13 layers" in capsys.readouterr().out
    meta = read_metadata(out)
    assert meta["arch"] == "vgg16" and meta["include_top"] is False
    restored = restore_variables(out)
    chex.assert_trees_all_equal(restored["params"], load_keras_h5("vgg16", vgg["dir"] / "vgg16_keras1_notop.h5")["params"])
    assert cli_main(["convert-weights", "vgg16", str(out)]) == 2  # IN.h5 missing (and no --download)
    assert "give IN.h5 and OUT_DIR" in capsys.readouterr().err
    assert cli_main(["convert-weights", "vgg19", "a.h5", str(out)]) == 2
    assert "unknown model 'vgg19'" in capsys.readouterr().err
    with pytest.warns(DeprecationWarning, match="convert-weights"):  # the old Python entry still works
        assert jaxcnn.weights.main_convert(["vgg16", str(vgg["dir"] / "vgg16_k3_notop.weights.h5"),
                                            str(tmp_path / "old_entry")]) == 0


# ---------------------------------------------------------------- ResNet50

@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    d = tmp_path_factory.mktemp("resnet")
    m = tf_keras.applications.ResNet50(weights=None, classifier_activation=None)
    _randomize(m, 2)
    x = _images(seed=1)
    logits = m.predict(x, verbose=0)
    pooled = tf_keras.Model(m.input, m.get_layer("avg_pool").output).predict(x, verbose=0)
    m.save_weights(str(d / "r50_tfk.h5"))
    _keras1_file(str(d / "r50_keras1.h5"), m)
    k3 = keras.applications.ResNet50(weights=None, classifier_activation=None)
    for layer in k3.layers:
        if layer.weights:
            layer.set_weights(m.get_layer(layer.name).get_weights())
    k3_logits = np.asarray(k3.predict(x, verbose=0))
    k3.save_weights(str(d / "r50_k3.weights.h5"))
    return dict(dir=d, x=x, logits=logits, k3_logits=k3_logits, pooled=pooled)


def test_resnet50_parity_all_formats(resnet):
    ref = load_keras_h5("resnet50", resnet["dir"] / "r50_tfk.h5")
    assert len(ref["batch_stats"]) == 53 and len(ref["params"]) == 107
    apply = jax.jit(get_model("resnet50").apply)
    _assert_close(apply(ref, resnet["x"]), resnet["logits"])
    _assert_close(apply(ref, resnet["x"]), resnet["k3_logits"])
    chex.assert_trees_all_equal(ref, load_keras_h5("resnet50", resnet["dir"] / "r50_k3.weights.h5"))
    chex.assert_trees_all_equal(ref, load_keras_h5("resnet50", resnet["dir"] / "r50_keras1.h5"))


def test_resnet50_keras3_without_layer_names(resnet, tmp_path):
    """Early Keras 3 files lack the `name` attrs: layers are matched in creation order."""
    src, dst = resnet["dir"] / "r50_k3.weights.h5", tmp_path / "nameless.weights.h5"
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        for k in f:
            f.copy(k, g)
        for key in g["layers"]:
            if "name" in g["layers"][key]["vars"].attrs:
                del g["layers"][key]["vars"].attrs["name"]
    chex.assert_trees_all_equal(load_keras_h5("resnet50", src), load_keras_h5("resnet50", dst))


def test_resnet50_notop_pooling_and_orbax(resnet, tmp_path):
    variables = convert_keras_h5("resnet50", resnet["dir"] / "r50_tfk.h5", tmp_path / "r50",
                                 include_top=False)
    assert "predictions" not in variables["params"]
    restored = restore_variables(tmp_path / "r50")
    chex.assert_trees_all_equal(variables, restored)
    model = get_model("resnet50", include_top=False, pooling="avg")
    _assert_close(jax.jit(model.apply)(restored, resnet["x"]), resnet["pooled"])
    with pytest.raises(WeightConversionError, match="holds no layer of vgg16"):
        load_keras_h5("vgg16", resnet["dir"] / "r50_k3.weights.h5")


def test_preprocess_input_matches_keras():
    x = np.random.default_rng(3).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    ref_vgg = tf_keras.applications.vgg16.preprocess_input(x.copy())
    ref_resnet = tf_keras.applications.resnet50.preprocess_input(x.copy())
    np.testing.assert_allclose(preprocess_input(x), ref_vgg, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(preprocess_input(jnp.asarray(x))), ref_resnet, rtol=0, atol=1e-5)
    assert isinstance(preprocess_input(x), np.ndarray)
