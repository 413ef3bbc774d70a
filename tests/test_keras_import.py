"""Keras models a user has -> jaxcnn, through the public importers, outputs equal to Keras.

Each seed network is built with the tutorials' Keras code (Keras' own layer names, softmax or
sigmoid at the end), given random weights (biases and BatchNorm statistics too), saved as a
tf_keras full-model `.h5`, a Keras 3 `.keras` and a Keras 3 `.weights.h5`, and imported:
whole (`from_keras`, `jaxcnn import-keras`) and weights-only into the registered jaxcnn model
(`load_keras_weights`, `jaxcnn convert-weights`). Inputs are real images from the shared
datasets (MNIST, CIFAR-10 JPEG), at small sizes where the architecture allows.
"""

from __future__ import annotations

import json
import os
import tarfile
import zipfile

import chex
import h5py
import jax
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tfk = pytest.importorskip("tf_keras")
k3 = pytest.importorskip("keras")

from jaxcnn.cli import main as cli_main  # noqa: E402
from jaxcnn.data.idx import read_idx  # noqa: E402
from jaxcnn.keras import (KerasGraph, WeightConversionError, from_keras, load_imported, load_keras_h5,  # noqa: E402
                          load_keras_weights, output_activations)
from jaxcnn.models import get_model  # noqa: E402
from jaxcnn.testing import assert_keras_parity  # noqa: E402
from jaxcnn.train import Trainer  # noqa: E402
from jaxcnn.transfer import init_with_pretrained_base  # noqa: E402
from jaxcnn.weights.store import read_metadata, restore_variables  # noqa: E402

RTOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


# ---------------------------------------------------------------- real inputs

@pytest.fixture(scope="module")
def mnist(data_dir):
    x = read_idx(os.path.join(data_dir, "mnist", "t10k-images-idx3-ubyte.gz"))[:4]
    return (x.astype(np.float32) / 255.0)[..., None]


@pytest.fixture(scope="module")
def cifar(data_dir):
    import tensorflow as tf

    images = []
    with tarfile.open(os.path.join(data_dir, "cifar10-jpeg", "cifar10-jpeg.tar.gz"), "r|gz") as tar:
        for member in tar:
            if member.name.endswith(".jpg"):
                images.append(tf.io.decode_jpeg(tar.extractfile(member).read()).numpy())
                if len(images) == 3:
                    break
    return np.stack(images).astype(np.float32) / 255.0


def _inputs(net, mnist, cifar):
    if net == "cnn_lstm":  # two short real "videos": 4 digit crops of 16x16, and the same reversed
        crops = mnist[:, 6:22, 6:22]
        return np.stack([crops, crops[::-1]])
    if net == "cifar10_mlp":
        return cifar.reshape(len(cifar), -1)
    if net.startswith(("vgg16", "resnet50")):
        return cifar * 2.0 - 1.0  # unit-scale pixels: random bases stay clear of saturation
    if net == "bn_cnn_binary":
        return cifar
    return mnist


# ---------------------------------------------------------------- the tutorials' Keras code

