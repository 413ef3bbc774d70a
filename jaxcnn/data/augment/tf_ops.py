"""The TensorFlow road: augmentation as tf.data ops, batched, stateless and reproducible from a seed.

TF kernels (`tf_transform_batch(kernel=...)`): TF's fused `ImageProjectiveTransformV3` for small
images, an XLA-compiled gather sampler for images of 64x64 pixels and more (about 2x faster on
150x150 on a 2-core CPU); both give the same results. TensorFlow is imported lazily (`tfutil`).
"""

from __future__ import annotations

from typing import Callable

from jaxcnn.data.augment.config import EDGE_EPS, FILL_MODES, AugmentConfig, parse_augment, shift_kind
from jaxcnn.data.augment.matrix import projective_params
from jaxcnn.data.tfutil import import_tf

_TF_MODULE = None


def _tf():
    global _TF_MODULE
    if _TF_MODULE is None:
        _TF_MODULE = import_tf()
    return _TF_MODULE


class _TFMath:
    """The few numpy-like functions `keras_matrix` needs, on TF tensors."""

    def __init__(self, tf):
        self.cos, self.sin = tf.cos, tf.sin
        self.where = lambda c, a, b: tf.where(c, tf.constant(a, tf.float32), tf.constant(b, tf.float32))


# Images with at least this many pixels use the XLA-compiled gather sampler in "auto" mode:
# measured on a 2-core CPU, TF's fused ImageProjectiveTransformV3 wins on 28x28 (launch cost),
# XLA about 2x on 150x150.
XLA_MIN_PIXELS = 64 * 64
KERNELS = ("auto", "op", "xla", "gather")


def tf_transform_batch(images, transforms, fill_mode: str = "nearest", cval: float = 0.0,
                       kernel: str = "auto"):
    """Bilinear warp of a float32 batch [B, H, W, C] by affine `transforms` [B, 8], scipy fill.

    kernel: "op" (TF's fused ImageProjectiveTransformV3, masked for `constant`; `wrap` needs a
    gather), "gather" (plain TF gathers), "xla" (the gather sampler compiled with XLA), or
    "auto" ("xla" for images of at least XLA_MIN_PIXELS pixels with a static size, else "op").
    """
    tf = _tf()
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    images = tf.convert_to_tensor(images)
    images = tf.cast(images, tf.float32) if images.dtype != tf.float32 else images
    transforms = tf.cast(transforms, tf.float32)
    if kernel == "auto":
        h, w = images.shape[1], images.shape[2]
        kernel = "xla" if h is not None and w is not None and h * w >= XLA_MIN_PIXELS else "op"
    if kernel == "xla":
        return _xla_gather_sample(fill_mode, float(cval))(images, transforms)
    if kernel == "gather" or fill_mode == "wrap":
        return _tf_gather_sample(images, transforms, fill_mode, cval)
    shape = tf.shape(images)
    h, w = shape[1], shape[2]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.stack([h, w]),
        fill_value=tf.constant(cval, tf.float32), interpolation="BILINEAR",
        fill_mode="NEAREST" if fill_mode == "constant" else fill_mode.upper())
    if fill_mode == "constant":
        # scipy: a sample point outside [0, n-1] is cval; inside, plain bilinear (no cval blend).
        ix, iy = _tf_sample_points(transforms, h, w)
        out = tf.where(_tf_inside(ix, iy, h, w)[..., None], out, tf.constant(cval, tf.float32))
    return out


def _tf_inside(ix, iy, h, w):
    tf = _tf()
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    return ((ix >= -EDGE_EPS) & (ix <= wf - 1 + EDGE_EPS)
            & (iy >= -EDGE_EPS) & (iy <= hf - 1 + EDGE_EPS))


def _tf_sample_points(transforms, h, w):
    tf = _tf()
    ys = tf.cast(tf.range(h), tf.float32)[None, :, None]
    xs = tf.cast(tf.range(w), tf.float32)[None, None, :]
    t = [transforms[:, i, None, None] for i in range(6)]
    return t[0] * xs + t[1] * ys + t[2], t[3] * xs + t[4] * ys + t[5]


