"""Flax NNX models in jaxcnn (jaxcnn.nnx): the trainer, checkpoints, the testing kit, the registry.

Multi-device cases run this file as a script in a fresh interpreter with 8 fake CPU devices
(`python tests/test_nnx.py OUT.json`), which writes each case's result for the slow tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

if __name__ == "__main__":  # the multi-device worker: fake devices before JAX starts
    from jaxcnn.testing import use_fake_devices

    use_fake_devices(8)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jaxcnn.models import get_model, list_models  # noqa: E402
from jaxcnn.nnx import (Bridge, MnistCNN, NnxModel, as_model, from_spec, load_variables, model_reference,  # noqa: E402
                        trained_module, variables_of)
from jaxcnn.testing import assert_same_on_devices, assert_trains, tiny_dataset  # noqa: E402
from jaxcnn.train import CheckpointCallback, Trainer, init_variables  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)
from tests._tiny_shapes import TINY_SHAPES  # noqa: E402


# -- a user's NNX models: good and broken ----------------------------------------------------------
class SmallNet(nnx.Module):
    """Conv, BatchNorm, Dropout, Dense: everything the adapter must handle, in NNX's own idiom."""

    def __init__(self, num_classes: int = 3, dropout: float = 0.25, *, rngs: nnx.Rngs):
        self.num_classes, self.dropout = num_classes, dropout
        self.conv = nnx.Conv(1, 4, (3, 3), padding="VALID", rngs=rngs)
        self.bn = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 4, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        x = self.drop(x.reshape((x.shape[0], 4, 2, 4, 2, 4)).max(axis=(2, 4)))
        return self.head(x.reshape((x.shape[0], -1)))


class DropoutIgnoringTrain(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.dense = nnx.Linear(100, 16, rngs=rngs)
        self.drop = nnx.Dropout(0.5, rngs=rngs)
        self.head = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(self.drop(nnx.relu(self.dense(x.reshape((x.shape[0], -1)))), deterministic=False))


class BatchNormIgnoringTrain(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.bn = nnx.BatchNorm(100, rngs=rngs)
        self.head = nnx.Linear(100, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(self.bn(x.reshape((x.shape[0], -1)), use_running_average=False))


class HandmadeNorm(nnx.Module):
    """Batch normalization written by hand: statistics over the local batch only (not synced)."""

    def __init__(self, features: int):
        self.mean = nnx.BatchStat(jnp.zeros(features))
        self.use_running_average = False

    def __call__(self, x):
        if self.use_running_average:
            return x - self.mean[...]
        mean = x.mean(axis=tuple(range(x.ndim - 1)))
        self.mean[...] = 0.9 * self.mean[...] + 0.1 * mean
        return x - mean


class UnsyncedNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), padding="VALID", rngs=rngs)
        self.norm = HandmadeNorm(4)
        self.head = nnx.Linear(8 * 8 * 4, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.norm(self.conv(x)))
        return self.head(x.reshape((x.shape[0], -1)))


class Unstored(nnx.Module):
    def __init__(self, width, *, rngs: nnx.Rngs):  # `width` not kept: a card cannot rebuild it
        self.dense = nnx.Linear(4, width, rngs=rngs)


SHAPE = (10, 10, 1)


def _data(n=64, seed=0):
    return tiny_dataset("images", n, shape=SHAPE, num_classes=3, seed=seed)


# -- the registry: every network as NNX, variables both ways ----------------------------------------
@pytest.mark.slow
def test_native_n1_equals_linen_both_ways():
    """linen N1's variables load into the native NNX port and come back unchanged; both compute
    the same outputs (one jitted call each)."""
    shape = (12, 12, 1)
    linen, net = get_model("mnist_cnn"), get_model("mnist_cnn", api="nnx", input_shape=shape)
    assert isinstance(net, MnistCNN)
    x = tiny_dataset("images", 8, shape=shape)["image"]
    variables = init_variables(linen, shape, seed=3)
    load_variables(net, variables)  # linen -> nnx
    back = variables_of(net)  # nnx -> linen
    assert jax.tree.structure(back) == jax.tree.structure(dict(variables))
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, back, dict(variables))))
    np.testing.assert_array_equal(np.asarray(jax.jit(as_model(net).apply)(back, x)),
                                  np.asarray(jax.jit(linen.apply)(variables, x)))