def tutorial_model(K, net: str):
    """The seed network `net` as the tutorials write it, in Keras module `K` (tf_keras or keras)."""
    L = K.layers
    if net in ("mnist_cnn", "mnist_cnn_dropout", "mnist_cnn128", "spectrogram_cnn"):
        drop = net == "mnist_cnn_dropout"
        layers = [L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)), L.MaxPooling2D((2, 2))]
        layers += [L.Dropout(0.25)] if drop else []
        layers += [L.Conv2D(64, (3, 3), activation="relu"), L.MaxPooling2D((2, 2))]
        layers += [L.Dropout(0.25)] if drop else []
        layers += [L.Flatten(), L.Dense(128 if net == "mnist_cnn128" else 64, activation="relu")]
        layers += [L.Dropout(0.5)] if drop else []
        layers += [L.Dense(3 if net == "spectrogram_cnn" else 10, activation="softmax")]
        return K.Sequential(layers)
    if net == "mnist_simple":
        return K.Sequential([L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                             L.MaxPooling2D((2, 2)), L.Flatten(), L.Dense(100, activation="relu"),
                             L.Dense(10, activation="softmax")])
    if net == "mnist_cnn3":
        return K.Sequential([L.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                             L.MaxPooling2D((2, 2)), L.Conv2D(64, (3, 3), activation="relu"),
                             L.MaxPooling2D((2, 2)), L.Conv2D(64, (3, 3), activation="relu"),
                             L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    if net == "cnn_lstm":
        return K.Sequential([
            L.TimeDistributed(L.Conv2D(32, (3, 3), activation="relu"), input_shape=(4, 16, 16, 1)),
            L.TimeDistributed(L.MaxPooling2D((2, 2))), L.TimeDistributed(L.Flatten()),
            L.LSTM(50), L.Dense(3, activation="softmax")])
    if net == "bn_cnn_binary":
        return K.Sequential([
            L.Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)), L.BatchNormalization(),
            L.MaxPooling2D((2, 2)), L.Dropout(0.25),
            L.Conv2D(64, (3, 3), activation="relu"), L.BatchNormalization(),
            L.MaxPooling2D((2, 2)), L.Dropout(0.25),
            L.Flatten(), L.Dense(512, activation="relu"), L.BatchNormalization(), L.Dropout(0.5),
            L.Dense(1, activation="sigmoid")])
    if net == "cifar10_mlp":
        return K.Sequential([L.Dense(512, activation="relu", input_shape=(3072,)),
                             L.Dense(512, activation="relu"), L.Dense(10, activation="softmax")])
    if net in ("vgg16_transfer_a", "vgg16_transfer_b"):  # tutorials A and B: Sequential on conv_base
        base = K.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
        base.trainable = False
        out = L.Dense(10, activation="softmax") if net.endswith("a") else L.Dense(1, activation="sigmoid")
        return K.Sequential([base, L.Flatten(), L.Dense(256, activation="relu"), L.Dropout(0.5), out])
    if net == "vgg16_transfer_c":  # tutorial C: functional, on base_model.output
        base = K.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
        for layer in base.layers:
            layer.trainable = False
        x = L.GlobalAveragePooling2D()(base.output)
        x = L.Dense(1024, activation="relu")(x)
        return K.Model(inputs=base.input, outputs=L.Dense(5, activation="softmax")(x))
    if net == "resnet50_transfer_c":  # tutorial A's exercise: a ResNet50 base, nested, functional
        base = K.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
        inputs = K.Input((32, 32, 3))
        x = L.GlobalAveragePooling2D()(base(inputs, training=False))
        x = L.Dense(1024, activation="relu")(x)
        return K.Model(inputs, L.Dense(4, activation="softmax")(x))
    raise KeyError(net)


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):
            yield from _leaf_layers(layer)
        elif layer.weights:
            yield layer


def randomize(model, seed=0):
    """He-scaled kernels, random biases and BatchNorm gamma/beta/statistics."""
    rng = np.random.default_rng(seed)
    for layer in _leaf_layers(model):
        new = []
        for w in layer.get_weights():
            if w.ndim >= 2:
                v = rng.standard_normal(w.shape) * np.sqrt(2.0 / np.prod(w.shape[:-1]))
            else:
                v = rng.uniform(0.5, 1.5, w.shape) if "BatchNormalization" in type(layer).__name__ \
                    else 0.1 * rng.standard_normal(w.shape)
            new.append(v.astype(np.float32))
        layer.set_weights(new)
    return model


def copy_weights(src, dst):
    pairs = list(zip(_leaf_layers(src), _leaf_layers(dst)))
    assert len(pairs) == len(list(_leaf_layers(src))) == len(list(_leaf_layers(dst)))
    for a, b in pairs:
        b.set_weights(a.get_weights())


SEEDS = ["mnist_cnn", "mnist_cnn_dropout", "mnist_simple", "mnist_cnn3", "cnn_lstm", "spectrogram_cnn",
         "bn_cnn_binary", "mnist_cnn128", "cifar10_mlp"]