def _tf_gather_sample(images, transforms, fill_mode, cval):
    """Bilinear sampling by gathers with scipy's fill modes (the twin of `_jax_sample`)."""
    tf = _tf()
    shape = tf.shape(images)
    b, h, w, c = shape[0], shape[1], shape[2], shape[3]
    hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
    ix, iy = _tf_sample_points(transforms, h, w)
    if fill_mode == "wrap":
        def wrap(v, nf):
            period = tf.maximum(nf - 1.0, 1.0)
            wrapped = v - period * tf.floor(v / period)
            v = tf.where((v < 0) | (v > nf - 1.0), wrapped, v)  # [0, n-1] itself is left alone
            return tf.where(nf > 1.0, v, tf.zeros_like(v))
        ix, iy = wrap(ix, wf), wrap(iy, hf)
    elif fill_mode in ("nearest", "constant"):
        inside = _tf_inside(ix, iy, h, w)
        ix, iy = tf.clip_by_value(ix, 0.0, wf - 1.0), tf.clip_by_value(iy, 0.0, hf - 1.0)
    x0, y0 = tf.floor(ix), tf.floor(iy)
    fx, fy = (ix - x0)[..., None], (iy - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    x1, y1 = x0 + 1, y0 + 1
    if fill_mode == "reflect":
        def refl(i, n):  # half-sample symmetric: -1 -> 0, n -> n - 1, period 2n
            i = tf.math.floormod(i, 2 * n)
            return tf.where(i >= n, 2 * n - 1 - i, i)
        x0, x1, y0, y1 = refl(x0, w), refl(x1, w), refl(y0, h), refl(y1, h)
    else:
        x0, x1 = tf.clip_by_value(x0, 0, w - 1), tf.clip_by_value(x1, 0, w - 1)
        y0, y1 = tf.clip_by_value(y0, 0, h - 1), tf.clip_by_value(y1, 0, h - 1)
    flat = tf.reshape(images, [-1, c])
    base = (tf.range(b) * (h * w))[:, None, None]

    def at(yy, xx):
        return tf.gather(flat, base + yy * w + xx)

    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    out = top * (1 - fy) + bottom * fy
    if fill_mode == "constant":
        out = tf.where(inside[..., None], out, tf.constant(cval, tf.float32))
    return out


_XLA_FNS: dict = {}


def _xla_gather_sample(fill_mode: str, cval: float):
    key = (fill_mode, cval)
    if key not in _XLA_FNS:
        tf = _tf()
        _XLA_FNS[key] = tf.function(lambda x, t: _tf_gather_sample(x, t, fill_mode, cval),
                                    jit_compile=True, autograph=False)
    return _XLA_FNS[key]


def apply_affine(image, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                 flip_horizontal=False, flip_vertical=False, fill_mode="nearest", cval=0.0,
                 kernel="auto"):
    """Keras' `apply_affine_transform` (channels last, order 1) in TF ops, then optional flips.

    `image` is HWC (or NHWC, every image with the same parameters); returns float32 tf.Tensor.
    """
    tf = _tf()
    x = tf.convert_to_tensor(image)
    single = x.shape.rank == 3
    if x.shape.rank not in (3, 4):
        raise ValueError(f"apply_affine: image must be HWC or NHWC, got shape {x.shape}")
    x = tf.cast(x[None] if single else x, tf.float32)
    shape = tf.shape(x)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    f = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    params = projective_params(f(theta), f(tx), f(ty), f(shear), f(zx), f(zy),
                               tf.cast(flip_horizontal, tf.bool), tf.cast(flip_vertical, tf.bool),
                               h, w, _TFMath(tf))
    t = tf.stack(list(params) + [tf.constant(0.0), tf.constant(0.0)])
    out = tf_transform_batch(x, tf.tile(t[None], [shape[0], 1]), fill_mode, cval, kernel)
    return out[0] if single else out


def sample_transform_params(config: AugmentConfig, batch_size, height, width, seed) -> dict:
    """Random parameters for a batch, as `ImageDataGenerator.get_random_transform` draws them.

    TF stateless ops: the same (config, shapes, seed) always give the same parameters.
    Returns float32 tensors [B] (bool for the flips): theta, tx, ty, shear, zx, zy, flips.
    """
    tf = _tf()
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=10)
    b = tf.reshape(tf.cast(batch_size, tf.int32), [1])

    def uni(i, lo, hi):
        return tf.random.stateless_uniform(b, seeds[i], minval=lo, maxval=hi, dtype=tf.float32)

    zeros = tf.zeros(b, tf.float32)
    theta = uni(0, -float(config.rotation_range), float(config.rotation_range)) if config.rotation_range else zeros
    # Keras: tx from height_shift_range (x rows), ty from width_shift_range (x columns).
    tx = _tf_shift(config.height_shift_range, height, b, seeds[1], seeds[2])
    ty = _tf_shift(config.width_shift_range, width, b, seeds[3], seeds[4])
    shear = uni(5, -float(config.shear_range), float(config.shear_range)) if config.shear_range else zeros
    lo, hi = config.zoom_bounds
    if lo == 1 and hi == 1:
        zx = zy = tf.ones(b, tf.float32)
    else:
        zx, zy = uni(6, lo, hi), uni(7, lo, hi)
    no = tf.zeros(b, tf.bool)
    fh = uni(8, 0.0, 1.0) < 0.5 if config.horizontal_flip else no
    fv = uni(9, 0.0, 1.0) < 0.5 if config.vertical_flip else no
    return dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy,
                flip_horizontal=fh, flip_vertical=fv)


