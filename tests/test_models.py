"""The small networks (the tutorials' N1-N9, cifar10_cnn, frame_baseline) against their Keras originals.

Each Keras model is built with tf_keras by `jaxcnn.keras.builders` (the Keras twins export uses
too), layer names equal to the Flax module names, so `keras_to_flax` can copy its weights;
parity is checked in inference mode.

XLA's optimizations are switched off for this module: compiling dominates these tiny runs
(about 3x faster on a 2-core CPU) and the math, which is what is tested, is the same.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import chex
import numpy as np
import optax
import pytest

from jaxcnn.keras.builders import keras_layers
from jaxcnn.models import TUTORIAL_INPUT_SHAPES, get_model, list_models
from jaxcnn.models.layers import max_pool
from jaxcnn.train import create_train_state, make_train_step

keras = pytest.importorskip("tf_keras")
L = keras.layers

ALL_MODELS = [
    "mnist_cnn", "mnist_cnn_dropout", "mnist_simple", "mnist_cnn3", "cnn_lstm", "spectrogram_cnn",
    "bn_cnn_binary", "mnist_cnn128", "cifar10_mlp", "cifar10_cnn", "frame_baseline",
]
DROPOUT_MODELS = ["mnist_cnn_dropout", "bn_cnn_binary", "cifar10_cnn"]
# Small inputs for the tests that run the networks (the param counts use the tutorial sizes).
SMALL_SHAPES = {**TUTORIAL_INPUT_SHAPES, "cnn_lstm": (4, 12, 12, 1), "frame_baseline": (4, 12, 12, 1),
                "bn_cnn_binary": (20, 20, 3)}



@pytest.fixture(autouse=True, scope="module")
def _fast_compiles():
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


# ---------------------------------------------------------------- Keras originals

def _conv(filters, name, padding="valid"):
    return L.Conv2D(filters, (3, 3), activation="relu", padding=padding, name=name)


def keras_model(name: str, input_shape, num_classes: int | None = None, dropout: bool = True):
    """The tutorial's Keras network `name` in tf_keras, built by `jaxcnn.keras.builders` from the
    jaxcnn module's configuration (softmax/sigmoid left out: the Flax models return logits)."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if not dropout:
        kwargs.update(conv_dropout=0.0, dense_dropout=0.0)
    inputs = keras.Input(shape=input_shape)
    return keras.Model(inputs, keras_layers(L, get_model(name, **kwargs), inputs))