TRANSFER = ["vgg16_transfer_a", "vgg16_transfer_b", "vgg16_transfer_c"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mnist, cifar):
    """net -> its files (tf_keras .h5, Keras 3 .keras and .weights.h5), inputs and Keras outputs."""
    d = tmp_path_factory.mktemp("keras_files")

    def make(net):
        x = _inputs(net, mnist, cifar)
        m2 = randomize(tutorial_model(tfk, net), seed=len(net))
        m3 = tutorial_model(k3, net)
        copy_weights(m2, m3)
        files = {"h5": str(d / f"{net}.h5"), "keras": str(d / f"{net}.keras"),
                 "weights": str(d / f"{net}.weights.h5")}
        m2.save(files["h5"])
        m3.save(files["keras"])
        m3.save_weights(files["weights"])
        ref = np.asarray(m2(x, training=False))
        np.testing.assert_allclose(np.asarray(m3(x, training=False)), ref, rtol=1e-4, atol=1e-6)
        return dict(files=files, x=x, ref=ref, tfk=m2, k3=m3)

    cache = {}

    def get(net):
        if net not in cache:
            cache[net] = make(net)
        return cache[net]

    return get


def _close(ours, ref, rtol=RTOL):
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape
    scale = np.abs(ref).max()
    assert np.abs(ours - ref).max() <= rtol * scale, (np.abs(ours - ref).max(), scale)


def _activate(logits, net):
    return jax.nn.sigmoid(logits) if net in ("bn_cnn_binary", "vgg16_transfer_b") else jax.nn.softmax(logits)


# ---------------------------------------------------------------- route 1: whole models

@pytest.mark.parametrize("net", SEEDS + TRANSFER)
def test_from_keras_equals_keras_in_every_format(net, saved):
    s = saved(net)
    model, variables = from_keras(s["files"]["h5"], logits=False)  # Keras' own outputs
    _close(model.apply(variables, s["x"]), s["ref"])
    logit_model, logit_vars = from_keras(s["files"]["keras"])  # default: the output activation dropped
    final = "sigmoid" if net in ("bn_cnn_binary", "vgg16_transfer_b") else "softmax"
    assert output_activations(logit_model) == [final]
    _close(_activate(logit_model.apply(logit_vars, s["x"]), net), s["ref"])
    for col in ("params", "batch_stats"):  # both formats give the same variables
        chex.assert_trees_all_equal(variables[col], logit_vars[col])
    if net == "bn_cnn_binary":
        assert len(variables["batch_stats"]) == 3
        bn = s["tfk"].layers[1]
        np.testing.assert_array_equal(variables["batch_stats"][bn.name]["var"], bn.moving_variance.numpy())


def test_transfer_model_keeps_base_and_head(saved):
    s = saved("vgg16_transfer_a")
    model, variables = from_keras(s["files"]["keras"])
    assert len(variables["params"]["vgg16"]) == 13  # the base, nested under its Keras name
    head = [k for k in variables["params"] if k != "vgg16"]
    assert len(head) == 2 and all(k.startswith("dense") for k in head)  # the trained head too


