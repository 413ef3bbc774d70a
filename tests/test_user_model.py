"""A user's own model on every road: trained by Trainer, saved with `trainer.save(W)` (or
`fit(..., workdir=W)`), then served in a fresh process by `jaxcnn predict|evaluate|export W` and
`jaxcnn.load(W)`; and input scaling that belongs to the model (a Keras `Rescaling` layer: raw
pixels in, scaled once).

The user's files (a module, a training script, a Keras model) are written into tmp_path and run
from outside the package, in subprocesses, as a user would. Those are slow; the fast tier keeps
one small in-process round trip.
"""

import json
import os
import subprocess
import sys
import textwrap
import warnings

import jax
import numpy as np
import pytest

import jaxcnn
from jaxcnn.data import checks
from jaxcnn.errors import UsageError
from jaxcnn.keras.graph import scales_own_inputs
from jaxcnn.model_card import build_model, make_card, model_reference, read_card
from jaxcnn.models.registry import resolve_import_path
from jaxcnn.train import Trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5

TINY = textwrap.dedent('''
    import flax.linen as nn


    class Tiny(nn.Module):
        num_classes: int = 3
        units: int = 4

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = x.reshape((x.shape[0], -1))
            return nn.Dense(self.num_classes, name="out")(nn.relu(nn.Dense(self.units, name="hidden")(x)))


    class RawTiny(nn.Module):
        """Tiny with its own pixel scaling: it takes 0..255."""
        num_classes: int = 3
        units: int = 4
        input_range = "0..255"

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = x * (1.0 / 255.0)
            x = x.reshape((x.shape[0], -1))
            return nn.Dense(self.num_classes, name="out")(nn.relu(nn.Dense(self.units, name="hidden")(x)))


    class WithFunction(nn.Module):
        act: object = nn.relu

        @nn.compact
        def __call__(self, x, train: bool = False):
            return nn.Dense(2)(self.act(x.reshape((x.shape[0], -1))))
''')


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny_models.py"
    path.write_text(TINY)
    return str(path)


def test_fit_with_a_workdir_writes_a_run_folder_that_loads_back(tmp_path, tiny_file):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 4, 4, 1)).astype(np.uint8), rng.integers(0, 3, 16)
    model = resolve_import_path(f"{tiny_file}:Tiny")(units=5)
    name, kwargs = model_reference(model)
    assert (name, kwargs) == (f"{tiny_file}:Tiny", {"num_classes": 3, "units": 5})
    assert build_model(name, kwargs) == model

    trainer = Trainer(model, (4, 4, 1), optimizer="adam")
    workdir = str(tmp_path / "run")
    trainer.fit(x, y, epochs=1, batch_size=8, verbose=0, workdir=workdir)
    for part in ("model.json", "params", "checkpoints/2", "history.json"):
        assert os.path.exists(os.path.join(workdir, part)), part
    card = read_card(workdir)
    assert (card.model, card.input_range, card.input_scaling, card.input_dtype) == (
        name, "0..1", "divide_by_255", "uint8")
    loaded = jaxcnn.load(workdir)
    assert loaded.card == card and int(loaded.state.step) == 0  # the weights; the optimizer is new
    np.testing.assert_allclose(loaded.predict(x), trainer.predict(x), atol=1e-6)


