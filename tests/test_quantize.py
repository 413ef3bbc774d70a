"""Quantization: Qwix int8 QAT (jaxcnn.compress.quantize), post-training int8 / dynamic export to
TFLite and ONNX checked in their runtimes, and the checksum records of every export."""

import importlib.util
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn import export
from jaxcnn.compress.quantize import float_size_bytes, int8_size_bytes, qat_model
from jaxcnn.errors import UsageError
from jaxcnn.models.layers import Conv
from tests.helpers import Tiny

needs_qwix = pytest.mark.skipif(importlib.util.find_spec("qwix") is None, reason="qwix is not installed")


class ConvOnly(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return Conv(3, (3, 3), name="conv")(x)


def _flip_byte(path, offset=None):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        i = len(data) // 2 if offset is None else offset
        data[i] ^= 0x01
        f.seek(0)
        f.write(data)


def test_every_export_carries_a_checksum_record_checked_on_load(tmp_path):
    """Files get NAME.jaxcnn_checksums.json beside them, folders one inside; one flipped bit is
    refused by name before any runtime loads the export."""
    f = str(tmp_path / "model.tflite")
    export._replace(f, lambda tmp: open(tmp, "wb").write(b"x" * 100))
    assert os.path.exists(f + ".jaxcnn_checksums.json") and export.verify_export(f)
    d = str(tmp_path / "savedmodel")

    def write_dir(tmp):
        os.makedirs(os.path.join(tmp, "variables"))
        open(os.path.join(tmp, "saved_model.pb"), "wb").write(b"graph" * 20)
        open(os.path.join(tmp, "variables", "v.data"), "wb").write(b"w" * 50)

    export._replace(d, write_dir)
    assert os.path.exists(os.path.join(d, "jaxcnn_checksums.json")) and export.verify_export(d)
    for path, damaged in ((f, f), (d, os.path.join(d, "variables", "v.data"))):
        _flip_byte(damaged)
        with pytest.raises(export.ExportCorruptError, match="does not match its checksum"):
            export.verify_export(path)
        with pytest.raises(export.ExportCorruptError):
            export.run_exported("tflite" if path == f else "savedmodel", path, np.zeros((1, 28, 28, 1), np.float32))
    os.remove(f + ".jaxcnn_checksums.json")
    assert export.verify_export(f) is False  # an export from before the records: nothing to check


def test_quantize_options_are_checked_before_any_work():
    with pytest.raises(export.ExportUnavailableError, match="tflite or onnx"):
        export.require_quantize("savedmodel", "int8")
    with pytest.raises(export.ExportUnavailableError, match="unknown --quantize"):
        export.require_quantize("tflite", "int4")
    with pytest.raises(UsageError, match="int8"):
        qat_model(Tiny(), "int4")


@pytest.mark.slow
@needs_qwix
def test_qat_model_quantizes_convolutions_and_dense_layers_with_straight_through_gradients():
    model, qat = Tiny(), qat_model(Tiny())
    x = jax.random.uniform(jax.random.PRNGKey(0), (8, 28, 28, 1))
    variables = model.init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(jnp.shape, qat.init(jax.random.PRNGKey(1), x)) == jax.tree.map(jnp.shape, variables)

    @jax.jit
    def run(params):
        f = lambda m: (lambda p: m.apply({"params": p}, x))  # noqa: E731
        grads = jax.grad(lambda p: jnp.sum(f(qat)(p) ** 2))(params)
        return f(model)(params), f(qat)(params), grads

    want, got, grads = run(variables["params"])
    err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
    assert 0 < err < 0.05  # int8: changed, a little
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))
    # The convolution alone is quantized too (the im2col product goes through lax.dot_general).
    conv = ConvOnly()
    cv = conv.init(jax.random.PRNGKey(2), x)
    assert float(jnp.max(jnp.abs(jax.jit(qat_model(conv).apply)(cv, x) - jax.jit(conv.apply)(cv, x)))) > 0
    params = variables["params"]
    assert int8_size_bytes(params) == (3 * 3 * 4 + 4 * 4) + 4 * 4 + (13 * 13 * 4 * 10 + 4 * 10) + 4 * 10
    assert float_size_bytes(params) == 4 * (36 + 4 + 676 * 10 + 10)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_dir):
    """A small N1 run, pruned to 50% and trained with int8 QAT, through the command line."""
    from jaxcnn.cli import main

    workdir = str(tmp_path_factory.mktemp("run") / "mnist")
    assert main(["train", "mnist_cnn", "--limit", "1000", "--epochs", "2", "--batch-size", "32", "--workdir",
                 workdir, "--data-dir", data_dir, "--quiet", "--prune", "0.5", "--quantize", "int8",
                 "--set", "tensorboard=false"]) == 0
    return workdir


