"""The CPU-fast building blocks equal the reference ops: im2col convolution vs XLA's and
TensorFlow's, the custom-gradient max-pool vs reduce-window's and TensorFlow's."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxcnn.models import layers
from jaxcnn.models.layers import conv_general_dilated, max_pool

NHWC = ("NHWC", "HWIO", "NHWC")
CASES = [  # input, kernel, strides, padding
    ((2, 13, 13, 32), (3, 3, 32, 64), (1, 1), "VALID"),
    ((2, 28, 28, 1), (3, 3, 1, 8), (1, 1), "VALID"),
    ((2, 15, 14, 3), (7, 7, 3, 8), (2, 2), "SAME"),
    ((2, 9, 9, 4), (1, 1, 4, 5), (2, 2), "VALID"),
    ((1, 8, 8, 2), (3, 3, 2, 3), (1, 1), ((1, 2), (0, 1))),
]


def _loss(conv, strides, padding):
    return lambda x, k: jnp.sum(jnp.sin(conv(x, k, strides, padding, dimension_numbers=NHWC)))


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", CASES)
def test_im2col_conv_equals_xla_values_and_gradients(monkeypatch, x_shape, k_shape, strides, padding):
    monkeypatch.setenv("JAXCNN_CONV", "im2col")
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)
    ours = conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
    ref = lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
    chex.assert_equal_shape([ours, ref])
    chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-4)
    g_ours = jax.grad(_loss(conv_general_dilated, strides, padding), (0, 1))(x, k)
    g_ref = jax.grad(_loss(lax.conv_general_dilated, strides, padding), (0, 1))(x, k)
    chex.assert_trees_all_close(g_ours, g_ref, rtol=1e-4, atol=1e-4)


def test_im2col_conv_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 12, 12, 5)).astype(np.float32)
    k = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    for padding, strides in (("VALID", 1), ("SAME", 2)):
        want = tf.nn.conv2d(x, k, strides=strides, padding=padding).numpy()
        got = layers._im2col(jnp.asarray(x), jnp.asarray(k), (strides, strides),
                             lax.padtype_to_pads((12, 12), (3, 3), (strides, strides), padding), None, None)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def _traced_ops(fn, *args):
    # A fresh function each time: traces are cached per function, and the mode is read at trace time.
    return str(jax.make_jaxpr(lambda *a: fn(*a))(*args))


def test_conv_mode_selects_the_implementation(monkeypatch):
    x, k = jnp.ones((1, 6, 6, 2)), jnp.ones((3, 3, 2, 4))
    conv = lambda x, k: conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=NHWC)  # noqa: E731
    monkeypatch.setenv("JAXCNN_CONV", "xla")
    assert "conv_general_dilated" in _traced_ops(conv, x, k)
    monkeypatch.setenv("JAXCNN_CONV", "im2col")
    assert "conv_general_dilated" not in _traced_ops(conv, x, k)
    monkeypatch.setenv("JAXCNN_CONV", "auto")  # this test machine's backend is the CPU
    assert ("conv_general_dilated" in _traced_ops(conv, x, k)) == (jax.default_backend() != "cpu")
    monkeypatch.setattr(layers, "IM2COL_MAX_BYTES", 10)  # one example's patches over the limit: XLA's conv
    assert "conv_general_dilated" in _traced_ops(conv, x, k)
    monkeypatch.setenv("JAXCNN_CONV", "fast")
    with pytest.raises(ValueError, match="JAXCNN_CONV"):
        conv(x, k)


def test_chunk_sizes_are_the_fewest_that_fit_and_differ_by_at_most_one():
    assert layers._chunk_sizes(1024, 300) == (256, 256, 256, 256)
    assert layers._chunk_sizes(10, 4) == (4, 3, 3)
    assert layers._chunk_sizes(5, 5) == (5,)
    assert layers._chunk_sizes(3, 1) == (1, 1, 1)


@pytest.mark.parametrize("x_shape,k_shape,strides,padding", [CASES[0], CASES[2], CASES[4]])
def test_auto_conv_over_the_cap_runs_checkpointed_batch_chunks_equal_to_xla(
        monkeypatch, x_shape, k_shape, strides, padding):
    if jax.default_backend() != "cpu":
        pytest.skip("auto takes XLA's convolution off the CPU backend")
    monkeypatch.setenv("JAXCNN_CONV", "auto")
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((5,) + x_shape[1:]), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)
    ho = lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC).shape[1:3]
    example_bytes = ho[0] * ho[1] * k_shape[0] * k_shape[1] * k_shape[2] * 4
    monkeypatch.setattr(layers, "IM2COL_MAX_BYTES", 2 * example_bytes)  # chunks of 2, 2, 1
    conv = lambda x, k: conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)  # noqa: E731
    ops = _traced_ops(conv, x, k)
    assert "conv_general_dilated" not in ops
    assert ops.count("checkpoint[") + ops.count("remat") == 3
    grad_ops = _traced_ops(jax.grad(_loss(conv_general_dilated, strides, padding), (0, 1)), x, k)
    assert "conv_general_dilated" not in grad_ops
    ours = jax.jit(conv)(x, k)
    ref = lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=NHWC)
    chex.assert_equal_shape([ours, ref])
    chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-4)
    g_ours = jax.jit(jax.grad(_loss(conv_general_dilated, strides, padding), (0, 1)))(x, k)
    g_ref = jax.grad(_loss(lax.conv_general_dilated, strides, padding), (0, 1))(x, k)
    chex.assert_trees_all_close(g_ours, g_ref, rtol=1e-4, atol=1e-4)


def test_dilated_and_grouped_convs_take_xlas_path(monkeypatch):
    monkeypatch.setenv("JAXCNN_CONV", "im2col")
    x, k = jnp.ones((1, 9, 9, 4)), jnp.ones((3, 3, 2, 4))
    grouped = lambda x, k: conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=NHWC,  # noqa: E731
                                                feature_group_count=2)
    assert "conv_general_dilated" in _traced_ops(grouped, x, k)
    dilated = lambda x, k: conv_general_dilated(x, k[:, :, :2], (1, 1), "VALID",  # noqa: E731
                                                rhs_dilation=(2, 2), dimension_numbers=NHWC)
    assert "conv_general_dilated" in _traced_ops(dilated, x[..., :2], k)


def test_max_pool_values_and_gradients_equal_reduce_window_with_ties():
    import flax.linen as nn

    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.integers(0, 3, (2, 9, 10, 3)), jnp.float32)  # many tied maxima; odd height
    weights = jnp.asarray(rng.standard_normal((2, 4, 5, 3)), jnp.float32)
    np.testing.assert_array_equal(max_pool(x), nn.max_pool(x, (2, 2), (2, 2)))
    ours = jax.grad(lambda x: jnp.sum(max_pool(x) * weights))(x)
    ref = jax.grad(lambda x: jnp.sum(nn.max_pool(x, (2, 2), (2, 2)) * weights))(x)
    np.testing.assert_array_equal(ours, ref)
    assert float(jnp.sum(ours != 0)) <= weights.size  # one winner per window, no split gradient


def test_max_pool_gradient_is_whole_when_its_input_is_a_fused_batchnorm():
    """Each window passes its whole gradient on, also when XLA fuses the BatchNorm that makes the
    pool's input into several consumers (a comparison with the maximum in the backward pass lost
    windows there: N7's gradients differed between 1 and 8 devices)."""
    import flax.linen as nn

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 10, 10, 32)).astype(np.float32)
    w = rng.normal(size=(16, 5, 5, 32)).astype(np.float32)

    def grad_of_pool_input(pool):
        def loss(eps, x):
            mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
            return jnp.sum(w * pool((jnp.maximum(x, 0) - mean) / jnp.sqrt(var + 1e-3) + eps))
        return np.asarray(jax.jit(jax.grad(loss))(np.zeros_like(x), x))

    ours = grad_of_pool_input(max_pool)
    chex.assert_trees_all_equal(ours.reshape(16, 5, 2, 5, 2, 32).sum((2, 4)), w)
    chex.assert_trees_all_equal(ours, grad_of_pool_input(lambda t: nn.max_pool(t, (2, 2), (2, 2))))


def test_max_pool_gradient_matches_tensorflow():
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (2, 8, 8, 4)).astype(np.float32)
    w = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(tf.nn.max_pool2d(xt, 2, 2, "VALID") * w)
    want = tape.gradient(y, xt).numpy()
    got = jax.grad(lambda x: jnp.sum(max_pool(x) * w))(jnp.asarray(x))
    np.testing.assert_array_equal(got, want)
