"""The Keras layers the applications and users' own models use, imported and equal to Keras.

One small functional Keras 3 model holds most of them (depthwise, separable, transposed and 1D
convolutions, adapted Normalization, LayerNormalization, per-channel Rescaling, up-sampling,
cropping, Permute, RepeatVector, the activations, Keras operations such as `x + 3.0`, and the
augmentation layers, identity at inference); its logits equal Keras' within 1e-5 of their
scale on real CIFAR-10 images. Regularizers: the penalties the imported module sows equal
Keras' `sum(model.losses)`. Refusals name every layer that cannot come over.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from jaxcnn.keras import WeightConversionError, from_keras
from jaxcnn.train.step import regularization_loss
from tests._keras_zoo import cifar_images, randomize_statistics, set_weights, worst

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
k3 = pytest.importorskip("keras")
RTOL = 1e-5


def layers_model(L):
    """Most supported layers in one graph (16x16 RGB in, 5 logits out)."""
    from keras.src.applications.convnext import LayerScale, StochasticDepth

    x_in = k3.Input((16, 16, 3))
    a = L.Rescaling([1 / 255, 1 / 128, 1 / 64], offset=[0.0, -1.0, 0.5])(x_in)
    a = L.Normalization(axis=-1, name="norm")(a)
    a = k3.Sequential([L.RandomFlip(), L.RandomRotation(0.1), L.RandomZoom(0.1), L.RandomTranslation(0.1, 0.1),
                       L.RandomContrast(0.2)], name="augment")(a)
    b = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu6")(a)
    c = L.SeparableConv2D(8, 3, strides=2, padding="same", activation="swish")(b)
    d = L.Conv2DTranspose(6, 3, strides=2, padding="same", activation="gelu")(c)
    e = L.LayerNormalization(epsilon=1e-3)(d)
    e = StochasticDepth(0.3)(LayerScale(1e-1, 6)(e))
    f = L.Cropping2D(((1, 2), (3, 0)))(L.UpSampling2D(2)(e))
    f = L.Activation("hard_silu")(L.Conv2D(4, 3, strides=2, activation="hard_sigmoid")(f))
    g = L.UpSampling2D(2, interpolation="bilinear")(c)
    g = L.ReLU(6.0)(g + 3.0) * (1.0 / 6.0)
    g = L.GlobalAveragePooling2D()(L.Conv2D(4, 1, activation="mish")(g))
    s = L.Reshape((16 * 16, 3))(L.Permute((2, 1, 3))(a))
    s = L.Conv1D(4, 3, padding="causal", activation="elu")(s)
    s = L.SeparableConv1D(4, 3, strides=2)(s)
    s = L.DepthwiseConv1D(3, activation="tanh")(s)
    s = L.GlobalMaxPooling1D()(L.MaxPooling1D(2)(s))
    r = L.Flatten()(L.RepeatVector(3)(s))
    t = L.Conv2DTranspose(3, 2, strides=2, padding="valid")(c)
    t = k3.ops.mean(t[:, 1:, :, :2], axis=[1, 2])
    h = L.Concatenate()([L.GlobalMaxPooling2D()(f), g, r, t])
    return k3.Model(x_in, L.Dense(5, activation="silu")(L.Dropout(0.5)(h)))


@pytest.fixture(scope="module")
def images(data_dir):
    return cifar_images(data_dir, 3, 16)


@pytest.fixture(scope="module")
def model(images):
    m = randomize_statistics(layers_model(k3.layers), seed=1, kernels=True)
    norm = m.get_layer("norm")
    set_weights(norm, [np.array([0.4, -0.1, 2.0], np.float32), np.array([0.08, 0.05, 0.3], np.float32),
                       np.array(100)])
    return m


@pytest.mark.slow
def test_layers_equal_keras(model, images, tmp_path):
    path = str(tmp_path / "layers.keras")
    model.save(path)
    module, variables = from_keras(path, logits=False)
    assert {"mean", "variance"} == set(variables["batch_stats"]["norm"])
    ours = module.apply(variables, images)
    assert worst(ours, model(images, training=False)) <= RTOL
    # A live model is the same thing.
    module2, variables2 = from_keras(model, logits=False)
    assert worst(module2.apply(variables2, images), ours) == 0.0


@pytest.mark.slow
def test_augmentation_in_training(model, images):
    """RandomFlip flips per image; the others refuse, naming their path, unless skipped."""
    module, variables = from_keras(model, logits=False)
    with pytest.raises(ValueError, match=r"layer 'augment/random_rotation' \(RandomRotation\) augments"):
        module.apply(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    module, variables = from_keras(model, logits=False, train_augmentation="identity")
    out = module.apply(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(0)})
    assert out.shape == (3, 5) and np.all(np.isfinite(out))
    flip = k3.Sequential([k3.Input((4, 4, 1)), k3.layers.RandomFlip("horizontal")])
    m, v = from_keras(flip)
    x = np.arange(2 * 16, dtype=np.float32).reshape(2, 4, 4, 1)
    seen = {tuple(np.asarray(m.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(i)}))[:, 0, 0, 0])
            for i in range(16)}
    assert seen == {(a, b) for a in (0.0, 3.0) for b in (16.0, 19.0)}  # each image flipped or not, apart


def test_core_layers_equal_keras(images):
    """The fast tier's check: the layers MobileNet/EfficientNet/ConvNeXt/Xception need, and a
    regularizer, on a live model (8x8 crops)."""
    L = k3.layers
    m = k3.Sequential([k3.Input((8, 8, 3)), L.Normalization(name="norm"),
                       L.DepthwiseConv2D(3, padding="same", activation="hard_silu"),
                       L.SeparableConv2D(4, 3, strides=2, pointwise_regularizer="l2"),
                       L.LayerNormalization(epsilon=1e-6), L.GlobalAveragePooling2D(), L.Dense(3, activation="gelu")])
    randomize_statistics(m, seed=3, kernels=True)
    set_weights(m.get_layer("norm"), [np.array([120.0, 110.0, 90.0], np.float32),
                                      np.array([3000.0, 2500.0, 3500.0], np.float32), np.array(10)])
    x = images[:, 4:12, 4:12]
    module, variables = from_keras(m)
    out, updates = module.apply(variables, x, mutable=["losses"])
    assert worst(out, m(x, training=False)) <= RTOL
    want = float(np.sum([np.asarray(v) for v in m.losses]))
    assert abs(float(regularization_loss(updates)) - want) <= 1e-5 * want


def _reg_model():
    L, R = k3.layers, k3.regularizers
    x_in = k3.Input((8, 8, 3))
    x = L.Conv2D(4, 3, kernel_regularizer=R.L2(1e-3), bias_regularizer=R.L1(1e-2),
                 activity_regularizer=R.L1L2(l1=1e-4, l2=1e-3))(x_in)
    x = L.BatchNormalization(gamma_regularizer=R.L2(1e-2), beta_regularizer="l1")(x)
    x = L.DepthwiseConv2D(3, depthwise_regularizer=R.L1(1e-3))(x)
    x = L.ActivityRegularization(l1=1e-3, l2=1e-4)(L.GlobalAveragePooling2D()(x))
    shared = L.Dense(4, kernel_regularizer=R.L1L2(1e-3, 1e-3), activity_regularizer=R.L2(1e-2))
    y = shared(shared(x))  # a shared layer: its weights count once, its activity per call
    return k3.Model(x_in, L.Dense(3, kernel_regularizer="l2")(y))


@pytest.mark.slow
def test_regularizers_equal_keras_losses(images, tmp_path):
    m = randomize_statistics(_reg_model(), seed=2, kernels=True)
    x = images[:, :8, :8] / 255.0
    m(x, training=False)
    want = float(np.sum([np.asarray(v) for v in m.losses]))
    path = str(tmp_path / "reg.keras")
    m.save(path)
    module, variables = from_keras(path)
    _, updates = module.apply(variables, x, mutable=["losses"])
    got = float(regularization_loss(updates))
    assert len(m.losses) == len(jax.tree.leaves(updates["losses"])) == 11
    assert abs(got - want) <= 1e-5 * abs(want), (got, want)
    # No penalty is sown at init (the variables stay params and statistics only).
    assert set(module.init(jax.random.PRNGKey(0), x)) == {"params", "batch_stats"}


def _nested_bad_model():
    L = k3.layers
    inner = k3.Sequential([k3.Input((8, 8, 3)), L.Lambda(lambda t: t * 2, name="double"),
                           L.Conv2D(2, 3, kernel_constraint="max_norm", name="conv")], name="sequential")
    x_in = k3.Input((8, 8, 3))
    y = L.Flatten(data_format="channels_first", name="flat")(inner(x_in))
    return k3.Model(x_in, L.Dense(2, name="out")(L.Lambda(lambda t: t + 1, name="plus_one")(y)))


def test_refusal_names_every_layer_once(tmp_path):
    m = _nested_bad_model()
    with pytest.raises(WeightConversionError) as e:
        from_keras(m)
    msg = str(e.value)
    assert msg.startswith("the Keras model passed in: 4 layers cannot be imported: "), msg
    for needle in ("sequential/double (Lambda)", "sequential/conv (Conv2D: option kernel_constraint=",
                   "flat (Flatten: option data_format='channels_first'", "--supported"):
        assert needle in msg, msg
    assert "tmp" not in msg and len(msg) <= 260, msg  # ~200 characters plus the source and the hint
    path = str(tmp_path / "mine.keras")
    m.save(path)
    with pytest.raises(WeightConversionError, match=r"^.*mine\.keras: 4 layers cannot be imported"):
        from_keras(path)


def test_many_refusals_stay_short():
    L = k3.layers
    x_in = k3.Input((4,))
    x = x_in
    for i in range(12):
        x = L.Lambda(lambda t: t + 1, name=f"a_rather_long_lambda_layer_name_{i}")(x)
    with pytest.raises(WeightConversionError) as e:
        from_keras(k3.Model(x_in, x))
    msg = str(e.value)
    assert "12 layers cannot be imported" in msg and " more" in msg and len(msg) <= 260, msg


def test_keras_ops_with_constants():
    """`x * 2 - 1` on KerasTensors: operations, not merge layers (once imported as identity)."""
    x_in = k3.Input((3,))
    m = k3.Model(x_in, k3.ops.maximum(x_in * 2.0 - 1.0, 0.5) / 3.0)
    module, variables = from_keras(m)
    x = np.array([[0.1, 0.6, 2.0]], np.float32)
    np.testing.assert_allclose(module.apply(variables, x), m(x), rtol=1e-6)
    assert json.loads(module.spec)["layers"][1]["class"] == "KerasOp"


def test_supported_list_in_docs_is_the_code():
    from jaxcnn.keras.options import supported_text

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    doc = open(os.path.join(root, "docs", "keras.md")).read()
    assert supported_text() in doc, "docs/keras.md: paste `jaxcnn import-keras --supported` into it"