def _tf_shift(r, size, b, seed_a, seed_b):
    tf = _tf()
    kind = shift_kind(r)
    if kind == "none":
        return tf.zeros(b, tf.float32)
    if kind == "uniform":
        v = tf.random.stateless_uniform(b, seed_a, minval=-float(r), maxval=float(r))
        return v * tf.cast(size, tf.float32) if r < 1 else v
    if kind == "int":
        v = tf.cast(tf.random.stateless_uniform(b, seed_a, minval=0, maxval=int(r), dtype=tf.int32), tf.float32)
    else:
        values = tf.constant([float(v) for v in r], tf.float32)
        i = tf.random.stateless_uniform(b, seed_a, minval=0, maxval=len(r), dtype=tf.int32)
        v = tf.gather(values, i)
    sign = tf.where(tf.random.stateless_uniform(b, seed_b) < 0.5, -1.0, 1.0)
    v = v * sign
    if max(r if kind == "choice" else [r]) < 1:
        v = v * tf.cast(size, tf.float32)
    return v


def make_tf_augment(config: AugmentConfig | str | None, kernel: str = "auto") -> Callable | None:
    """`fn(images [B,H,W,C] float32, seed int64[2]) -> images` for `ArrayPipeline(augment=...)`.

    Each image gets its own random transform (drawn as Keras draws them); same seed, same output.
    Returns None for no augmentation. `kernel`: see `tf_transform_batch`.
    """
    if isinstance(config, str) or config is None:
        config = parse_augment(config)
    if config is None or config.is_identity():
        return None
    tf = _tf()

    def augment(images, seed):
        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        b, h, w = shape[0], shape[1], shape[2]
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        p = sample_transform_params(config, b, hf, wf, seed)
        t = projective_params(p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
                              p["flip_horizontal"], p["flip_vertical"], hf, wf, _TFMath(tf))
        zeros = tf.zeros([b], tf.float32)
        transforms = tf.stack(list(t) + [zeros, zeros], axis=1)
        return tf_transform_batch(images, transforms, config.fill_mode, config.cval, kernel)

    augment = tf.autograph.experimental.do_not_convert(augment)  # plain graph code
    augment.config = config
    return augment
