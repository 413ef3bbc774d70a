"""Keras' weighted layers beyond Conv2D/Dense/BatchNormalization/LSTM, as linen modules.

Each keeps Keras' arrays as they are saved (a DepthwiseConv2D's `depthwise_kernel` is
[kh, kw, in, multiplier], a Conv2DTranspose's `kernel` [kh, kw, out, in]), so weights copy
across without a transpose and export back the same way. NHWC (NWC for the 1D forms).
`WEIGHT_ORDER` gives Keras' saved order of each class's weights -> (collection, name);
collection None drops a weight that does not act (Normalization's `count`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.keras.ops import pair

WEIGHT_ORDER = {
    "DepthwiseConv": (("depthwise_kernel", "params", "depthwise_kernel"), ("bias", "params", "bias")),
    "SeparableConv": (("depthwise_kernel", "params", "depthwise_kernel"),
                      ("pointwise_kernel", "params", "pointwise_kernel"), ("bias", "params", "bias")),
    "Conv": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "ConvTranspose": (("kernel", "params", "kernel"), ("bias", "params", "bias")),
    "Normalization": (("mean", "batch_stats", "mean"), ("variance", "batch_stats", "variance"),
                      ("count", None, None)),
    "LayerNormalization": (("gamma", "params", "gamma"), ("beta", "params", "beta")),
    "LayerScale": (("gamma", "params", "gamma"),),
}


def family(cls: str) -> str:
    """Conv1D -> Conv, SeparableConv2D -> SeparableConv, Conv2DTranspose -> ConvTranspose."""
    if cls.endswith("Transpose"):
        return "ConvTranspose"
    return cls[:-2] if cls[-2:] in ("1D", "2D", "3D") else cls


def _dims(nd: int):
    return {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}[nd]


def _padding(padding: str, kernel, dilation):
    if padding == "causal":  # Conv1D: all padding before
        return [((kernel[0] - 1) * dilation[0], 0)]
    return padding.upper()


def conv(x, kernel, strides, padding, dilation, groups=1):
    nd = x.ndim - 2
    return jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), pair(strides, nd), _padding(padding, kernel.shape, pair(dilation, nd)),
        rhs_dilation=pair(dilation, nd), dimension_numbers=_dims(nd), feature_group_count=groups)


class KerasConv(nn.Module):
    """Conv1D/Conv3D, DepthwiseConv1D/2D and SeparableConv1D/2D with Keras' weights and options."""

    kind: str  # Conv, DepthwiseConv, SeparableConv
    cfg: dict

    @nn.compact
    def __call__(self, x):
        cfg, nd, cin = self.cfg, x.ndim - 2, x.shape[-1]
        k = pair(cfg["kernel_size"], nd)
        init = nn.initializers.lecun_normal()
        if self.kind == "Conv":
            w = self.param("kernel", init, (*k, cin // cfg.get("groups", 1), cfg["filters"]))
            y = conv(x, w, cfg["strides"], cfg["padding"], cfg["dilation_rate"], cfg.get("groups", 1))
        else:
            dm = cfg["depth_multiplier"]
            w = self.param("depthwise_kernel", init, (*k, cin, dm))
            y = conv(x, w.reshape((*k, 1, cin * dm)), cfg["strides"], cfg["padding"], cfg["dilation_rate"], cin)
            if self.kind == "SeparableConv":
                p = self.param("pointwise_kernel", init, ((1,) * nd + (cin * dm, cfg["filters"])))
                y = conv(y, p, 1, "valid", 1)
        if cfg.get("use_bias", True):
            y = y + self.param("bias", nn.initializers.zeros, (y.shape[-1],)).astype(y.dtype)
        return y


class KerasConvTranspose(nn.Module):
    """Conv1DTranspose/Conv2DTranspose: Keras' kernel [k..., out, in] and output size."""

    cfg: dict

    @nn.compact
    def __call__(self, x):
        cfg, nd = self.cfg, x.ndim - 2
        k, s, d = pair(cfg["kernel_size"], nd), pair(cfg["strides"], nd), pair(cfg.get("dilation_rate", 1), nd)
        out_pad = cfg.get("output_padding")
        out_pad = [None] * nd if out_pad is None else pair(out_pad, nd)
        w = self.param("kernel", nn.initializers.lecun_normal(), (*k, cfg["filters"], x.shape[-1]))
        pads = [_transpose_padding(ki, si, di, cfg["padding"], op) for ki, si, di, op in zip(k, s, d, out_pad)]
        y = jax.lax.conv_transpose(x, w.astype(x.dtype), s, pads, rhs_dilation=d, dimension_numbers=_dims(nd),
                                   transpose_kernel=True)
        if cfg.get("use_bias", True):
            y = y + self.param("bias", nn.initializers.zeros, (cfg["filters"],)).astype(y.dtype)
        return y


def _transpose_padding(kernel: int, stride: int, dilation: int, padding: str, output_padding):
    """Keras' (JAX backend's) padding of a transposed convolution (backend_utils)."""
    kernel = (kernel - 1) * dilation + 1
    if padding == "valid":
        output_padding = max(kernel, stride) - kernel if output_padding is None else output_padding
        return kernel - 1, kernel - 1 + output_padding
    pad = stride + kernel - 2 if output_padding is None else kernel + kernel % 2 - 2 + output_padding
    left = min(pad // 2 + pad % 2, kernel - 1)
    return left, pad - left


def _keep_axes(axis, ndim: int) -> tuple:
    axis = () if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(a % ndim for a in axis))


class KerasNormalization(nn.Module):
    """Keras' Normalization: (x - mean) / max(sqrt(variance), 1e-7) over the kept axes; `invert`.

    Adapted statistics live in `batch_stats` (they never train); given ones come from the config.
    """

    cfg: dict

    @nn.compact
    def __call__(self, x):
        keep = _keep_axes(self.cfg.get("axis", -1), x.ndim)
        shape = tuple(x.shape[a] for a in keep)
        bshape = tuple(x.shape[a] if a in keep else 1 for a in range(x.ndim))
        if self.cfg.get("mean") is None:
            mean = self.variable("batch_stats", "mean", jnp.zeros, shape).value
            var = self.variable("batch_stats", "variance", jnp.ones, shape).value
        else:
            mean, var = (_given(self.cfg[k], keep, x.ndim, bshape) for k in ("mean", "variance"))
        mean, var = jnp.reshape(mean, bshape).astype(x.dtype), jnp.reshape(var, bshape).astype(x.dtype)
        std = jnp.maximum(jnp.sqrt(var), 1e-7)
        return mean + x * std if self.cfg.get("invert") else (x - mean) / std


def _given(value, keep, ndim, bshape):
    """A config mean/variance aligned to the kept axes from the right (as Keras does)."""
    v = jnp.asarray(value, jnp.float32)
    if v.ndim == 0:
        return jnp.broadcast_to(v, bshape)
    expanded = [1] * ndim
    for i in range(1, v.ndim + 1):
        expanded[keep[-i]] = v.shape[-i]
    return jnp.broadcast_to(v.reshape(expanded), bshape)


class KerasLayerNormalization(nn.Module):
    """Keras' LayerNormalization (float32 statistics, `rms_scaling` too)."""

    cfg: dict

    @nn.compact
    def __call__(self, x):
        axes = _keep_axes(self.cfg.get("axis", -1), x.ndim)
        shape = tuple(x.shape[a] for a in axes)
        bshape = tuple(x.shape[a] if a in axes else 1 for a in range(x.ndim))
        eps = self.cfg.get("epsilon", 1e-3)
        xf = x.astype(jnp.float32)
        if self.cfg.get("rms_scaling"):
            var = jnp.mean(jnp.square(xf), axis=axes, keepdims=True)
            y = xf * jax.lax.rsqrt(var + eps)
            gamma = self.param("gamma", nn.initializers.ones, shape)
            return (y * gamma.reshape(bshape)).astype(x.dtype)
        mean = jnp.mean(xf, axis=axes, keepdims=True)
        var = jnp.mean(jnp.square(xf - mean), axis=axes, keepdims=True)
        y = (xf - mean) * jax.lax.rsqrt(var + eps)
        if self.cfg.get("scale", True):
            y = y * self.param("gamma", nn.initializers.ones, shape).reshape(bshape)
        if self.cfg.get("center", True):
            y = y + self.param("beta", nn.initializers.zeros, shape).reshape(bshape)
        return y.astype(x.dtype)


class KerasLayerScale(nn.Module):
    """ConvNeXt's LayerScale: x * gamma (one factor per channel)."""

    cfg: dict

    @nn.compact
    def __call__(self, x):
        gamma = self.param("gamma", nn.initializers.constant(self.cfg.get("init_values", 1e-6)),
                           (self.cfg["projection_dim"],))
        return x * gamma.astype(x.dtype)