def randomize_keras(model, seed: int = 0):
    """Random biases and BatchNorm weights/statistics, so that their copying is tested too."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer = getattr(layer, "layer", layer)
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c), rng.normal(0, 0.5, c),
                               rng.uniform(0.5, 2.0, c)])
        elif layer.weights:
            w = layer.get_weights()
            w[-1] = rng.normal(0, 0.1, w[-1].shape)
            layer.set_weights(w)


def keras_to_flax(model, variables):
    """Copy a Keras model's weights into Flax `variables`, layer by layer, matched by name.

    Conv2D/Dense kernels share Flax's layout ([kh, kw, in, out], [in, out]); BatchNormalization's
    gamma/beta go to params scale/bias and its moving mean/variance to batch_stats; LSTM keeps
    Keras' names. TimeDistributed wrappers are looked through.
    """
    params = jax.tree.map(np.asarray, dict(variables["params"]))
    stats = jax.tree.map(np.asarray, dict(variables.get("batch_stats", {})))
    copied = set()
    for layer in model.layers:
        layer = getattr(layer, "layer", layer)
        weights = layer.get_weights()
        if not weights:
            continue
        if layer.name not in params:
            raise KeyError(f"Keras layer {layer.name!r} has no Flax counterpart in {sorted(params)}")
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = weights
            new_p, new_s = {"scale": gamma, "bias": beta}, {"mean": mean, "var": var}
            stats[layer.name] = _replace(stats[layer.name], new_s, layer.name)
        elif isinstance(layer, L.LSTM):
            new_p = dict(zip(("kernel", "recurrent_kernel", "bias"), weights))
        else:
            new_p = dict(zip(("kernel", "bias"), weights))
        params[layer.name] = _replace(params[layer.name], new_p, layer.name)
        copied.add(layer.name)
    if copied != set(params):
        raise KeyError(f"Flax params not set from Keras: {sorted(set(params) - copied)}")
    out = {"params": params}
    if stats:
        out["batch_stats"] = stats
    return out


def _replace(old: dict, new: dict, layer: str):
    if set(old) != set(new):
        raise KeyError(f"layer {layer!r}: Flax has {sorted(old)}, Keras gives {sorted(new)}")
    for k, v in new.items():
        if old[k].shape != v.shape:
            raise ValueError(f"layer {layer!r} {k}: Flax shape {old[k].shape}, Keras {v.shape}")
    return {k: np.asarray(v, np.float32) for k, v in new.items()}


def init(name: str, shape=None, seed: int = 0, **kwargs):
    model = get_model(name, **kwargs)
    shape = SMALL_SHAPES[name] if shape is None else shape
    return model, model.init(jax.random.PRNGKey(seed), jnp.zeros((2, *shape)))


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------- parameter counts

def test_every_small_network_is_registered_and_covered():
    assert set(ALL_MODELS) == set(TUTORIAL_INPUT_SHAPES)
    assert set(ALL_MODELS) <= set(list_models())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_param_count_equals_keras_at_tutorial_shape(name):
    shape = TUTORIAL_INPUT_SHAPES[name]
    model = get_model(name)
    # eval_shape: N5 (25M) and N7 (42M) are counted without allocating their weights.
    variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape))))
    ours = count(variables)  # params + batch_stats, as Keras counts BN moving mean/variance
    assert ours == keras_model(name, shape).count_params()
    if name == "mnist_cnn":
        assert ours == 121_930


# ---------------------------------------------------------------- layer-by-layer parity

@pytest.mark.parametrize("name,shape", [
    ("mnist_cnn", None), ("mnist_cnn_dropout", None), ("mnist_simple", None), ("mnist_cnn3", None),
    ("spectrogram_cnn", None), ("mnist_cnn128", None), ("cifar10_mlp", None), ("cifar10_cnn", None),
    ("bn_cnn_binary", (40, 40, 3)), ("cnn_lstm", (6, 16, 16, 1)), ("frame_baseline", (5, 16, 16, 1)),
])
def test_inference_matches_keras_with_copied_weights(name, shape):
    shape = TUTORIAL_INPUT_SHAPES[name] if shape is None else shape
    kmodel = keras_model(name, shape)
    randomize_keras(kmodel)
    model, variables = init(name, shape)
    variables = keras_to_flax(kmodel, variables)
    x = np.random.default_rng(1).uniform(0, 1, (4, *shape)).astype(np.float32)
    expected = kmodel(x, training=False).numpy()
    got = np.asarray(model.apply(variables, x, train=False))
    chex.assert_equal_shape([got, expected])
    chex.assert_trees_all_close(got, expected, rtol=1e-5, atol=1e-5)


def test_frame_baseline_single_frame_matches_keras():
    kmodel = keras.Sequential([keras.Input((16, 16, 1)), _conv(32, "conv1"), L.MaxPooling2D(), L.Flatten(),
                               L.Dense(32, activation="relu", name="dense1"), L.Dense(3, name="logits")])
    randomize_keras(kmodel)
    model, variables = init("frame_baseline", (16, 16, 1))
    variables = keras_to_flax(kmodel, variables)
    x = np.random.default_rng(2).uniform(0, 1, (3, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(model.apply(variables, x), kmodel(x).numpy(), rtol=1e-5, atol=1e-5)
    # A video of T copies of one frame is classified like that frame: no temporal information.
    video = np.repeat(x[:, None], 5, axis=1)
    np.testing.assert_allclose(model.apply(variables, video), model.apply(variables, x), rtol=1e-5, atol=1e-6)


def test_lstm_returns_sequences_like_keras():
    from jaxcnn.models.layers import LSTM

    klstm = keras.Sequential([keras.Input((7, 5)), L.LSTM(4, return_sequences=True, name="lstm")])
    randomize_keras(klstm)
    lstm = LSTM(4, return_sequences=True)
    x = np.random.default_rng(3).normal(size=(2, 7, 5)).astype(np.float32)
    params = {"params": keras_to_flax(klstm, {"params": {"lstm": lstm.init(jax.random.PRNGKey(0), x)["params"]}})
              ["params"]["lstm"]}
    np.testing.assert_allclose(lstm.apply(params, x), klstm(x).numpy(), rtol=1e-5, atol=1e-6)


def test_batchnorm_training_update_matches_keras():
    """One training-mode call updates the moving statistics as Keras does (momentum 0.99)."""
    shape = (20, 20, 3)
    kmodel = keras_model("bn_cnn_binary", shape, dropout=False)
    randomize_keras(kmodel)
    model, variables = init("bn_cnn_binary", shape, conv_dropout=0.0, dense_dropout=0.0)
    variables = keras_to_flax(kmodel, variables)
    x = np.random.default_rng(4).uniform(0, 1, (16, *shape)).astype(np.float32)
    expected = kmodel(x, training=True).numpy()
    got, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    for bn in ("bn1", "bn2", "bn3"):
        klayer = kmodel.get_layer(bn)
        np.testing.assert_allclose(updates["batch_stats"][bn]["mean"], klayer.moving_mean.numpy(),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(updates["batch_stats"][bn]["var"], klayer.moving_variance.numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_keras_to_flax_names_the_missing_layer():
    kmodel = keras_model("mnist_cnn", (28, 28, 1))
    _, variables = init("mnist_simple")
    with pytest.raises(KeyError, match="conv2"):
        keras_to_flax(kmodel, variables)


# ---------------------------------------------------------------- shapes, modes, init

@pytest.mark.parametrize("name", ALL_MODELS)
def test_output_shape(name):
    model, variables = init(name)
    x = jnp.ones((3, *SMALL_SHAPES[name]))
    out = model.apply(variables, x, train=False)
    chex.assert_shape(out, (3, 1) if name == "bn_cnn_binary" else (3, 3 if name in (
        "cnn_lstm", "spectrogram_cnn", "frame_baseline") else 10))
    chex.assert_type(out, jnp.float32)


def test_num_classes_and_flat_input():
    model, variables = init("spectrogram_cnn", num_classes=10)
    chex.assert_shape(model.apply(variables, jnp.ones((2, 64, 64, 1))), (2, 10))
    model, variables = init("cifar10_mlp")
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 32, 32, 3))
    chex.assert_trees_all_equal(model.apply(variables, x), model.apply(variables, x.reshape(2, 3072)))


@pytest.mark.parametrize("name,bad", [("mnist_cnn", (2, 28, 28)), ("cnn_lstm", (2, 12, 12, 1)),
                                      ("bn_cnn_binary", (2, 5, 20, 20, 3))])
def test_wrong_rank_is_a_clear_error(name, bad):
    model = get_model(name)
    with pytest.raises(ValueError, match="expects input"):
        model.init(jax.random.PRNGKey(0), jnp.zeros(bad))


@pytest.mark.parametrize("name", DROPOUT_MODELS)
def test_dropout_only_in_training(name):
    model, variables = init(name)
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, *SMALL_SHAPES[name]))
    mutable = ["batch_stats"] if "batch_stats" in variables else False

    def run(train, key):
        out = model.apply(variables, x, train=train, rngs={"dropout": jax.random.PRNGKey(key)}, mutable=mutable)
        return np.asarray(out[0] if mutable else out)

    np.testing.assert_array_equal(run(False, 0), run(False, 1))
    np.testing.assert_array_equal(run(True, 0), run(True, 0))
    assert not np.allclose(run(True, 0), run(True, 1))


def test_dropout_scales_kept_units_like_keras():
    """Train-mode dropout output is either 0 or input / (1 - rate), as Keras' Dropout."""
    model, variables = init("mnist_cnn_dropout")
    x = jax.random.uniform(jax.random.PRNGKey(1), (64, 28, 28, 1))
    _, inter = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(5)},
                           capture_intermediates=True, mutable=["intermediates"])
    inter = inter["intermediates"]
    hidden = np.asarray(jax.nn.relu(inter["dense1"]["__call__"][0]))
    dropped = np.asarray(inter["Dropout_2"]["__call__"][0])
    live = hidden > 1e-3
    ratio = dropped[live] / hidden[live]
    assert np.all(np.isclose(ratio, 0.0) | np.isclose(ratio, 2.0))  # rate 0.5: kept units x2
    assert 0.4 < np.mean(ratio == 0.0) < 0.6
    # Rate 0.25 after the pools: kept units x4/3, about a quarter dropped.
    pooled = np.asarray(max_pool(jax.nn.relu(inter["conv1"]["__call__"][0])))
    ratio = np.asarray(inter["Dropout_0"]["__call__"][0])[pooled > 1e-3] / pooled[pooled > 1e-3]
    assert np.all(np.isclose(ratio, 0.0) | np.isclose(ratio, 4 / 3))
    assert 0.2 < np.mean(ratio == 0.0) < 0.3