@pytest.mark.slow
def test_bridge_with_batchnorm_converts_both_ways():
    shape = TINY_SHAPES["bn_cnn_binary"]
    linen, net = get_model("bn_cnn_binary"), get_model("bn_cnn_binary", api="nnx", input_shape=shape)
    assert isinstance(net, Bridge)
    x = tiny_dataset("images", 4, shape=shape)["image"]
    variables = init_variables(linen, shape, seed=1)
    variables = {**variables, "batch_stats": jax.tree.map(lambda v: v + 0.5, variables["batch_stats"])}
    load_variables(net, variables)
    model = as_model(net)
    np.testing.assert_allclose(np.asarray(jax.jit(model.apply)(variables_of(net), x)),
                               np.asarray(jax.jit(linen.apply)(variables, x)), atol=1e-6)
    back = variables_of(net)
    chex_equal = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)), back, dict(variables))
    assert all(jax.tree.leaves(chex_equal))


def test_load_variables_names_what_does_not_fit():
    net = nnx.eval_shape(lambda: MnistCNN(rngs=nnx.Rngs(0)))
    variables = jax.eval_shape(lambda: init_variables(get_model("mnist_cnn", dense_units=32), (28, 28, 1)))
    with pytest.raises(ValueError, match=r"dense1/kernel: shape \(1600, 32\), the module has \(1600, 64\)"):
        load_variables(net, variables)


def test_api_argument_errors():
    with pytest.raises(ValueError, match="unknown model api 'torch'"):
        get_model("mnist_cnn", api="torch")
    with pytest.raises(ValueError, match="needs input_shape"):
        get_model("vgg16", api="nnx")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY_SHAPES))
def test_every_registered_network_as_nnx(name):
    """The NNX version of each network, given the linen network's variables, computes its outputs."""
    shape = TINY_SHAPES[name]
    net = get_model(name, api="nnx", input_shape=shape)
    linen = get_model(name)
    variables = init_variables(linen, shape, seed=2)
    load_variables(net, variables)
    x = tiny_dataset("images", 2, shape=shape)["image"]
    np.testing.assert_allclose(np.asarray(jax.jit(as_model(net).apply)(variables_of(net), x)),
                               np.asarray(jax.jit(linen.apply)(variables, x)), atol=2e-5, rtol=1e-5)


def test_registry_covers_every_network():
    assert set(list_models()) == set(TINY_SHAPES)


# -- as_model and the spec a run folder records --------------------------------------------------------
def test_model_reference_of_an_instance():
    """A card names a user's instance by its class and the fields it stores; one that does not
    store a required field is an error naming the fix."""
    assert model_reference(nnx.eval_shape(lambda: SmallNet(num_classes=5, rngs=nnx.Rngs(0)))) == (
        f"{SmallNet.__module__}:SmallNet", {"num_classes": 5, "dropout": 0.25})
    with pytest.raises(ValueError, match="constructor fields are not stored"):
        model_reference(nnx.eval_shape(lambda: Unstored(3, rngs=nnx.Rngs(0))))


