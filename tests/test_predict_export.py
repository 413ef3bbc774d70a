"""Using a trained run: model card, predict on files, export in four formats, evaluation report.

One tiny MNIST run (256 training images, 1 epoch, 100 test images: a ragged last batch) is
shared by the module. Export tests run each format in its own runtime and skip only where that
runtime (the `export` extra) is not installed.
"""

import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest

from jaxcnn import errors, export, report
from jaxcnn.cli import main
from jaxcnn.model_card import NoTrainedModelError, read_card
from jaxcnn.predict import ImageError, load_predictor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_N = 100


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir):
    from jaxcnn.cli import load_experiment
    from jaxcnn.experiment import train_and_evaluate

    workdir = str(tmp_path_factory.mktemp("mnist_run"))
    config = dataclasses.replace(load_experiment("mnist_cnn").get_config(), epochs=1, train_limit=256,
                                 test_limit=TEST_N, data_dir=data_dir)
    train_and_evaluate(config, workdir, verbose=0)
    return workdir


@pytest.fixture(scope="module")
def predictor(run):
    return load_predictor(run)


@pytest.fixture(scope="module")
def test_images(data_dir):
    from jaxcnn.data import load_dataset

    ds = load_dataset("mnist", data_dir=data_dir).take(1, TEST_N)
    return ds.x_test, ds.y_test


def _png(array) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array).squeeze(-1) if array.shape[-1] == 1 else np.asarray(array)).save(buf, "PNG")
    return buf.getvalue()


# -- model card and report --------------------------------------------------------------------------
def test_run_records_what_predict_needs(run):
    card = read_card(run)
    assert card.model == "mnist_cnn" and card.model_kwargs == {"num_classes": 10}
    assert card.input_shape == (28, 28, 1) and card.input_dtype == "uint8"
    assert card.input_scaling == "divide_by_255" and card.output_activation == "softmax"
    assert card.class_names == tuple(str(d) for d in range(10)) and card.dataset == "mnist"