def test_batchnorm_stats_update_only_in_training():
    model, variables = init("bn_cnn_binary")
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, *SMALL_SHAPES["bn_cnn_binary"]))
    rngs = {"dropout": jax.random.PRNGKey(0)}
    _, eval_updates = model.apply(variables, x, train=False, mutable=["batch_stats"])
    _, train_updates = model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])
    chex.assert_trees_all_equal(eval_updates["batch_stats"], variables["batch_stats"])
    for bn in ("bn1", "bn2", "bn3"):
        before = variables["batch_stats"][bn]
        assert not np.allclose(train_updates["batch_stats"][bn]["mean"], before["mean"])
        assert not np.allclose(train_updates["batch_stats"][bn]["var"], before["var"])
        np.testing.assert_array_equal(before["mean"], 0.0)  # Keras: moving mean 0, variance 1
        np.testing.assert_array_equal(before["var"], 1.0)
    chex.assert_shape(model.apply(variables, x), (4, 1))  # eval mode needs no mutable collection


@pytest.mark.parametrize("name", ALL_MODELS)
def test_keras_default_init(name):
    """Glorot-uniform kernels (conv: fans include the window), zero biases; LSTM as Keras."""
    _, variables = init(name, seed=3)
    for layer, p in variables["params"].items():
        if layer.startswith("bn"):
            np.testing.assert_array_equal(p["scale"], 1.0)
            np.testing.assert_array_equal(p["bias"], 0.0)
            continue
        k = np.asarray(p["kernel"])
        receptive = int(np.prod(k.shape[:-2])) if k.ndim > 2 else 1
        limit = math.sqrt(6.0 / (receptive * (k.shape[-2] + k.shape[-1])))
        assert np.abs(k).max() <= limit
        assert np.abs(k).max() > 0.9 * limit
        assert abs(k.std() - limit / math.sqrt(3)) < 0.15 * limit / math.sqrt(3)
        if layer == "lstm":
            u = p["recurrent_kernel"].shape[0]
            np.testing.assert_allclose(p["recurrent_kernel"] @ p["recurrent_kernel"].T, np.eye(u), atol=1e-5)
            expected_bias = np.zeros(4 * u)
            expected_bias[u:2 * u] = 1.0  # unit_forget_bias
            np.testing.assert_array_equal(p["bias"], expected_bias)
        else:
            np.testing.assert_array_equal(p["bias"], 0.0)