@pytest.mark.slow
def test_model_reference_rebuilds_the_model(tmp_path):
    """What a run folder's card records (name, kwargs) builds the model again with get_model(api="nnx")."""
    file = tmp_path / "user_net.py"
    file.write_text("from flax import nnx\n\nclass Net(nnx.Module):\n"
                    "    def __init__(self, width, *, rngs):\n"
                    "        self.width = width\n        self.dense = nnx.Linear(4, width, rngs=rngs)\n\n"
                    "    def __call__(self, x):\n        return self.dense(x.reshape((x.shape[0], -1)))\n")
    model = as_model(f"{file}:Net", width=3)  # a class and its fields: parameters from the seed
    assert model.spec == {"api": "nnx", "model": f"{os.path.realpath(file)}:Net", "model_kwargs": {"width": 3}}
    init = jax.jit(lambda key: model.init({"params": key}, None))
    variables = init(jax.random.PRNGKey(1))
    assert jax.tree.map(jnp.shape, variables) == {"params": {"dense": {"bias": (3,), "kernel": (4, 3)}}}
    assert not np.array_equal(variables["params"]["dense"]["kernel"], init(jax.random.PRNGKey(2))["params"]["dense"]["kernel"])
    again = from_spec(json.loads(json.dumps(model.spec)))  # through JSON, as the card stores it
    assert again.spec == model.spec
    assert jax.tree.map(jnp.shape, again.init({}, None)) == jax.tree.map(jnp.shape, variables)
    net = get_model("mnist_cnn", api="nnx", input_shape=(12, 12, 1), dense_units=32)
    assert model_reference(net) == ("mnist_cnn", {"input_shape": (12, 12, 1), "dense_units": 32})


# -- the trainer ---------------------------------------------------------------------------------------
def test_trainer_fits_an_nnx_module_with_batchnorm_and_dropout():
    data = _data()
    mine = SmallNet(rngs=nnx.Rngs(0))
    before = variables_of(mine)
    trainer = Trainer(mine, SHAPE, optimizer="adam", learning_rate=0.01)
    assert isinstance(trainer.model, NnxModel)
    history = trainer.fit(data["image"], data["label"], epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert set(trainer.state.batch_stats["bn"]) == {"mean", "var"}
    probs = trainer.predict(data["image"])
    net = trained_module(trainer)  # the NNX module with the trained values, in eval mode
    net.eval()
    expected = jax.nn.softmax(net(jnp.asarray(data["image"])))
    np.testing.assert_allclose(probs, np.asarray(expected), atol=1e-6)
    assert trainer.evaluate(data["image"], data["label"])["accuracy"] == np.mean(probs.argmax(-1) == data["label"])
    assert "head" in trainer.summary(print_fn=None) and "BatchNorm" in trainer.summary(print_fn=None)
    # The module given stays as it was (the trainer's state is its own copy, donated step by step).
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: np.array_equal(a, b), before, variables_of(mine))))


@pytest.mark.slow
def test_trainer_save_then_load_predict_and_serve_an_nnx_model(tmp_path):
    """trainer.save(W) records the NNX model on its card; jaxcnn.load(W), the predictor and the
    export's serving function rebuild it and give the trainer's outputs."""
    from jaxcnn.export import serving_function
    from jaxcnn.predict import load, load_predictor

    data = _data(32)
    trainer = Trainer(SmallNet(rngs=nnx.Rngs(0)), SHAPE, optimizer="adam")
    trainer.fit(data["image"], data["label"], epochs=1, batch_size=16, verbose=0)
    workdir = trainer.save(str(tmp_path / "run"))
    with open(os.path.join(workdir, "model.json")) as f:
        card = json.load(f)
    assert (card["api"], card["model"], card["model_kwargs"]) == (
        "nnx", f"{SmallNet.__module__}:SmallNet", {"num_classes": 3, "dropout": 0.25})
    expected = trainer.predict(data["image"])
    np.testing.assert_allclose(load(workdir).predict(data["image"]), expected, atol=1e-6)
    predictor = load_predictor(workdir)
    np.testing.assert_allclose(predictor.predict(data["image"]), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(serving_function(predictor)(jnp.asarray(data["image"]))), expected,
                               atol=1e-6)


NNX_USER_MODULE = """
from flax import nnx


class SmallNNX(nnx.Module):
    def __init__(self, num_classes=10, features=6, *, rngs):
        self.num_classes, self.features = num_classes, features
        self.conv = nnx.Conv(1, features, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(features, rngs=rngs)
        self.drop = nnx.Dropout(0.1, rngs=rngs)
        self.dense = nnx.Linear(14 * 14 * features, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        x = x.reshape((x.shape[0], 14, 2, 14, 2, x.shape[-1])).max(axis=(2, 4))
        return self.dense(self.drop(x.reshape((x.shape[0], -1))))
"""


