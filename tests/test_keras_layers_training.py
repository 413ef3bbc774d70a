"""Training what came over from Keras: the regularization loss as Keras reports it, and imported
applications (MobileNetV2, EfficientNetB0) that train. All slow (Keras fits and large graphs)."""

from __future__ import annotations

import os

import numpy as np
import optax
import pytest

from jaxcnn.keras import from_keras
from jaxcnn.train import Trainer
from tests._keras_zoo import cifar_images, randomize_statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
k3 = pytest.importorskip("keras")
pytestmark = pytest.mark.slow


def _wrn_like():
    """A keras-io WRN block as written there: L2 on every convolution and the classifier."""
    L, R = k3.layers, k3.regularizers
    x_in = k3.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", kernel_regularizer=R.L2(5e-4))(x_in)
    y = L.Activation("relu")(L.BatchNormalization()(x))
    y = L.Conv2D(8, 3, padding="same", kernel_regularizer=R.L2(5e-4))(y)
    y = L.Dropout(0.0)(L.Activation("relu")(L.BatchNormalization()(y)))
    y = L.Conv2D(8, 3, padding="same", kernel_regularizer=R.L2(5e-4), bias_regularizer=R.L1(1e-3))(y)
    x = L.GlobalAveragePooling2D()(L.Add()([x, y]))
    return k3.Model(x_in, L.Dense(10, activation="softmax", kernel_regularizer=R.L1L2(1e-4, 5e-4),
                                  activity_regularizer=R.L2(1e-3))(x))


def test_regularization_loss_as_keras_reports_it(data_dir, tmp_path):
    """With a zero learning rate every step sees the same weights: Keras' fit loss (data loss +
    sum(model.losses)) and ours agree, and `regularization_loss` is Keras' sum of penalties."""
    m = randomize_statistics(_wrn_like(), seed=4, kernels=True)
    x = cifar_images(data_dir, 8, 16) / 255.0
    y = np.arange(8) % 10
    path = str(tmp_path / "wrn.keras")
    m.save(path)
    m.compile(optimizer=k3.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    keras_loss = m.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history["loss"][0]
    m(x, training=True)  # the same weights and batch as the fit's one step
    keras_penalties = float(sum(np.asarray(v) for v in m.losses))

    model, variables = from_keras(path)
    trainer = Trainer(model, x.shape[1:], optimizer=optax.sgd(0.0), params=variables["params"],
                      batch_stats=variables["batch_stats"], compute_dtype="f32")
    history = trainer.fit(x, y, epochs=1, batch_size=8, verbose=0)  # one batch: BatchNorm sees what Keras' does
    assert abs(history["loss"][0] - keras_loss) <= 1e-5 * abs(keras_loss), (history["loss"][0], keras_loss)
    reg = history["regularization_loss"][0]
    assert 0 < reg < history["loss"][0] and abs(reg - keras_penalties) <= 1e-5 * keras_penalties, (reg, keras_penalties)


@pytest.mark.parametrize("name", ["MobileNetV2", "EfficientNetB0"])
def test_imported_application_trains(name, data_dir, tmp_path):
    m = getattr(k3.applications, name)(weights=None, input_shape=(32, 32, 3), classes=4,
                                       classifier_activation=None, **({"alpha": 0.35} if name == "MobileNetV2" else {}))
    path = str(tmp_path / f"{name}.keras")
    m.save(path)
    model, variables = from_keras(path)
    x = cifar_images(data_dir, 8, 32)
    x = x if name.startswith("Efficient") else x / 127.5 - 1.0
    y = np.arange(8) % 4
    trainer = Trainer(model, x.shape[1:], optimizer="adam", learning_rate=1e-3, params=variables["params"],
                      batch_stats=variables["batch_stats"], compute_dtype="f32")
    history = trainer.fit(x, y, epochs=6, batch_size=8, verbose=0)
    assert history["loss"][-1] < history["loss"][0], history["loss"]


_ON_DEVICES = """
import sys
from jaxcnn.testing import assert_same_on_devices, tiny_dataset, use_fake_devices
use_fake_devices(2)
import jax
jax.config.update("jax_disable_most_optimizations", True)
from jaxcnn.keras import from_keras
model, _ = from_keras(sys.argv[1])
# float64, as tests/_testing_worker.py checks ResNet50: at initialization, with BatchNorm over a
# few values per channel, float32 gradients of 1 and 2 devices differ by ~0.2%
with jax.enable_x64(True):
    data = tiny_dataset("images", 4, shape=(32, 32, 3), num_classes=4)
    batch = {**data, "image": data["image"].astype("float64")}
    print(assert_same_on_devices(model, (32, 32, 3), n=2, strategy=sys.argv[2], steps=1, batch=batch))
"""


@pytest.mark.parametrize("strategy", ["jit", "pmap"])
def test_imported_mobilenet_v2_same_on_two_devices(strategy, tmp_path):
    """BatchNorm statistics over the global batch: pmap synchronizes them through bn_axis_name."""
    import subprocess
    import sys

    m = k3.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=4)
    path = str(tmp_path / "mnv2.keras")
    m.save(path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = root
    proc = subprocess.run([sys.executable, "-c", _ON_DEVICES, path, strategy], cwd=root, env=env,
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