# ---------------------------------------------------------------- training through the step

def test_dropout_masks_come_from_the_state_rng():
    """The step draws its dropout key from the state's rng: same rng, same step; other rng, other.

    That each model trains (loss down, every layer a gradient, BN statistics updated, one
    compile) is checked for every registered model by jaxcnn.testing.assert_trains in
    test_testing.py.
    """
    shape = SMALL_SHAPES["mnist_cnn_dropout"]
    state = create_train_state(get_model("mnist_cnn_dropout"), shape, optax.adam(1e-3), seed=0)
    rng = np.random.default_rng(0)
    batch = {"image": jnp.asarray(rng.uniform(0, 1, (16, *shape)), jnp.float32),
             "label": jnp.asarray(rng.integers(0, 10, 16))}
    step = jax.jit(chex.assert_max_traces(make_train_step("sparse_categorical_crossentropy"), n=1))
    new_state, metrics = step(state, batch)
    chex.assert_tree_all_finite((new_state.params, metrics))
    assert int(new_state.step) == 1 and float(metrics["count"]) == 16
    again, _ = step(state, batch)
    other, _ = step(state.replace(rng=jax.random.PRNGKey(123)), batch)
    chex.assert_trees_all_equal(again.params, new_state.params)
    assert not np.allclose(other.params["dense1"]["kernel"], new_state.params["dense1"]["kernel"])
