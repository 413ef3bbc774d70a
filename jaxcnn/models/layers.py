"""Keras-default building blocks: glorot-uniform kernels, zero biases, VALID convs."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

glorot_uniform = nn.initializers.glorot_uniform()

Conv = functools.partial(
    nn.Conv, padding="VALID", kernel_init=glorot_uniform, bias_init=nn.initializers.zeros
)
Dense = functools.partial(nn.Dense, kernel_init=glorot_uniform, bias_init=nn.initializers.zeros)
# Keras BatchNormalization: momentum 0.99, epsilon 1e-3.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.99, epsilon=1e-3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _window_max(x, size):
    n, h, w, c = x.shape
    return x.reshape(n, h // size, size, w // size, size, c).max(axis=(2, 4))


def _window_max_fwd(x, size):
    y = _window_max(x, size)
    return y, (x, y)


def _window_max_bwd(size, res, g):
    # The first maximum of each window takes the whole gradient (TensorFlow's and reduce-window's
    # choice). No division by a tie count: JAX's own `max` gradient divides by one, which
    # XLA:CPU's fusions computed as 0 for BatchNorm inputs (NaN gradients).
    x, y = res
    n, h, w, c = x.shape
    win = x.reshape(n, h // size, size, w // size, size, c).transpose(0, 1, 3, 2, 4, 5)
    win = win.reshape(n, h // size, w // size, size * size, c)
    hit = win == y[:, :, :, None, :]
    first = hit & (jnp.cumsum(hit.astype(jnp.int32), axis=3) == 1)
    gx = jnp.where(first, g[:, :, :, None, :], jnp.zeros((), g.dtype))
    gx = gx.reshape(n, h // size, w // size, size, size, c).transpose(0, 1, 3, 2, 4, 5)
    return (gx.reshape(n, h, w, c),)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def max_pool(x, size: int = 2):
    """Keras MaxPooling2D(): pool `size`, stride `size`, VALID.

    A reshape and a max over the non-overlapping windows, with its own gradient: the same values
    and gradients as `nn.max_pool`, but XLA:CPU runs the pair ~3x faster than reduce-window's,
    which dominated N1's train step on CPU (see benchmarks/SPEED.md).
    """
    h, w = x.shape[1] // size * size, x.shape[2] // size * size
    return _window_max(x[:, :h, :w], size)


def flatten(x):
    """Row-major over (H, W, C), like Keras Flatten on NHWC."""
    return x.reshape((x.shape[0], -1))


def unit_forget_bias(units: int):
    """Keras LSTM bias init (unit_forget_bias=True): zeros, ones on the forget gate."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.zeros(shape, dtype).at[units:2 * units].set(1.0)

    return init


class LSTM(nn.Module):
    """Keras `LSTM(units)`: tanh, sigmoid gates, gate order (i, f, c, o), Keras' param layout.

    Params are named as in Keras, `kernel` [in, 4*units] (glorot-uniform), `recurrent_kernel`
    [units, 4*units] (orthogonal) and `bias` [4*units], so Keras weights copy over unchanged.
    Input [B, T, F]; returns the last output [B, units], or all outputs [B, T, units] with
    `return_sequences`. The input projection runs for all steps at once; only the recurrent
    product is inside the `lax.scan`.
    """

    units: int
    return_sequences: bool = False

    @nn.compact
    def __call__(self, x):
        if x.ndim != 3:
            raise ValueError(f"LSTM {self.name!r} expects [batch, time, features], got shape {x.shape}")
        u = self.units
        kernel = self.param("kernel", glorot_uniform, (x.shape[-1], 4 * u))
        recurrent = self.param("recurrent_kernel", nn.initializers.orthogonal(), (u, 4 * u))
        bias = self.param("bias", unit_forget_bias(u), (4 * u,))
        z_in = jnp.einsum("btf,fg->tbg", x, kernel) + bias  # time-major for the scan

        def step(carry, z_t):
            h, c = carry
            z = z_t + h @ recurrent
            i, f, g, o = jnp.split(z, 4, axis=-1)
            c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
            h = nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), h

        zeros = jnp.zeros((x.shape[0], u), z_in.dtype)
        (h, _), hs = jax.lax.scan(step, (zeros, zeros), z_in)
        return jnp.swapaxes(hs, 0, 1) if self.return_sequences else h
