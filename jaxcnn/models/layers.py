"""Keras-default building blocks: glorot-uniform kernels, zero biases, VALID convs."""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

glorot_uniform = nn.initializers.glorot_uniform()

# The largest patch matrix one im2col matmul builds on CPU; bigger batches run in chunks.
IM2COL_MAX_BYTES = 256 * 2**20
_NHWC = ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # lhs, rhs, out specs of NHWC/HWIO/NHWC


def conv_impl() -> str:
    """How `conv_general_dilated` computes: `JAXCNN_CONV` = auto (default) | im2col | xla.

    auto: im2col on the CPU backend (in batch chunks whose patch matrices fit IM2COL_MAX_BYTES),
    XLA's own convolution elsewhere (cuDNN on GPU). im2col: one patch matrix, whatever its size.
    """
    mode = os.environ.get("JAXCNN_CONV", "auto").lower()
    if mode not in ("auto", "im2col", "xla"):
        raise ValueError(f"JAXCNN_CONV={mode!r}: expected auto, im2col or xla")
    return mode


def _is_int(d) -> bool:
    """A concrete dimension (not a symbolic one from `jax.export` shape polymorphism)."""
    return isinstance(d, int)


def _im2col(lhs, rhs, strides, pads, precision, preferred_element_type):
    kh, kw, cin, cout = rhs.shape
    x = jnp.pad(lhs, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0))) if any(map(any, pads)) else lhs
    (sh, sw), n = strides, x.shape[0]
    ho, wo = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    cols = [x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :]
            for i in range(kh) for j in range(kw)]
    patches = jnp.stack(cols, axis=3)  # [n, ho, wo, kh*kw, cin]: HWIO's (kh, kw, cin) order
    # lax.dot_general looked up at call time (jnp.dot is the same product): Qwix's quantization-aware
    # training intercepts `jax.lax.dot_general` (jaxcnn.compress.quantize).
    y = lax.dot_general(patches.reshape(n * ho * wo, kh * kw * cin), rhs.reshape(kh * kw * cin, cout),
                        (((1,), (0,)), ((), ())), precision=precision,
                        preferred_element_type=preferred_element_type)
    return y.reshape(n, ho, wo, cout)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1,
                         precision=None, preferred_element_type=None):
    """`lax.conv_general_dilated`, computed as im2col + matmul where that is faster (`conv_impl`).

    On XLA:CPU the 2-D NHWC convolutions of these small CNNs, and above all their kernel
    gradients, ran 3-6x slower than the same products as one matmul (benchmarks/SPEED.md);
    autodiff of slices + dot gives the gradients as matmuls and pads. Same values up to float
    summation order. A batch whose patch matrix exceeds IM2COL_MAX_BYTES runs as the fewest
    equal-ish batch chunks that fit, each under `jax.checkpoint` (its patches are rebuilt in the
    backward, not kept): memory stays near one chunk's patches, and big-batch or big-image steps
    (airbench at batch 1024, VGG16 at 224x224) keep the matmul speed. XLA's convolution remains
    for dilated, grouped or non-NHWC convolutions, other backends, symbolic shapes, and a single
    example whose patches alone exceed the cap.
    """
    args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
            feature_group_count, batch_group_count, precision, preferred_element_type)
    mode = conv_impl()
    if mode == "xla" or lhs.ndim != 4 or feature_group_count != 1 or batch_group_count != 1:
        return lax.conv_general_dilated(*args)
    if any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ())):
        return lax.conv_general_dilated(*args)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if tuple(map(tuple, dn)) != _NHWC:
        return lax.conv_general_dilated(*args)
    pads = (lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
            if isinstance(padding, str) else [tuple(p) for p in padding])
    kh, kw, cin, _ = rhs.shape
    ho = (lhs.shape[1] + sum(pads[0]) - kh) // window_strides[0] + 1
    wo = (lhs.shape[2] + sum(pads[1]) - kw) // window_strides[1] + 1
    if mode == "auto":
        if jax.default_backend() != "cpu" or not all(map(_is_int, (*lhs.shape, *rhs.shape))):
            # A symbolic shape (export with a polymorphic batch) keeps the plain convolution: the
            # size test cannot be decided for every batch, and serving runtimes have their own.
            return lax.conv_general_dilated(*args)
        example_bytes = ho * wo * kh * kw * cin * jnp.dtype(lhs.dtype).itemsize
        if example_bytes > IM2COL_MAX_BYTES:  # one example's patches already too big: no chunk fits
            return lax.conv_general_dilated(*args)
        sizes = _chunk_sizes(lhs.shape[0], IM2COL_MAX_BYTES // example_bytes)
        if len(sizes) > 1:
            return _chunked_im2col(lhs, rhs, tuple(window_strides), pads, precision,
                                   preferred_element_type, sizes)
    return _im2col(lhs, rhs, tuple(window_strides), pads, precision, preferred_element_type)


def _chunk_sizes(n: int, most: int) -> tuple[int, ...]:
    """The fewest batch chunks of at most `most` examples, sizes differing by at most one."""
    k = -(-n // most)
    return tuple(n // k + (i < n % k) for i in range(k))


def _chunked_im2col(lhs, rhs, strides, pads, precision, preferred_element_type, sizes):
    # Each chunk under `jax.checkpoint`: the backward rebuilds a chunk's patches from its input
    # slice, so at most about one chunk's patch matrix is alive, in either pass.
    conv = jax.checkpoint(functools.partial(_im2col, strides=strides, pads=pads, precision=precision,
                                            preferred_element_type=preferred_element_type))
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return jnp.concatenate([conv(lax.slice_in_dim(lhs, s, s + m), rhs) for s, m in zip(starts, sizes)])


Conv = functools.partial(
    nn.Conv, padding="VALID", kernel_init=glorot_uniform, bias_init=nn.initializers.zeros,
    conv_general_dilated=conv_general_dilated,
)
Dense = functools.partial(nn.Dense, kernel_init=glorot_uniform, bias_init=nn.initializers.zeros)
# Keras BatchNormalization: momentum 0.99, epsilon 1e-3.
BatchNorm = functools.partial(nn.BatchNorm, momentum=0.99, epsilon=1e-3)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _window_max(x, size):
    n, h, w, c = x.shape
    return x.reshape(n, h // size, size, w // size, size, c).max(axis=(2, 4))


def _window_max_fwd(x, size):
    n, h, w, c = x.shape
    # [n, h/size, w/size, c, size*size]: each window's elements last, row-major.
    flat = x.reshape(n, h // size, size, w // size, size, c).transpose(0, 1, 3, 5, 2, 4)
    flat = flat.reshape(n, h // size, w // size, c, size * size)
    # The index of the first maximum, from one reduction. Not `x == max(x)` in the backward:
    # XLA may compute `x` (e.g. a fused BatchNorm) once per consumer with different rounding,
    # and then no element of a window equals its maximum and the window's gradient is lost.
    return _window_max(x, size), jnp.argmax(flat, axis=-1).astype(jnp.int8)


def _window_max_bwd(size, first, g):
    # The first maximum of each window (row-major) takes the whole gradient, as in TensorFlow
    # and reduce-window; no division by a tie count (JAX's own `max` gradient divides by one,
    # which XLA:CPU's fusions computed as 0 for BatchNorm inputs: NaN gradients).
    n, ho, wo, c = first.shape
    picked = jnp.where(first[..., None] == jnp.arange(size * size, dtype=jnp.int8), g[..., None],
                       jnp.zeros((), g.dtype))
    picked = picked.reshape(n, ho, wo, c, size, size).transpose(0, 1, 4, 2, 5, 3)
    return (picked.reshape(n, ho * size, wo * size, c),)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


def max_pool(x, size: int = 2):
    """Keras MaxPooling2D(): pool `size`, stride `size`, VALID.

    A reshape and a max over the non-overlapping windows, with its own gradient: the same values
    and gradients as `nn.max_pool`, but XLA:CPU runs the pair ~3x faster than reduce-window's,
    which dominated N1's train step on CPU (see benchmarks/SPEED.md).
    """
    h, w = x.shape[1] // size * size, x.shape[2] // size * size
    if (h, w) != tuple(x.shape[1:3]):  # a static slice: indexing would become a gather under export
        x = lax.slice(x, (0, 0, 0, 0), (x.shape[0], h, w, x.shape[3]))
    return _window_max(x, size)


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