def test_run_writes_the_evaluation_report(run, predictor, test_images):
    x, y = test_images
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    cm = np.asarray(metrics["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == TEST_N  # every test example once, the padding not
    predicted = predictor.predict(x).argmax(-1)
    for t in range(10):
        for p in range(10):
            assert cm[t, p] == np.sum((y == t) & (predicted == p))
    assert metrics["report_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-9)
    three = metrics["per_class"]["3"]
    assert three["support"] == np.sum(y == 3)
    assert three["recall"] == pytest.approx(np.mean(predicted[y == 3] == 3))
    if np.any(predicted == 3):
        assert three["precision"] == pytest.approx(np.mean(y[predicted == 3] == 3))
    assert three["accuracy"] == pytest.approx(np.mean((y == 3) == (predicted == 3)))
    for name in ("confusion.png", "errors.png"):
        with open(os.path.join(run, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_numbers_by_hand():
    # true:      0  0  1  1  1  2
    # predicted: 0  1  1  1  2  2   (confidence of the two mistakes: 0.6 and 0.9)
    probs = np.array([[.8, .1, .1], [.3, .6, .1], [.1, .8, .1], [.2, .7, .1], [0, .1, .9], [.1, .1, .8]])
    labels = np.array([0, 0, 1, 1, 1, 2])
    m = report.evaluation_metrics(probs, labels, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert m["per_class"]["b"] == {"precision": 2 / 3, "recall": 2 / 3, "accuracy": 4 / 6, "support": 3}
    assert m["per_class"]["c"]["precision"] == 0.5 and m["per_class"]["a"]["recall"] == 0.5
    assert list(report.most_confident_errors(probs, labels)) == [4, 1]
    binary = report.class_probabilities(np.array([[0.25], [0.9]]), "binary_crossentropy")
    np.testing.assert_allclose(binary, [[0.75, 0.25], [0.1, 0.9]])


def test_evaluate_is_exact_on_fake_devices(run, data_dir, tmp_path):
    """3 fake devices, 100 examples, batch 32: padded batches, same confusion matrix as 1 device."""
    one = json.load(open(os.path.join(run, "metrics.json")))["confusion_matrix"]
    out = subprocess.run([sys.executable, "-m", "jaxcnn.cli", "evaluate", run, "--limit", str(TEST_N),
                          "--fake-devices", "3", "--batch-size", "32", "--data-dir", data_dir],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": REPO})
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["confusion_matrix"] == one
    assert metrics["report_examples"] == TEST_N and "test_accuracy" in metrics  # merged, not replaced


# -- predict ----------------------------------------------------------------------------------------
def test_predict_files_folders_and_archives(predictor, test_images, tmp_path):
    x, _ = test_images
    folder = tmp_path / "digits"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        (folder / ("sub" if i % 2 else "") / f"{i}.png").write_bytes(_png(x[i]))
    with zipfile.ZipFile(tmp_path / "more.zip", "w") as z:
        z.writestr("a/4.png", _png(x[4]))
    with tarfile.open(tmp_path / "more.tar.gz", "w:gz") as t:
        data = _png(x[5])
        info = tarfile.TarInfo("5.png")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    rows = predictor.predict_files([str(folder), str(tmp_path / "more.zip"), str(tmp_path / "more.tar.gz")],
                                   top_k=3)
    names = [os.path.basename(r.source).split(":")[-1] for r in rows]
    assert names == ["0.png", "2.png", "1.png", "3.png", "4.png", "5.png"]  # folder order, then archives
    want = predictor.predict(x[[0, 2, 1, 3, 4, 5]])
    for row, p in zip(rows, want):
        assert row.error is None and len(row.top) == 3
        assert row.top[0] == (str(p.argmax()), pytest.approx(float(p.max()), rel=1e-6))
        assert [c for c, _ in row.top] == [str(k) for k in np.argsort(-p, kind="stable")[:3]]


def test_predict_resizes_as_training_did(predictor, test_images, tmp_path):
    from PIL import Image

    from jaxcnn.data.image_folder import resize_images

    big = np.asarray(Image.fromarray(test_images[0][0, :, :, 0]).resize((56, 40)))[..., None]
    (tmp_path / "big.png").write_bytes(_png(big))
    (row,) = predictor.predict_files([str(tmp_path / "big.png")], top_k=10)
    want = predictor.predict(resize_images(big[None], (28, 28)))[0]
    got = dict(row.top)
    for k in range(10):
        assert got[str(k)] == pytest.approx(float(want[k]), rel=1e-6)


def test_predict_cli_writes_csv_and_json(run, test_images, tmp_path, capsys):
    x, _ = test_images
    for i in range(3):
        (tmp_path / f"{i}.png").write_bytes(_png(x[i]))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert main(["predict", run, str(tmp_path), "--top-k", "2", "--csv", str(tmp_path / "out.csv"),
                 "--json", str(tmp_path / "out.json"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "broken.png: ERROR" in printed and "not a readable image" in printed
    rows = json.load(open(tmp_path / "out.json"))
    assert [os.path.basename(r["file"]) for r in rows] == ["0.png", "1.png", "2.png", "broken.png"]
    assert len(rows[0]["top"]) == 2 and "error" in rows[3]
    lines = open(tmp_path / "out.csv").read().splitlines()
    assert lines[0] == "file,class1,probability1,class2,probability2,error" and len(lines) == 5
    assert main(["predict", run, str(tmp_path), "--on-error", "skip", "--json", str(tmp_path / "s.json"),
                 "--quiet"]) == 0
    assert len(json.load(open(tmp_path / "s.json"))) == 3
    capsys.readouterr()
    assert main(["predict", run, str(tmp_path), "--on-error", "fail", "--quiet"]) == 2
    _assert_one_line(capsys.readouterr().err, "broken.png: not a readable image")


def test_wrong_channel_count_is_refused_or_converted(predictor, test_images, tmp_path):
    gray = test_images[0][0]
    rgb = np.repeat(gray, 3, axis=-1)
    (tmp_path / "rgb.png").write_bytes(_png(rgb))
    with pytest.raises(ImageError, match="3 channel.*takes 1.*--convert"):
        predictor.predict_files([str(tmp_path / "rgb.png")], on_error="fail")
    (row,) = predictor.predict_files([str(tmp_path / "rgb.png")], convert=True)
    assert row.top[0][1] == pytest.approx(float(predictor.predict(gray[None]).max()), rel=1e-6)
    with pytest.raises(ImageError, match=r"\(28, 28, 3\) do not fit .*3 channel"):
        predictor.predict(rgb[None])
    with pytest.raises(ImageError, match=r"images of shape \(28, 28, 1\) have 3 axes; expected 4: "
                                         r"\[batch, 28, 28, 1\]"):
        predictor.predict(gray)  # one image without its batch axis
    with pytest.raises(ImageError, match=r"images of shape \(32, 32, 1\) do not fit the model's input shape \(28, 28, 1\)"):
        predictor.predict(np.zeros((2, 32, 32, 1), np.uint8))


def test_checkpoint_choices(run, predictor, test_images):
    x = test_images[0][:8]
    final = predictor.predict(x)
    for which in ("best", "latest", "final"):
        np.testing.assert_allclose(load_predictor(run, checkpoint=which).predict(x), final, rtol=1e-6)
    step = load_predictor(run, checkpoint="latest").step
    assert step == 8 and load_predictor(run, checkpoint=str(step)).step == step  # 256 / 32 steps


def test_no_trained_model_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(NoTrainedModelError, match="no trained model"):
        load_predictor(str(tmp_path))
    assert main(["predict", str(tmp_path), "x.png"]) == 2
    _assert_one_line(capsys.readouterr().err, f"{tmp_path}: no trained model", "jaxcnn train")
    assert main(["export", str(tmp_path / "nope"), "--format", "savedmodel"]) == 2
    _assert_one_line(capsys.readouterr().err, f"{tmp_path / 'nope'}: no such folder")


# -- the command line's errors: one line and an exit status, the traceback only with --debug --------
def _assert_one_line(stderr, *needles):
    """`jaxcnn: error: ...` naming `needles`, then the --debug hint; nothing else, no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("jaxcnn: error: "), stderr
    assert lines[1] == f"jaxcnn: {errors.HINT}" and "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in lines[0], stderr


def _jaxcnn(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "jaxcnn.cli", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu",
                                            "JAXCNN_DEBUG": "", **(env or {})})


def test_use_commands_report_a_workdir_without_a_run_in_one_line(tmp_path):
    """A folder that holds no trained run: exit 2, one line naming it (predict and export in-process
    above); --debug shows the traceback instead."""
    out = _jaxcnn("evaluate", str(tmp_path / "missing"), "--limit", "5")
    assert out.returncode == 2, out.stderr
    _assert_one_line(out.stderr, f"{tmp_path / 'missing'}: no such folder")
    out = _jaxcnn("--debug", "evaluate", str(tmp_path))
    assert out.returncode == 1 and "Traceback" in out.stderr and "NoTrainedModelError" in out.stderr


@pytest.mark.parametrize("argv, flag", [
    (["evaluate", "W", "--limit", "0"], "--limit"),
    (["evaluate", "W", "--batch-size", "-2"], "--batch-size"),
    (["evaluate", "W", "--fake-devices", "0"], "--fake-devices"),
    (["predict", "W", "x.png", "--top-k", "0"], "--top-k"),
    (["predict", "W", "x.png", "--batch-size", "0"], "--batch-size"),
    (["predict", "W", "x.png", "--checkpoint", "newest"], "--checkpoint"),
    (["export", "W", "--format", "onnx", "--check", "-1"], "--check"),
    (["launch", "--processes", "2", "--grace", "0", "--", "list"], "--grace"),
    (["launch", "--processes", "2", "--grace", "soon", "--", "list"], "--grace"),
    (["launch", "--processes", "2", "--port", "70000", "--", "list"], "--port"),
    (["convert-weights", "mnist_cnn", "a.h5", "W", "--num-classes", "0"], "--num-classes"),
])
def test_numeric_flags_are_checked_when_parsed(argv, flag, tmp_path, capsys):
    """Refused by the parser (exit 2, naming the flag) before any workdir is looked at."""
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "no-run") if a == "W" else a for a in argv])
    assert e.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err


def test_an_unusable_image_is_one_line_naming_the_file(run, test_images, tmp_path, capsys):
    """A wrong-channel image (the only file), an unreadable one with --on-error fail: exit 2."""
    (tmp_path / "rgb.png").write_bytes(_png(np.repeat(test_images[0][0], 3, axis=-1)))
    out = _jaxcnn("predict", run, str(tmp_path / "rgb.png"), "--quiet")
    assert out.returncode == 2, out.stderr
    _assert_one_line(out.stderr, f"{tmp_path / 'rgb.png'}: 3 channel(s)", "--convert")
    (tmp_path / "gray.png").write_bytes(_png(test_images[0][1]))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = _jaxcnn("predict", run, str(tmp_path), "--on-error", "fail", "--quiet")
    assert out.returncode == 2, out.stderr
    _assert_one_line(out.stderr, "broken.png: not a readable image", "and 1 more: 2 of 3 files")
    with pytest.raises(ImageError, match="broken.png"):  # --debug: the exception itself
        main(["--debug", "predict", run, str(tmp_path), "--on-error", "fail", "--quiet"])
    capsys.readouterr()
    assert main(["predict", run, str(tmp_path / "rgb.png"), str(tmp_path / "broken.png"), "--on-error", "skip",
                 "--quiet"]) == 2  # all left out: nothing was predicted
    _assert_one_line(capsys.readouterr().err, f"{tmp_path / 'rgb.png'}: 3 channel(s)", "2 of 2 files")


def test_an_export_that_fails_exits_1(run, monkeypatch, capsys, tmp_path):
    """A failure (the exported model disagrees) is status 1; a bad choice (missing runtime) is 2."""
    def differs(predictor, fmt, path):
        raise export.ExportMismatchError(f"{path}: {fmt} outputs differ from jaxcnn's by 0.5")

    monkeypatch.setattr(export, "export", differs)
    capsys.readouterr()
    assert main(["export", run, "--format", "savedmodel", "--out", str(tmp_path / "x"), "--check", "0"]) == 1
    _assert_one_line(capsys.readouterr().err, f"{tmp_path / 'x'}: savedmodel outputs differ")


def test_model_card_without_weights(run, tmp_path):
    import shutil

    shutil.copy(os.path.join(run, "model.json"), tmp_path / "model.json")
    with pytest.raises(NoTrainedModelError, match="no checkpoints"):
        load_predictor(str(tmp_path))
    with pytest.raises(NoTrainedModelError, match="no final weights"):
        load_predictor(str(tmp_path), checkpoint="final")


# -- export -----------------------------------------------------------------------------------------
def _require(fmt):
    try:
        export.require(fmt)
    except export.ExportError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_runs_in_its_own_runtime(fmt, predictor, test_images, tmp_path):
    _require(fmt)
    path = export.export(predictor, fmt, str(tmp_path / export.DEFAULT_NAMES[fmt]))
    x = test_images[0]
    for n in (TEST_N, 3):  # two batch sizes through one file: the batch dimension is symbolic
        err = export.check_export(predictor, fmt, path, x[:n])
        assert err <= export.TOLERANCE[fmt]


def test_export_io_names_and_dtypes(predictor, tmp_path):
    _require("onnx")
    import onnx
    import tensorflow as tf

    saved = export.export(predictor, "savedmodel", str(tmp_path / "sm"))
    sig = tf.saved_model.load(saved).signatures["serving_default"]
    (spec,) = sig.structured_input_signature[1].values()
    assert spec.name == "image" and spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 28, 28, 1]
    assert list(sig.structured_outputs) == ["probabilities"]
    proto = onnx.load(export.export(predictor, "onnx", str(tmp_path / "m.onnx")))
    inp = proto.graph.input[0]
    assert inp.name == "image" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    out = proto.graph.output[0]
    assert out.name == "probabilities" and out.type.tensor_type.shape.dim[0].dim_param == "batch"


def test_keras_export_of_a_batchnorm_binary_model(tmp_path):
    """BatchNorm statistics and the sigmoid head copy over (random weights, uint8 RGB input)."""
    _require("keras")
    import jax

    from jaxcnn.model_card import make_card
    from jaxcnn.predict import Predictor
    from jaxcnn.train import Trainer

    card = make_card(model="bn_cnn_binary", model_kwargs={"dense_units": 16}, input_shape=(20, 20, 3),
                     input_dtype=np.uint8, class_names=("cat", "dog"), loss="binary_crossentropy")
    trainer = Trainer(card.build_model(), card.input_shape, loss=card.loss, optimizer="sgd", compute_dtype="f32")
    rng = np.random.default_rng(0)
    stats = jax.tree.map(lambda s: rng.uniform(0.5, 2.0, np.shape(s)).astype(np.float32), trainer.state.batch_stats)
    trainer.state = trainer.state.replace(batch_stats=stats)
    predictor = Predictor(card, trainer, "random", None)
    path = export.export(predictor, "keras", str(tmp_path / "m.keras"))
    x = rng.integers(0, 256, (7, 20, 20, 3), dtype=np.uint8)
    assert export.check_export(predictor, "keras", path, x) <= 1e-5
    assert predictor.predict(x).shape == (7, 2)


def test_keras_export_refuses_models_without_keras_layers(tmp_path):
    _require("keras")
    from jaxcnn.model_card import make_card
    from jaxcnn.predict import Predictor
    from jaxcnn.train import Trainer

    card = make_card(model="cnn_lstm", model_kwargs={"lstm_units": 4}, input_shape=(3, 12, 12, 1),
                     input_dtype=np.uint8, class_names=("a", "b", "c"), loss="sparse_categorical_crossentropy")
    trainer = Trainer(card.build_model(), card.input_shape, optimizer="sgd", compute_dtype="f32")
    with pytest.raises(export.ExportError, match="no Keras layers for model 'cnn_lstm'.*savedmodel"):
        export.export(Predictor(card, trainer, "random", None), "keras", str(tmp_path / "m.keras"))


def test_missing_runtime_names_the_extra(run, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(export.ExportError, match=r"needs tf2onnx.*pip install 'jaxcnn\[export\]'"):
        export.require("onnx")
    capsys.readouterr()
    assert main(["export", run, "--format", "onnx"]) == 2
    _assert_one_line(capsys.readouterr().err, "--format onnx needs tf2onnx", "jaxcnn[export]")


def test_symbolic_batch_traces_through_im2col(monkeypatch):
    """jax.export with a symbolic batch: no inconclusive size comparison in the conv or the pool."""
    import jax
    import jax.numpy as jnp

    from jaxcnn.models import get_model

    model = get_model("mnist_cnn")
    variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    x = np.random.default_rng(0).random((5, 28, 27, 1), np.float32)  # odd width: the pool slices
    spec = jax.export.symbolic_args_specs(x, "b, 28, 27, 1")
    for mode in ("auto", "im2col"):
        monkeypatch.setenv("JAXCNN_CONV", mode)
        exported = jax.export.export(jax.jit(lambda v, x: model.apply(v, x)))(variables, spec)
        np.testing.assert_allclose(exported.call(variables, x), model.apply(variables, x), rtol=1e-5, atol=1e-6)


def test_export_cli_checks_on_test_images(run, data_dir, capsys):
    _require("tflite")
    assert main(["export", run, "--format", "tflite", "--check", "8", "--data-dir", data_dir]) == 0
    captured = capsys.readouterr()
    path = captured.out.strip().splitlines()[-1]
    assert path == os.path.join(run, "export", "model.tflite") and os.path.getsize(path) > 0
    assert "checked in its runtime on 8 test images" in captured.err


def test_jpeg_is_decoded_as_the_image_loader_did(predictor, test_images, tmp_path):
    """Lossy files: TensorFlow's decoder (the training loader's), whose rounding Pillow's differs from."""
    tf = pytest.importorskip("tensorflow")
    from PIL import Image

    Image.fromarray(test_images[0][1, :, :, 0]).save(tmp_path / "d.jpg", quality=70)
    pixels = tf.io.decode_image((tmp_path / "d.jpg").read_bytes(), channels=1).numpy()
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "d.jpg"))[..., None], pixels)  # they differ
    (row,) = predictor.predict_files([str(tmp_path / "d.jpg")], top_k=10)
    want = predictor.predict(pixels[None])[0]
    for name, p in row.top:
        assert p == pytest.approx(float(want[int(name)]), rel=1e-6)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("mnist_simple", {"dense_units": 8}, (12, 12, 1)),
    ("mnist_cnn3", {"dense_units": 8}, (20, 20, 1)),
    ("mnist_cnn_dropout", {"dense_units": 8}, (14, 14, 1)),
    ("cifar10_cnn", {}, (10, 10, 3)),  # SAME and VALID convolutions
    ("cifar10_mlp", {"hidden": (16, 8)}, (6, 6, 3)),
])
def test_keras_layers_match_each_registered_model(name, kwargs, shape):
    _require("keras")
    from jaxcnn.model_card import make_card
    from jaxcnn.predict import Predictor
    from jaxcnn.train import Trainer

    card = make_card(model=name, model_kwargs={"num_classes": 5, **kwargs}, input_shape=shape,
                     input_dtype=np.uint8, class_names="abcde", loss="sparse_categorical_crossentropy")
    trainer = Trainer(card.build_model(), shape, optimizer="sgd", compute_dtype="f32", seed=1)
    predictor = Predictor(card, trainer, "random", None)
    x = np.random.default_rng(0).integers(0, 256, (6, *shape), dtype=np.uint8)
    got = np.asarray(export.keras_model(predictor)(x, training=False))  # eager: no graph to trace
    assert export.relative_error(got, predictor.predict(x)) <= 1e-5
