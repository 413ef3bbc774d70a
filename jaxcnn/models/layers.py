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


def max_pool(x, size: int = 2):
    """Keras MaxPooling2D(): pool `size`, stride `size`, VALID.

    Computed as an elementwise maximum of the `size*size` strided views of the input: the same
    values as `nn.max_pool`, but XLA:CPU runs its gradient far faster than reduce-window's (which
    dominated N1's train step on CPU). Ties split the gradient (they occur at ReLU's zeros, whose
    gradient is zero anyway). Not a reshape + `max`: that gradient divides by a tie count that
    XLA:CPU's fusions can compute as 0 (NaN gradients seen with BatchNorm inputs).
    """
    h, w = x.shape[1] // size * size, x.shape[2] // size * size
    views = [x[:, i:h:size, j:w:size] for i in range(size) for j in range(size)]
    out = views[0]
    for v in views[1:]:
        out = jnp.maximum(out, v)
    return out


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