def test_batchnorm_training_mode_matches_keras(saved):
    """train=True normalizes with batch statistics and moves the moving averages as Keras does."""
    s = saved("bn_cnn_binary")
    m3 = tutorial_model(k3, "bn_cnn_binary")
    copy_weights(s["tfk"], m3)
    for layer in m3.layers:  # dropout off in both, so the outputs compare
        if type(layer).__name__ == "Dropout":
            layer.rate = 0.0
    model, variables = from_keras(s["files"]["keras"], logits=False)
    x = np.concatenate([s["x"]] * 3)
    ref = np.asarray(m3(x, training=True))
    spec = json.loads(model.spec)
    for layer in spec["layers"]:
        if layer["class"] == "Dropout":
            layer["config"]["rate"] = 0.0
    out, updates = KerasGraph(json.dumps(spec)).apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
    ours = [layer["name"] for layer in spec["layers"] if layer["class"] == "BatchNormalization"]
    theirs = [layer for layer in m3.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(ours) == len(theirs) == 3
    for name, layer in zip(ours, theirs):
        np.testing.assert_allclose(updates["batch_stats"][name]["mean"], np.asarray(layer.moving_mean),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(updates["batch_stats"][name]["var"], np.asarray(layer.moving_variance),
                                   rtol=1e-4, atol=1e-6)


def test_resnet50_base_nested_in_a_functional_model(tmp_path, cifar):
    m = randomize(tutorial_model(k3, "resnet50_transfer_c"), seed=3)
    for layer in _leaf_layers(m):  # damp the residual branches: moderate outputs over 16 blocks
        if layer.name.endswith("_3_bn"):
            w = layer.get_weights()
            layer.set_weights([w[0] * 0.2] + w[1:])
    path = str(tmp_path / "r50c.keras")
    m.save(path)
    x = cifar[:2] * 2.0 - 1.0
    ref = np.asarray(m(x, training=False))
    model, variables = from_keras(path, logits=False)
    assert len(variables["batch_stats"]["resnet50"]) == 53
    _close(model.apply(variables, x), ref)
    # The same file, weights only, into the registered model (base by name, head by order).
    ours, v = load_keras_weights("resnet50_transfer_c", path, input_shape=(32, 32, 3))
    _close(jax.nn.softmax(ours.apply(v, x)), ref)


@pytest.mark.parametrize("net", ["cnn_lstm", "vgg16_transfer_c"])
def test_keras3_files_without_layer_names(net, saved, tmp_path):
    """Early Keras 3 files lack the `name` attributes: objects are matched by their class counters."""
    src = saved(net)["files"]["keras"]
    dst = tmp_path / f"{net}_nameless.keras"
    with zipfile.ZipFile(src) as z:
        weights = tmp_path / "model.weights.h5"
        weights.write_bytes(z.read("model.weights.h5"))
        with h5py.File(weights, "a") as f:
            f.visititems(lambda key, obj: obj.attrs.__delitem__("name")
                         if isinstance(obj, h5py.Group) and key.endswith("vars") and "name" in obj.attrs else None)
        with zipfile.ZipFile(dst, "w") as out:
            for name in z.namelist():
                out.writestr(name, weights.read_bytes() if name == "model.weights.h5" else z.read(name))
    _, a = from_keras(src)
    _, b = from_keras(dst)
    chex.assert_trees_all_equal(a, b)


def test_import_keras_cli_and_reload(saved, tmp_path, capsys):
    s = saved("cnn_lstm")
    out = tmp_path / "imported"
    assert cli_main(["import-keras", s["files"]["keras"], str(out)]) == 0
    assert "softmax dropped" in capsys.readouterr().out
    model, variables = load_imported(out)
    _close(jax.nn.softmax(model.apply(variables, s["x"])), s["ref"])
    assert read_metadata(out)["output_activations"] == ["softmax"]
    # As the experiment runner builds it: model "keras:FOLDER", pretrained FOLDER.
    named = get_model(f"keras:{out}", num_classes=3)
    assert named.spec == model.spec
    restored = init_with_pretrained_base(named, s["x"].shape[1:], str(out))
    _close(jax.nn.softmax(named.apply(restored, s["x"])), s["ref"])
    with pytest.raises(ValueError, match="3 outputs, the data 10 classes"):
        get_model(f"keras:{out}", num_classes=10)


# ---------------------------------------------------------------- route 2: weights into our models

@pytest.mark.parametrize("net", SEEDS + TRANSFER)
def test_weights_into_registered_model(net, saved, tmp_path):
    s = saved(net)
    shape = s["x"].shape[1:]
    model, variables = load_keras_weights(net, s["files"]["h5"], input_shape=shape)
    assert type(model) is type(get_model(net))
    _close(_activate(model.apply(variables, s["x"]), net), s["ref"])
    # The Keras 3 weights file through the CLI, as an Orbax checkpoint.
    out = tmp_path / net
    assert cli_main(["convert-weights", net, s["files"]["weights"], str(out),
                     "--input-shape", ",".join(map(str, shape))]) == 0
    restored = restore_variables(out)
    _close(_activate(model.apply(restored, s["x"]), net), s["ref"])


def test_assert_keras_parity(saved):
    s = saved("mnist_cnn")
    assert_keras_parity(None, s["k3"], s["x"])
    assert_keras_parity("mnist_cnn", s["tfk"], s["x"])
    assert_keras_parity(get_model("mnist_cnn"), s["k3"], s["x"])
    # A model whose saved weights are not the ones it computes with: the helper must fail.
    other = randomize(tutorial_model(k3, "mnist_cnn"), seed=99)
    with pytest.raises(AssertionError, match=r"Keras output 0 \(\w+\) differs: max \|jaxcnn - Keras\| = "):
        assert_keras_parity(None, _SavesOther(s["k3"], other), s["x"])


class _SavesOther:
    """Computes like `model`, saves `other` (as if the file had gone stale)."""

    def __init__(self, model, other):
        self.model, self.other = model, other
        self.layers, self.output_names = model.layers, ["probabilities"]

    def __call__(self, x, training=False):
        return self.model(x, training=training)

    def save(self, path):
        self.other.save(path)


# ---------------------------------------------------------------- refusals: one line, file and layer

def _cli_refuses(capsys, argv, *needles):
    """Exit 2 with the command line's one error line (naming `needles`) and the --debug hint."""
    capsys.readouterr()  # only the command's own output below
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("jaxcnn: error: ") and "Traceback" not in err, err
    assert "--debug" in lines[1], err
    for needle in needles:
        assert needle in lines[0], err
    return err


@pytest.fixture(scope="module")
def vgg_notop(tmp_path_factory):
    """A tf_keras VGG16 conv base's save_weights file, and its Keras 3 VGG19 sibling."""
    d = tmp_path_factory.mktemp("vgg_refusals")
    base = randomize(tfk.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3)))
    base.save_weights(str(d / "vgg16_notop.h5"))
    k3.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3)).save_weights(
        str(d / "vgg19_notop.weights.h5"))
    return d, base