@pytest.mark.slow
def test_users_nnx_module_is_served_from_its_run_folder(tmp_path, data_dir):
    """Issue 26's "done when" for NNX: a user's NNX module in their own file, trained and saved by
    their script, served by `jaxcnn predict`, `evaluate` and `export --format onnx` (ONNX Runtime)
    in fresh processes elsewhere, equal to the trainer's outputs within 1e-5."""
    from tests.test_user_model import USER_TRAIN, _run, _served_matches

    user, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    user.mkdir()
    elsewhere.mkdir()
    (user / "mymodels.py").write_text(NNX_USER_MODULE)
    script = USER_TRAIN.replace("from mymodels import SmallCNN", "from flax import nnx\nfrom mymodels import SmallNNX")
    script = script.replace("SmallCNN(num_classes=10, features=6)", "SmallNNX(num_classes=10, features=6, rngs=nnx.Rngs(0))")
    assert "SmallNNX(" in script
    (user / "train.py").write_text(script)
    workdir = str(user / "runs" / "mine")
    _run([sys.executable, "train.py", workdir, data_dir], cwd=str(user))
    with open(os.path.join(workdir, "model.json")) as f:
        card = json.load(f)
    assert (card["api"], card["model"], card["model_kwargs"]) == ("nnx", "mymodels:SmallNNX",
                                                                  {"num_classes": 10, "features": 6})
    ran = np.load(workdir + ".npz")
    _served_matches(workdir, ran["x"], ran["probs"], str(elsewhere), y=ran["y"])


@pytest.mark.slow
def test_checkpoint_resume_mid_epoch_is_bitwise_equal(tmp_path):
    """Stopped mid-epoch, a new trainer on a new module resumes from the checkpoint: the same
    params, statistics and optimizer state as an uninterrupted run (dropout included)."""
    data = _data(48)

    def run(epochs, callbacks=()):
        trainer = Trainer(SmallNet(rngs=nnx.Rngs(0)), SHAPE, optimizer="adam", seed=5)
        trainer.fit(data["image"], data["label"], epochs=epochs, batch_size=16, verbose=0, callbacks=callbacks)
        return jax.device_get(trainer.state)

    reference = run(2)
    ckpt = lambda: [CheckpointCallback(str(tmp_path / "ckpt"), every_n_steps=2, best_metric=None,  # noqa: E731
                                       async_save=False, verbose=False)]
    first = run(1.5, ckpt())  # 5 of 6 steps, the last checkpoint at step 4
    assert int(first.step) == 5
    resumed = run(2, ckpt())
    assert int(resumed.step) == 6
    for part in ("params", "batch_stats", "opt_state"):
        same = jax.tree.map(lambda a, b: np.array_equal(np.asarray(a), np.asarray(b)),
                            getattr(reference, part), getattr(resumed, part))
        assert all(jax.tree.leaves(same)), part


@pytest.mark.slow
def test_assert_trains_an_nnx_model_and_its_native_n1():
    assert_trains(SmallNet(rngs=nnx.Rngs(0)), SHAPE)
    assert_trains(get_model("mnist_cnn_dropout", api="nnx", input_shape=(12, 12, 1)), (12, 12, 1))


