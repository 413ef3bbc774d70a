"""jaxcnn.testing: every registered model passes the kit, and broken models fail it clearly.

Multi-device checks run in a fresh interpreter (tests/_testing_worker.py) that starts with
`use_fake_devices(8)`, as a user's conftest.py would; this pytest process keeps one device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.models import get_model, list_models
from jaxcnn.models.layers import BatchNorm, Dense, flatten
from jaxcnn.testing import (assert_same_on_devices, assert_trains, tiny_dataset, tree_differences,
                            use_fake_devices)
from tests._tiny_shapes import TINY_SHAPES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TransferModel runs its ResNet50 base in inference mode (a frozen base, as Keras): its
# BatchNorm statistics never change in training, on purpose.
FROZEN_BATCH_STATS = {"resnet50_transfer_a", "resnet50_transfer_c"}


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAXCNN_") or k == "JAXCNN_DATA_DIR"}
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    """Compiling dominates these tiny runs; the math checked is the same (see test_models.py)."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory, request):
    """The worker's results: assert_same_on_devices on 8 fake devices for the pmap cases, and for
    each registered model whose `test_model_same_on_8_devices` case was selected (slow tier)."""
    out = tmp_path_factory.mktemp("kit") / "devices.json"
    names = sorted({item.callspec.params["name"] for item in request.session.items
                    if getattr(item, "originalname", None) == "test_model_same_on_8_devices"})
    proc = subprocess.run([sys.executable, os.path.join(REPO, "tests", "_testing_worker.py"), str(out), *names],
                          env=_env(), cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_every_registered_model_has_a_tiny_shape():
    assert set(list_models()) == set(TINY_SHAPES)


# -- every registered model --------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TINY_SHAPES))
def test_model_trains(name):
    # cnn_lstm: categorical cross-entropy (integer labels one-hot encoded by the loss).
    loss = "categorical_crossentropy" if name == "cnn_lstm" else None
    losses = assert_trains(get_model(name), TINY_SHAPES[name], loss=loss,
                           every_stat_updates=name not in FROZEN_BATCH_STATS)
    chex.assert_tree_all_finite(losses)


@pytest.mark.parametrize("name", sorted(TINY_SHAPES))
def test_model_same_on_8_devices(on_8_devices, name):
    """8 devices (2 for the large models) give one device's loss, gradients and params."""
    result = on_8_devices[f"{name}/jit"]
    assert "ok" in result, result["error"]
    # ResNet50's gradients reach ~400 at initialization: 2e-4 apart is float32 rounding there.
    assert result["ok"]["loss"] < 1e-5 and result["ok"]["grads"] < (1e-3 if name == "resnet50" else 1e-4), result


def test_batchnorm_synchronized_under_pmap(on_8_devices):
    """bn_axis_name makes per-device steps equal one device (bn_cnn_binary with dropout off, mnist_fast)."""
    result = on_8_devices["bn_cnn_binary-no-dropout/pmap"]
    assert "ok" in result, result["error"]
    result = on_8_devices["mnist_fast/pmap"]  # the same field on the speed-run networks
    assert "ok" in result, result["error"]


# -- broken models fail with a message that says what differed ----------------------------------------
def test_unsynchronized_batchnorm_fails_under_pmap(on_8_devices):
    assert "ok" in on_8_devices["unsynced_bn/jit"]  # sharded jit needs no synchronization
    error = on_8_devices["unsynced_bn/pmap"]["error"]
    assert error.startswith("AssertionError: UnsyncedBn on 8 devices (pmap strategy) differs from 1 device")
    assert "loss at step 1: " in error and "batch_stats['BatchNorm_0']['mean'] (8,): max |diff|" in error
    assert "grads['Conv_0']['kernel'] (3, 3, 1, 8)" in error
    assert "are they synchronized?" in error and "bn_axis_name" in error


def test_pmap_refuses_a_model_with_dropout(on_8_devices):
    error = on_8_devices["bn_cnn_binary/pmap"]["error"]
    assert error.startswith("ValueError: BnCNN uses dropout in training") and "strategy='jit'" in error


class DropoutIgnoringTrain(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(Dense(16)(flatten(x)))
        return Dense(3)(nn.Dropout(0.5, deterministic=False)(x))  # active in inference too


class BatchNormIgnoringTrain(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return Dense(3)(BatchNorm(use_running_average=False)(flatten(x)))  # always batch statistics


class UnusedLayer(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        Dense(4, name="forgotten")(flatten(x))  # computed, never used
        return Dense(3, name="logits")(flatten(x))


class CounterChangesDtype(nn.Module):
    """Keeps an integer counter in batch_stats and writes it back as float: the step retraces."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        count = self.variable("batch_stats", "count", lambda: jnp.zeros((), jnp.int32))
        if train:
            count.value = count.value + 1.0
        return Dense(3)(flatten(x))


def test_dropout_ignoring_train_fails_assert_trains():
    with pytest.raises(AssertionError, match=r"DropoutIgnoringTrain: inference \(train=False\) depends on the "
                                             r"dropout rng: outputs differ by up to \d"):
        assert_trains(DropoutIgnoringTrain(), (4, 4, 1))


def test_batchnorm_ignoring_train_fails_assert_trains():
    with pytest.raises(AssertionError, match=r"changed BatchNorm statistics[^\n]*\n  "
                                             r"batch_stats\['BatchNorm_0'\]\['mean'\] \(16,\): max \|diff\|"):
        assert_trains(BatchNormIgnoringTrain(), (4, 4, 1))


def test_unused_layer_fails_assert_trains():
    with pytest.raises(AssertionError, match=r"2 parameter leaves did not change in 3 steps[^\n]*\n  "
                                             r"params\['forgotten'\]\['bias'\]\n  params\['forgotten'\]\['kernel'\]"):
        assert_trains(UnusedLayer(), (4, 4, 1))


def test_retracing_step_fails_assert_trains():
    with pytest.raises(AssertionError, match=r"compiled again at step 2[^\n]*\n  state\.batch_stats\['count'\]: "
                                             r"\(\(\), 'int32', False\) -> \(\(\), 'float32'"):
        assert_trains(CounterChangesDtype(), (4, 4, 1))


def test_a_model_that_cannot_learn_fails_assert_trains():
    """The learning rate 0 leaves the loss where it was: the message gives both values."""
    with pytest.raises(AssertionError, match=r"the loss did not decrease in 2 steps on one batch: [\d.]+ before"):
        assert_trains(get_model("mnist_simple"), (8, 8, 1), steps=2, optimizer="sgd", learning_rate=0.0,
                      every_param_learns=False)


def test_assert_trains_takes_a_batch_and_checks_it():
    batch = tiny_dataset("mnist", 8)
    losses = assert_trains("mnist_simple", (28, 28, 1), batch=batch, steps=2)
    assert len(losses) == 2
    with pytest.raises(AssertionError, match=r"batch\['image'\] does not match input_shape \(12, 12, 1\)"):
        assert_trains("mnist_simple", (12, 12, 1), batch=batch)


# -- devices -----------------------------------------------------------------------------------------
def test_fake_devices_after_jax_started_is_a_clear_error():
    jnp.zeros(1).block_until_ready()  # this process runs on its one CPU device
    assert len(use_fake_devices(1)) == 1
    with pytest.raises(RuntimeError, match=r"use_fake_devices needs 8 devices but JAX already started with 1 "
                                           r"\(cpu\): call jaxcnn.testing.use_fake_devices\(8\) before"):
        use_fake_devices(8)
    with pytest.raises(RuntimeError, match=r"assert_same_on_devices\(n=8\) needs 8 devices"):
        assert_same_on_devices(get_model("mnist_simple"), (8, 8, 1), n=8)


def test_fake_devices_fixture_in_a_users_test_suite(tmp_path):
    """A user's conftest imports the fixture; their test gets 8 devices and the kit's checks."""
    (tmp_path / "conftest.py").write_text("from jaxcnn.testing import fake_devices  # noqa: F401\n")
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        import jax
        import flax.linen as nn
        from jaxcnn.testing import assert_same_on_devices

        class Tiny(nn.Module):
            @nn.compact
            def __call__(self, x, train=False):
                return nn.Dense(3)(x.reshape((x.shape[0], -1)))

        def test_on_devices(fake_devices):
            assert len(fake_devices) == 8 and jax.device_count() == 8
            assert_same_on_devices(Tiny(), (4, 4, 1), n=8)
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 passed" in proc.stdout


# -- tiny datasets and tree differences --------------------------------------------------------------
def test_tiny_dataset_mnist_is_real_mnist():
    from jaxcnn.data.idx import read_idx

    data = tiny_dataset("mnist", 16)
    chex.assert_shape(data["image"], (16, 28, 28, 1))
    chex.assert_type([data["image"], data["label"]], [np.float32, np.int32])
    labels = read_idx(os.path.join(REPO, "jaxcnn", "_datasets", "mnist", "t10k-labels-idx1-ubyte.gz"))[:16]
    np.testing.assert_array_equal(data["label"], labels)
    assert 0.0 <= data["image"].min() and data["image"].max() == 1.0


@pytest.mark.parametrize("kind,shape,classes", [("images", (32, 32, 3), 10), ("binary", (32, 32, 3), 2),
                                                ("video", (4, 12, 12, 1), 3)])
def test_tiny_dataset_synthetic_kinds(kind, shape, classes):
    data = tiny_dataset(kind, 12, seed=1)
    chex.assert_shape(data["image"], (12, *shape))
    assert set(data["label"].tolist()) == set(range(classes))
    chex.assert_trees_all_equal(data, tiny_dataset(kind, 12, seed=1))  # deterministic per seed
    other = tiny_dataset(kind, 12, seed=2)
    assert not np.array_equal(other["image"], data["image"])
    custom = tiny_dataset(kind, 5, shape=(6, 6, 2), num_classes=4)
    chex.assert_shape(custom["image"], (5, 6, 6, 2))
    assert custom["label"].max() < 4


def test_tiny_dataset_errors():
    with pytest.raises(ValueError, match="unknown tiny dataset kind 'cifar'; known: mnist, images"):
        tiny_dataset("cifar")
    with pytest.raises(ValueError, match="kind 'mnist' is real MNIST"):
        tiny_dataset("mnist", shape=(8, 8, 1))


def test_tree_differences_names_leaf_and_amount():
    a = {"conv": {"kernel": np.zeros((2, 3)), "bias": np.ones(3)}}
    b = {"conv": {"kernel": np.zeros((2, 3)), "bias": np.array([1.0, 1.5, 1.0])}}
    assert tree_differences("params", a, a, 0.0, 0.0) == []
    (line,) = tree_differences("params", a, b, 1e-6, 0.0)
    assert line == ("params['conv']['bias'] (3,): max |diff| 0.5 at (1,) (1 vs 1.5, relative 0.5); "
                    "1 of 3 values out of tolerance")
    assert tree_differences("p", a, {"conv": {"kernel": np.zeros((2, 3))}}, 0, 0) == ["p['conv']['bias']: missing"]