def test_deeper_sibling_and_dropped_head_are_refused(vgg_notop, saved, tmp_path, capsys):
    d, _ = vgg_notop
    _cli_refuses(capsys, ["convert-weights", "vgg16", str(d / "vgg19_notop.weights.h5"), str(tmp_path / "o")],
                 "vgg19_notop.weights.h5", "block3_conv4", "does not use")
    # A transfer model's file into the bare base: its trained head would be lost.
    _cli_refuses(capsys, ["convert-weights", "vgg16", saved("vgg16_transfer_a")["files"]["h5"], str(tmp_path / "o")],
                 "vgg16_transfer_a.h5", "dense", "transfer model's head")
    with pytest.raises(WeightConversionError, match="Conv2D layers that mnist_cnn does not use"):
        load_keras_weights("mnist_cnn", saved("mnist_cnn3")["files"]["weights"])
    with pytest.raises(WeightConversionError, match="mnist_cnn3 layer 'conv3' .*no counterpart"):
        load_keras_weights("mnist_cnn3", saved("mnist_cnn")["files"]["h5"])
    assert not os.path.exists(tmp_path / "o")


def test_uniquified_weight_scopes_are_read_by_their_layer(vgg_notop, tmp_path):
    """tf_keras names a second model's weights 'block1_conv1_1/kernel:0': the group names the layer."""
    d, _ = vgg_notop
    src, dst = d / "vgg16_notop.h5", tmp_path / "uniq.h5"
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        g.attrs["layer_names"] = f.attrs["layer_names"]
        for lname in map(_str, f.attrs["layer_names"]):
            out = g.create_group(lname)
            names = []
            for w in map(_str, f[lname].attrs["weight_names"]):
                new = w.replace(f"{lname}/", f"{lname}_1/")
                out[new] = np.asarray(f[lname][w])
                names.append(new.encode())
            out.attrs["weight_names"] = np.array(names)
    a, b = load_keras_h5("vgg16", src), load_keras_h5("vgg16", dst)
    for layer in a["params"]:
        np.testing.assert_array_equal(a["params"][layer]["kernel"], b["params"][layer]["kernel"])


def test_vgg16_top_at_another_input_size(tmp_path, cifar, capsys):
    m = randomize(tfk.applications.VGG16(weights=None, input_shape=(32, 32, 3), classifier_activation=None))
    path = str(tmp_path / "vgg16_top32.h5")
    m.save_weights(path)
    _cli_refuses(capsys, ["convert-weights", "vgg16", path, str(tmp_path / "o")],
                 "vgg16_top32.h5", "'fc1'", "another input size")
    model, variables = load_keras_weights("vgg16", path, input_shape=(32, 32, 3))
    x = cifar * 2.0 - 1.0
    _close(model.apply(variables, x), m(x, training=False))