def test_a_model_that_scales_its_own_pixels_gets_them_raw(tiny_file, monkeypatch):
    x = np.random.default_rng(0).integers(0, 256, (8, 4, 4, 1)).astype(np.uint8)
    plain = Trainer(resolve_import_path(f"{tiny_file}:Tiny")(), (4, 4, 1))
    raw = Trainer(resolve_import_path(f"{tiny_file}:RawTiny")(), (4, 4, 1), params=plain.state.params)
    assert (plain.input_scaling, raw.input_range, raw.input_scaling) == ("divide_by_255", "0..255", "none")
    # The same weights behind the same x * (1/255): the same numbers, which scaling twice would change.
    np.testing.assert_array_equal(raw.predict(x), plain.predict(x))
    # Floats in [0, 1] to a model that takes 0..255: the warning says to pass them unscaled.
    monkeypatch.setattr(checks, "_warned_range", False)
    with pytest.warns(UserWarning, match="scales its own pixels.*pass the pixels unscaled"):
        raw.predict(x.astype(np.float32) / 255.0)
    monkeypatch.setattr(checks, "_warned_range", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        raw.predict(x.astype(np.float32))  # 0..255 floats are what it takes: no warning
    monkeypatch.setattr(checks, "_warned_range", False)
    with pytest.warns(UserWarning, match="the model takes 0..1.*divide by 255"):
        plain.predict(x.astype(np.float32))


@pytest.mark.slow
@pytest.mark.parametrize("road", ["pipeline", "device"])
def test_both_roads_train_a_raw_pixel_model_on_pixels_scaled_once(tiny_file, road):
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (32, 4, 4, 1)).astype(np.uint8), rng.integers(0, 3, 32)
    plain = Trainer(resolve_import_path(f"{tiny_file}:Tiny")(), (4, 4, 1), optimizer="adam")
    raw = Trainer(resolve_import_path(f"{tiny_file}:RawTiny")(), (4, 4, 1), optimizer="adam",
                  params=plain.state.params)
    for trainer in (plain, raw):
        trainer.fit(x, y, epochs=2, batch_size=8, verbose=0, road=road)
    assert raw.road == road
    for a, b in zip(jax.tree.leaves(plain.state.params), jax.tree.leaves(raw.state.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_what_cannot_be_rebuilt_is_refused_with_the_fix(tiny_file):
    module = resolve_import_path(f"{tiny_file}:WithFunction")
    assert model_reference(module())[1] == {}  # a function at its default is not recorded
    with pytest.raises(UsageError, match="act = .*not a JSON value.*register a factory"):
        model_reference(module(act=lambda v: v))
    import flax.linen as nn

    class Local(nn.Module):
        def __call__(self, x):
            return x

    with pytest.raises(UsageError, match="inside a function"):
        model_reference(Local())
    with pytest.raises(KeyError, match="has no 'Nope'"):
        resolve_import_path(f"{tiny_file}:Nope")


def test_a_package_off_sys_path_is_found_through_the_cards_model_path(tmp_path, monkeypatch):
    package = f"userpkg_{os.getpid()}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "models.py").write_text(TINY)
    monkeypatch.setattr(sys, "path", [*sys.path, str(tmp_path)])
    card = make_card(model=f"{package}.models:Tiny", model_kwargs={"units": 2}, input_shape=(4, 4, 1),
                     input_dtype="uint8", class_names="abc", loss="sparse_categorical_crossentropy")
    assert card.model_path == str(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    for name in [m for m in sys.modules if m.startswith(package)]:
        monkeypatch.delitem(sys.modules, name)
    model = card.build_model()  # as in a process started elsewhere
    assert type(model).__name__ == "Tiny" and model.units == 2


def test_keras_graph_knows_when_it_scales_its_own_inputs():
    def spec(first: str) -> dict:
        return {"inputs": [["in", 0, 0]], "layers": [
            {"name": "in", "class": "InputLayer", "config": {}, "nodes": []},
            {"name": "a", "class": first, "config": {}, "nodes": [{"inputs": [["in", 0, 0]]}]},
            {"name": "b", "class": "Rescaling", "config": {}, "nodes": [{"inputs": [["a", 0, 0]]}]}]}

    assert scales_own_inputs(spec("Rescaling"))
    assert not scales_own_inputs(spec("Conv2D"))  # a Rescaling further in is the model's own business
    nested = spec("Functional")
    nested["layers"][1]["config"] = spec("Rescaling")
    assert scales_own_inputs(nested)


# -- slow: fresh processes, files outside the package ----------------------------------------------
USER_TRAIN = textwrap.dedent('''
    """A user's script: train their own module with Trainer, save the run folder."""
    import sys

    import numpy as np
    from PIL import Image

    from jaxcnn.data import load_dataset
    from jaxcnn.predict import load_test_split
    from jaxcnn.train import Trainer
    from mymodels import SmallCNN

    workdir, data_dir = sys.argv[1], sys.argv[2]
    ds = load_dataset("mnist", data_dir=data_dir).take(256, 64)
    trainer = Trainer(SmallCNN(num_classes=10, features=6), (28, 28, 1), optimizer="adam")
    trainer.fit(ds.x_train, ds.y_train, epochs=1, batch_size=32, verbose=0)
    trainer.save(workdir, class_names=ds.class_names, dataset="mnist")
    x, y = load_test_split(trainer.card, data_dir=data_dir, limit=64)
    np.savez(workdir + ".npz", x=x, y=y, probs=trainer.predict(x))
''')

USER_MODULE = textwrap.dedent('''
    import flax.linen as nn


    class SmallCNN(nn.Module):
        num_classes: int = 10
        features: int = 8

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.relu(nn.Conv(self.features, (3, 3))(x))
            x = nn.max_pool(x, (2, 2), (2, 2))
            x = nn.Dropout(0.1, deterministic=not train)(x.reshape((x.shape[0], -1)))
            return nn.Dense(self.num_classes)(x)
''')

KERAS_MAKE = textwrap.dedent('''
    """A user's Keras model that scales its own pixels (Rescaling(1/255) first)."""
    import sys

    import keras
    from keras import layers as L

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = L.Rescaling(1.0 / 255.0)(inputs)
    x = L.Conv2D(6, 3, activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    keras.Model(inputs, L.Dense(10, activation="softmax")(x)).save(sys.argv[1])
''')

KERAS_TUNE = textwrap.dedent('''
    """Import done by `jaxcnn import-keras`; here: Keras' own outputs, the import as it is (W0),
    and the import fine-tuned by Trainer (W)."""
    import sys

    import keras
    import numpy as np

    from jaxcnn.data import load_dataset
    from jaxcnn.keras import load_imported
    from jaxcnn.models import get_model
    from jaxcnn.predict import load_test_split
    from jaxcnn.train import Trainer

    keras_file, folder, workdir, data_dir = sys.argv[1:5]
    ds = load_dataset("mnist", data_dir=data_dir).take(256, 64)
    model, variables = get_model("keras:" + folder), load_imported(folder)[1]
    trainer = Trainer(model, (28, 28, 1), optimizer="adam", params=variables["params"])
    x, y = ds.x_test, ds.y_test
    np.savez(workdir + "0.npz", x=x, probs=trainer.predict(x),
             keras=keras.models.load_model(keras_file).predict(x, verbose=0))
    trainer.save(workdir + "0", class_names=ds.class_names, dataset="mnist")
    trainer.fit(ds.x_train, ds.y_train, epochs=1, batch_size=32, verbose=0)
    trainer.save(workdir, class_names=ds.class_names, dataset="mnist")
    x, y = load_test_split(trainer.card, data_dir=data_dir, limit=64)
    np.savez(workdir + ".npz", x=x, y=y, probs=trainer.predict(x))
''')


def _run(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def _cli(*args, cwd):
    return _run([sys.executable, "-m", "jaxcnn.cli", *args], cwd)


def _write_pngs(folder, images) -> list[str]:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        paths.append(os.path.join(folder, f"img{i}.png"))
        Image.fromarray(img[..., 0]).save(paths[-1])
    return paths


def _served_matches(workdir, x, probs, elsewhere, y=None):
    """`jaxcnn predict` on PNGs, `jaxcnn export --format onnx` in ONNX Runtime and (with labels)
    `jaxcnn evaluate`, each in a fresh process started in another folder, against `probs`."""
    import onnxruntime as ort

    paths = _write_pngs(os.path.join(elsewhere, os.path.basename(workdir) + "_png"), x[:4])
    out = os.path.join(elsewhere, os.path.basename(workdir) + "_pred.json")
    _cli("predict", workdir, *paths, "--top-k", "10", "--json", out, "--quiet", cwd=elsewhere)
    with open(out) as f:
        rows = json.load(f)
    assert len(rows) == 4
    for row, p in zip(rows, probs[:4]):
        got = np.zeros(10, np.float32)
        for entry in row["top"]:
            got[int(entry["class"])] = entry["probability"]
        np.testing.assert_allclose(got, p, atol=TOL)

    onnx = os.path.join(elsewhere, os.path.basename(workdir) + ".onnx")
    _cli("export", workdir, "--format", "onnx", "--out", onnx, "--check", "0", cwd=elsewhere)
    session = ort.InferenceSession(onnx)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    np.testing.assert_allclose(session.run(None, {"image": x})[0], probs, atol=TOL)

    if y is not None:
        _cli("evaluate", workdir, "--limit", str(len(y)), cwd=elsewhere)
        with open(os.path.join(workdir, "metrics.json")) as f:
            metrics = json.load(f)
        p_true = probs[np.arange(len(y)), y].astype(np.float64)
        assert metrics["report_examples"] == len(y)
        assert abs(metrics["report_loss"] - float(-np.mean(np.log(p_true)))) < TOL
        assert metrics["report_accuracy"] == float(np.mean(probs.argmax(-1) == y))


@pytest.mark.slow
def test_users_linen_module_is_served_from_its_run_folder(tmp_path, data_dir):
    user, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    user.mkdir()
    elsewhere.mkdir()
    (user / "mymodels.py").write_text(USER_MODULE)
    (user / "train.py").write_text(USER_TRAIN)
    workdir = str(user / "runs" / "mine")
    _run([sys.executable, "train.py", workdir, data_dir], cwd=str(user))
    card = read_card(workdir)
    assert (card.model, card.model_kwargs, card.model_path) == ("mymodels:SmallCNN",
                                                                {"num_classes": 10, "features": 6}, str(user))
    ran = np.load(workdir + ".npz")
    _served_matches(workdir, ran["x"], ran["probs"], str(elsewhere), y=ran["y"])


@pytest.mark.slow
def test_imported_keras_model_scales_once_and_is_served_fine_tuned(tmp_path, data_dir):
    user, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    user.mkdir()
    elsewhere.mkdir()
    (user / "make.py").write_text(KERAS_MAKE)
    (user / "tune.py").write_text(KERAS_TUNE)
    keras_file, folder, workdir = str(user / "mine.keras"), str(user / "imported"), str(user / "runs" / "tuned")
    (user / "runs").mkdir()
    _run([sys.executable, "make.py", keras_file], cwd=str(user))
    _cli("import-keras", keras_file, folder, cwd=str(user))
    _run([sys.executable, "tune.py", keras_file, folder, workdir, data_dir], cwd=str(user))

    # As imported: Keras' outputs on uint8 images through Trainer.predict, jaxcnn predict, ONNX.
    before = np.load(workdir + "0.npz")
    np.testing.assert_allclose(before["probs"], before["keras"], atol=TOL)
    card = read_card(workdir + "0")
    assert (card.model, card.input_range, card.input_scaling) == (f"keras:{folder}", "0..255", "none")
    _served_matches(workdir + "0", before["x"][:16], before["keras"][:16], str(elsewhere))

    # Fine-tuned: the trainer's outputs, also through jaxcnn evaluate.
    after = np.load(workdir + ".npz")
    assert np.abs(after["probs"] - before["probs"][:64]).max() > 1e-3  # it did train
    _served_matches(workdir, after["x"], after["probs"], str(elsewhere), y=after["y"])


@pytest.mark.slow
def test_jaxcnn_train_takes_a_model_file_and_an_experiment_file(tmp_path, data_dir):
    (tmp_path / "mymodels.py").write_text(USER_MODULE)
    (tmp_path / "exp.py").write_text(textwrap.dedent('''
        from jaxcnn.experiment import ExperimentConfig


        def get_config():
            return ExperimentConfig(name="mine", description="a user's experiment", model="mnist_cnn",
                                    dataset="mnist", optimizer="adam", epochs=1, batch_size=32,
                                    train_limit=128, test_limit=32)
    '''))
    _cli("train", "exp.py", "--set", "model=mymodels.py:SmallCNN", "--set", "model_kwargs.features=4",
         "--workdir", "run", "--data-dir", data_dir, "--quiet", cwd=str(tmp_path))
    card = read_card(str(tmp_path / "run"))
    assert card.model == f"{tmp_path / 'mymodels.py'}:SmallCNN"  # absolute: found from anywhere
    assert card.model_kwargs == {"features": 4, "num_classes": 10}
    trainer = jaxcnn.load(str(tmp_path / "run"))
    assert type(trainer.model).__name__ == "SmallCNN" and trainer.model.features == 4