@pytest.mark.parametrize("model, message", [
    (DropoutIgnoringTrain, "inference (train=False) depends on the dropout rng"),
    pytest.param(BatchNormIgnoringTrain, "inference (train=False) changed BatchNorm statistics",
                 marks=pytest.mark.slow),
])
def test_assert_trains_catches_broken_nnx_models(model, message):
    with pytest.raises(AssertionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        assert_trains(model(rngs=nnx.Rngs(0)), SHAPE)


# -- several devices: a fresh interpreter with 8 fake devices -----------------------------------------
def _fit(strategy, model, steps_data, **kwargs):
    trainer = Trainer(model, SHAPE, optimizer="sgd", learning_rate=0.05, strategy=strategy, seed=3, **kwargs)
    trainer.fit(steps_data["image"], steps_data["label"], epochs=2, batch_size=16, verbose=0)
    return jax.device_get(trainer.state)


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _check(**kwargs):
    try:
        return {"ok": assert_same_on_devices(**kwargs)}
    except (AssertionError, ValueError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def worker(out_path):
    import warnings

    from jaxcnn import parallel

    assert jax.device_count() == 8
    out = {}
    out["smallnet/jit"] = _check(model=SmallNet(rngs=nnx.Rngs(0)), input_shape=SHAPE)
    out["smallnet-no-dropout/pmap"] = _check(model=SmallNet(dropout=0.0, rngs=nnx.Rngs(0)), input_shape=SHAPE,
                                             strategy="pmap")
    out["smallnet/pmap"] = _check(model=SmallNet(rngs=nnx.Rngs(0)), input_shape=SHAPE, strategy="pmap")
    out["bridge-bn/pmap"] = _check(model=get_model("bn_cnn_binary", api="nnx", input_shape=(12, 12, 3),
                                                   conv_dropout=0.0, dense_dropout=0.0),
                                   input_shape=(12, 12, 3), strategy="pmap")
    out["unsynced/jit"] = _check(model=UnsyncedNet(rngs=nnx.Rngs(0)), input_shape=SHAPE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out["unsynced/pmap"] = _check(model=UnsyncedNet(rngs=nnx.Rngs(0)), input_shape=SHAPE, strategy="pmap")
    out["unsynced/warning"] = [str(w.message) for w in caught if "synchronized" in str(w.message)]
    # The trainer: 1 device vs 8, both strategies (dropout only under jit: per-device masks under pmap).
    data = _data()
    one = parallel.DataParallel(devices=jax.devices()[:1])
    for strategy, dropout in (("jit", 0.25), ("pmap", 0.0)):
        ref = _fit(one, SmallNet(dropout=dropout, rngs=nnx.Rngs(0)), data)
        got = _fit(strategy, SmallNet(dropout=dropout, rngs=nnx.Rngs(0)), data)
        out[f"trainer/{strategy}"] = {"params": _max_diff(ref.params, got.params),
                                      "batch_stats": _max_diff(ref.batch_stats, got.batch_stats),
                                      "moved": _max_diff(ref.params, variables_of(SmallNet(rngs=nnx.Rngs(0)))["params"])}
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("nnx") / "out.json"
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(out)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_same_on_8_devices_jit_and_pmap(on_8_devices):
    assert "ok" in on_8_devices["smallnet/jit"], on_8_devices["smallnet/jit"]
    assert "ok" in on_8_devices["smallnet-no-dropout/pmap"], on_8_devices["smallnet-no-dropout/pmap"]
    assert "ok" in on_8_devices["bridge-bn/pmap"], on_8_devices["bridge-bn/pmap"]  # ToNNX's linen BN synced
    assert on_8_devices["smallnet/pmap"]["error"].startswith("ValueError: SmallNet uses dropout in training")


@pytest.mark.slow
def test_unsynchronized_batchnorm_fails_under_pmap(on_8_devices):
    assert "ok" in on_8_devices["unsynced/jit"]  # sharded jit needs no synchronization
    error = on_8_devices["unsynced/pmap"]["error"]
    assert error.startswith("AssertionError: UnsyncedNet on 8 devices (pmap strategy) differs from 1 device")
    assert "grads['conv']['kernel'] (3, 3, 1, 4): max |diff|" in error and "loss at step 1: " in error
    assert "jaxcnn synchronizes nnx.BatchNorm layers" in error
    assert on_8_devices["unsynced/warning"] and "norm/mean" in on_8_devices["unsynced/warning"][0]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_trainer_same_numbers_on_1_and_8_devices(on_8_devices, strategy):
    result = on_8_devices[f"trainer/{strategy}"]
    assert result["moved"] > 1e-3  # it trained
    assert result["params"] < 1e-5 and result["batch_stats"] < 1e-5, result


if __name__ == "__main__":
    worker(sys.argv[1])