@pytest.mark.slow
@needs_qwix
def test_fit_options_prune_and_qat_reach_the_metrics(trained_run):
    m = json.load(open(os.path.join(trained_run, "metrics.json")))
    assert m["prune"] == "0.5" and m["quantize"] == "int8"
    assert m["kernel_sparsity"] == pytest.approx(0.5, abs=0.01) and m["params_total"] == 121930
    assert m["int8_weights_bytes"] < m["float32_weights_bytes"] / 3.5
    assert m["quantized_test_accuracy"] == m["test_accuracy"] > 0.7


@pytest.mark.slow
@needs_qwix
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_post_training_int8_and_dynamic_exports_agree_in_their_runtimes(fmt, trained_run, data_dir, tmp_path):
    from jaxcnn.cli.serve import load_train_sample
    from jaxcnn.predict import load_predictor, load_test_split

    predictor = load_predictor(trained_run)
    images, labels = load_test_split(predictor.card, data_dir=data_dir, limit=300)
    sample = load_train_sample(predictor.card, data_dir=data_dir, limit=100)
    float_path = export.export(predictor, fmt, str(tmp_path / f"float.{fmt}"))
    sizes = {"float": os.path.getsize(float_path)}
    for q in ("int8", "dynamic"):
        path = export.export(predictor, fmt, str(tmp_path / f"{q}.{fmt}"), quantize=q, representative=sample)
        sizes[q] = os.path.getsize(path)
        r = export.check_quantized(predictor, fmt, path, images, labels)
        assert r["agreement"] >= 0.97 and abs(r["accuracy"] - r["float_accuracy"]) <= 0.02, r
        assert export.verify_export(path)
    assert sizes["int8"] <= sizes["float"] / 3 and sizes["dynamic"] <= sizes["float"] / 3, sizes
    if fmt == "tflite":  # full integer: the conv and dense weights and the activations are int8
        import tensorflow as tf

        interp = tf.lite.Interpreter(model_path=str(tmp_path / "int8.tflite"))
        kinds = {d["dtype"] for d in interp.get_tensor_details()}
        assert np.int8 in kinds and interp.get_input_details()[0]["dtype"] == np.uint8
        ops = {op["op_name"] for op in interp._get_ops_details()}
        assert "CONV_2D" in ops and "FULLY_CONNECTED" in ops
    with pytest.raises(export.ExportUnavailableError, match="representative"):
        export.export(predictor, fmt, str(tmp_path / "x"), quantize="int8", representative=None)


@pytest.mark.slow
@needs_qwix
def test_export_command_quantizes_and_names_agreement(trained_run, data_dir, capsys):
    from jaxcnn.cli import main

    assert main(["export", trained_run, "--format", "tflite", "--quantize", "int8", "--check", "200",
                 "--calibration", "50", "--data-dir", data_dir]) == 0
    err = capsys.readouterr().err
    assert "model_int8.tflite: checked in its runtime on 200 test images: predicted class agrees" in err
    path = os.path.join(trained_run, "export", "model_int8.tflite")
    assert export.verify_export(path)