def test_damaged_files_name_the_file(saved, tmp_path, capsys):
    src = saved("mnist_cnn")["files"]["h5"]
    bad = tmp_path / "damaged.h5"
    with h5py.File(src) as f, h5py.File(bad, "w") as g:
        for k in f:
            f.copy(k, g)
        for k, v in f.attrs.items():
            g.attrs[k] = v
        group = g["model_weights"]
        lname = _str(group.attrs["layer_names"][-1])
        wname = _str(group[lname].attrs["weight_names"][0])
        del group[lname][wname]
    with pytest.raises(WeightConversionError, match="damaged.h5: damaged Keras"):
        from_keras(bad)
    _cli_refuses(capsys, ["convert-weights", "mnist_cnn", str(bad), str(tmp_path / "o")], "damaged.h5")
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(open(saved("mnist_cnn")["files"]["keras"], "rb").read()[:5000])
    _cli_refuses(capsys, ["import-keras", str(truncated), str(tmp_path / "o")], "truncated.keras")
    garbled = tmp_path / "garbled.keras"
    with zipfile.ZipFile(saved("mnist_cnn")["files"]["keras"]) as z, zipfile.ZipFile(garbled, "w") as out:
        out.writestr("config.json", z.read("config.json"))
        out.writestr("model.weights.h5", b"not an HDF5 file")
    _cli_refuses(capsys, ["import-keras", str(garbled), str(tmp_path / "o")], "garbled.keras")
    _cli_refuses(capsys, ["convert-weights", "mnist_cnn", str(garbled), str(tmp_path / "o")], "garbled.keras")
    # A weights-only file has no architecture to import.
    _cli_refuses(capsys, ["import-keras", saved("mnist_cnn")["files"]["weights"], str(tmp_path / "o")],
                 "mnist_cnn.weights.h5", "convert-weights")


def _str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def _k3_file(tmp_path, name, *layers, shape=(8, 8, 1)):
    path = str(tmp_path / f"{name}.keras")
    k3.Sequential([k3.Input(shape), *layers]).save(path)
    return path


@pytest.mark.parametrize("name,layer,needle", [
    ("constraint", lambda L: L.Conv2D(2, 3, kernel_constraint="max_norm", name="c"), r"'c' \(Conv2D\): option kernel_constraint"),
    ("lambda", lambda L: L.Lambda(lambda x: x * 2, name="double"), r"'double' \(Lambda\): layer class Lambda"),
    ("channels_first", lambda L: L.Flatten(data_format="channels_first", name="f"), r"'f' \(Flatten\): option data_format"),
    ("activation", lambda L: L.Dense(3, activation="sparsemax", name="d"), r"'d' \(Dense\): option activation='sparsemax'"),
    ("backwards", lambda L: L.LSTM(3, go_backwards=True, name="rnn"), r"'rnn' \(LSTM\): option go_backwards=True"),
])
def test_unsupported_layers_and_options_are_refused(name, layer, needle, tmp_path, capsys):
    shape = (5, 4) if name == "backwards" else (8, 8, 1)
    path = _k3_file(tmp_path, name, layer(k3.layers), shape=shape)
    with pytest.raises(WeightConversionError, match=needle):
        from_keras(path)
    _cli_refuses(capsys, ["import-keras", path, str(tmp_path / "o")], f"{name}.keras")


def test_imported_model_trains_and_predicts_like_keras(saved):
    """The imported module is a jaxcnn model: Trainer predicts Keras' outputs, then fits."""
    s = saved("bn_cnn_binary")
    model, variables = from_keras(s["files"]["h5"])
    trainer = Trainer(model, s["x"].shape[1:], loss="binary_crossentropy", optimizer="adam",
                      params=variables["params"], batch_stats=variables["batch_stats"], compute_dtype="f32")
    _close(trainer.predict(s["x"], batch_size=4), s["ref"])
    before = np.asarray(trainer.state.params[list(variables["params"])[0]]["kernel"]).copy()
    history = trainer.fit(s["x"], np.array([0, 1, 1]), epochs=1, batch_size=3, verbose=0)
    assert np.isfinite(history["loss"][-1])
    assert not np.array_equal(np.asarray(trainer.state.params[list(variables["params"])[0]]["kernel"]), before)
