"""Random affine augmentation with Keras `ImageDataGenerator` semantics, in TensorFlow and in JAX.

Two roads, same transforms:

- `make_tf_augment(config)` -> `fn(images, seed)`: TensorFlow ops for the tf.data pipeline
  (`ArrayPipeline(augment=...)`), batched, stateless and reproducible from an int64[2] seed.
- `make_jax_augment(config)` -> `fn(images, key)`: pure JAX (`jax.random`, `vmap`), for the
  on-device road where the arrays never leave the accelerator.

`apply_affine` / `jax_apply_affine` are the deterministic transforms, with exactly the meaning of
Keras' `apply_affine_transform(x, theta, tx, ty, shear, zx, zy, row_axis=0, col_axis=1,
channel_axis=2, fill_mode, cval, order=1)` (scipy `ndimage.affine_transform`, bilinear). Keras
conventions kept on purpose, quirks included, so that results match it:

- The matrix is rotation @ shift @ shear @ zoom, centred with `transform_matrix_offset_center`;
  it maps an output pixel to the input point sampled (an inverse map). `theta` and `shear` are in
  degrees (so recipe B's `shear_range=0.2` is 0.2 degrees, as in Keras).
- `tx` moves the sampling point along columns and `ty` along rows, although
  `ImageDataGenerator` draws `tx` from `height_shift_range` (scaled by the row count) and `ty` from
  `width_shift_range` (scaled by the column count). For non-square images Keras also centres the
  column coordinate at `(h - 1) / 2` and the row coordinate at `(w - 1) / 2`. Both are Keras'
  behaviour and are reproduced; they only matter for unequal ranges or non-square images.
- Fill modes mean scipy's: `nearest` (edge pixel), `reflect` (d c b a | a b c d | d c b a),
  `constant` (every sample point outside [0, n-1] is `cval`; no blending with `cval` at the edge)
  and `wrap` (scipy's wrap: period n - 1, the first and last pixels overlap). TensorFlow's own
  CONSTANT and WRAP differ from scipy's at the border, so `constant` masks the fused op's result
  and `wrap` uses the gather sampler. Results agree with Keras to about 1e-6 everywhere, borders
  included, except where a sample point lands within float rounding of the edge (e.g. rotations
  by exact multiples of 90 degrees with `constant`/`wrap`): there Keras' float64 inside/outside
  decision and ours (float32; points within 1e-4 px of the edge count as inside) can differ.

TF kernels (`tf_transform_batch(kernel=...)`): TF's fused `ImageProjectiveTransformV3` for small
images, an XLA-compiled gather sampler for images of 64x64 pixels and more (about 2x faster on
150x150 on a 2-core CPU); both give the same results.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from jaxcnn.data.tfutil import import_tf

FILL_MODES = ("nearest", "constant", "reflect", "wrap")
# A sample point within this distance (pixels) of the image edge still counts as inside for `constant`
# (float32 coordinates vs Keras' float64 ones).
_EDGE_EPS = 1e-4

ShiftRange = float | int | Sequence[float]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """`ImageDataGenerator`'s geometric parameters, with its meanings.

    - rotation_range: degrees; theta ~ U(-r, r).
    - width_shift_range / height_shift_range: float < 1: fraction of the width / height,
      shift ~ U(-r, r) * size; float >= 1: pixels, U(-r, r); int n: pixels, an integer drawn
      from {0..n-1} with a random sign; a sequence: one of its values with a random sign
      (times the size when all values are < 1).
    - shear_range: degrees; shear ~ U(-r, r).
    - zoom_range: float z -> [1 - z, 1 + z], or (lo, hi); zx and zy drawn independently.
    - horizontal_flip / vertical_flip: each flipped with probability 1/2.
    - fill_mode: nearest | constant | reflect | wrap (scipy's meaning); cval for constant.
    """

    rotation_range: float = 0.0
    width_shift_range: ShiftRange = 0.0
    height_shift_range: ShiftRange = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"
    cval: float = 0.0

    def __post_init__(self):
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {self.fill_mode!r}")
        self.zoom_bounds  # validates zoom_range
        for name in ("width_shift_range", "height_shift_range"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.zoom_range, list):
            object.__setattr__(self, "zoom_range", tuple(self.zoom_range))

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        z = self.zoom_range
        if isinstance(z, (int, float)) and not isinstance(z, bool):
            return (1.0 - z, 1.0 + z)
        if isinstance(z, (tuple, list)) and len(z) == 2:
            return (float(z[0]), float(z[1]))
        raise ValueError(f"zoom_range must be a float or a pair (lo, hi), got {z!r}")

    def is_identity(self) -> bool:
        return not (self.rotation_range or _shift_active(self.width_shift_range)
                    or _shift_active(self.height_shift_range) or self.shear_range
                    or self.zoom_bounds != (1.0, 1.0) or self.horizontal_flip or self.vertical_flip)


RECIPES: dict[str, AugmentConfig] = {
    # Tutorial A: rotation up to 10 degrees, zoom 0.1, width and height shift 0.1.
    "A": AugmentConfig(rotation_range=10, zoom_range=0.1, width_shift_range=0.1, height_shift_range=0.1),
    # Tutorial B: rotation 40, shifts 0.2, shear 0.2 (degrees, Keras' unit), zoom 0.2, flip.
    "B": AugmentConfig(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                       shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest"),
}


def parse_augment(spec: str | None) -> AugmentConfig | None:
    """A CLI `--augment` value: "A", "B", "none", "k=v,k=v" or "B,k=v" (a recipe with overrides).

    Values are Python literals (`10`, `0.1`, `true`); pairs for zoom_range as `0.8:1.2`.
    `int` vs `float` matters for shifts, as in Keras (`5` pixels drawn from integers, `5.0` uniform).
    """
    if spec is None or spec.strip().lower() in ("", "none", "off", "false"):
        return None
    fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    base, overrides = {}, {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" not in part:
            if part.upper() not in RECIPES:
                raise ValueError(f"--augment: unknown recipe {part!r}; known: {', '.join(RECIPES)}, none")
            base = dataclasses.asdict(RECIPES[part.upper()])
            continue
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in fields:
            raise ValueError(f"--augment: unknown parameter {key!r}; known: {', '.join(sorted(fields))}")
        overrides[key] = _parse_value(key, value)
    return AugmentConfig(**{**base, **overrides})


def _parse_value(key: str, value: str):
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if ":" in value:
        return tuple(float(v) for v in value.split(":"))
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        if key == "fill_mode":
            return value
        raise ValueError(f"--augment: cannot parse {key}={value!r}") from None


def _shift_active(r) -> bool:
    if isinstance(r, (tuple, list)):
        return len(r) > 0
    return bool(r)


def _shift_kind(r) -> str:
    """How Keras draws a shift from range r: 'none', 'uniform', 'int' or 'choice'."""
    if not _shift_active(r):
        return "none"
    if isinstance(r, (tuple, list, np.ndarray)):
        return "choice"
    if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
        return "int"
    return "uniform"


def keras_matrix(theta, tx, ty, shear, zx, zy, h, w, xp=np):
    """Keras' centred 3x3 matrix, batched over the leading dims of the parameters.

    Row 0 acts on columns (x), row 1 on rows (y): `[input_x, input_y, 1] = M @ [x, y, 1]`.
    `xp` is numpy, jax.numpy or a TF-like module with the same few functions.
    """
    t, s = theta * (math.pi / 180.0), shear * (math.pi / 180.0)
    c, sn = xp.cos(t), xp.sin(t)
    ss, cs = xp.sin(s), xp.cos(s)
    # R @ T @ Sh @ Z in closed form (rows 0 and 1; row 2 is [0, 0, 1]).
    m00 = c * zx
    m01 = (-c * ss - sn * cs) * zy
    m02 = c * tx - sn * ty
    m10 = sn * zx
    m11 = (-sn * ss + c * cs) * zy
    m12 = sn * tx + c * ty
    # transform_matrix_offset_center(M, h, w): o_x = h/2 - 0.5 (sic, Keras), o_y = w/2 - 0.5.
    ox, oy = h / 2.0 - 0.5, w / 2.0 - 0.5
    m02 = m02 + ox - m00 * ox - m01 * oy
    m12 = m12 + oy - m10 * ox - m11 * oy
    return m00, m01, m02, m10, m11, m12


def projective_params(theta, tx, ty, shear, zx, zy, flip_horizontal, flip_vertical, h, w, xp=np):
    """The 8 `ImageProjectiveTransformV3` parameters (output (x, y) -> input point), flips folded in.

    A flip of the transformed image is a flip of the output coordinates: x -> w - 1 - x.
    """
    m00, m01, m02, m10, m11, m12 = keras_matrix(theta, tx, ty, shear, zx, zy, h, w, xp)
    fh = xp.where(flip_horizontal, -1.0, 1.0) if xp is not np else (-1.0 if flip_horizontal else 1.0)
    fv = xp.where(flip_vertical, -1.0, 1.0) if xp is not np else (-1.0 if flip_vertical else 1.0)
    dx = (1.0 - fh) / 2.0 * (w - 1)  # 0, or w - 1 when flipped
    dy = (1.0 - fv) / 2.0 * (h - 1)
    return (fh * m00, fv * m01, m02 + m00 * dx + m01 * dy,
            fh * m10, fv * m11, m12 + m10 * dx + m11 * dy)


# ----------------------------------------------------------------------------------------------
# TensorFlow
# ----------------------------------------------------------------------------------------------


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
    return ((ix >= -_EDGE_EPS) & (ix <= wf - 1 + _EDGE_EPS)
            & (iy >= -_EDGE_EPS) & (iy <= hf - 1 + _EDGE_EPS))


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
    kind = _shift_kind(r)
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


# ----------------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------------


def _jax_sample(image, ix, iy, fill_mode: str, cval: float):
    """Bilinear sample of HWC `image` at float points (ix, iy) [H', W'], scipy fill semantics."""
    import jax.numpy as jnp

    h, w = image.shape[0], image.shape[1]
    if fill_mode == "wrap":
        def wrap(c, n):
            if n <= 1:
                return jnp.zeros_like(c)
            wrapped = c - (n - 1) * jnp.floor(c / (n - 1))
            return jnp.where((c < 0) | (c > n - 1), wrapped, c)  # [0, n-1] itself is left alone
        ix, iy = wrap(ix, w), wrap(iy, h)
    elif fill_mode in ("nearest", "constant"):
        inside = ((ix >= -_EDGE_EPS) & (ix <= w - 1 + _EDGE_EPS)
                  & (iy >= -_EDGE_EPS) & (iy <= h - 1 + _EDGE_EPS))
        ix, iy = jnp.clip(ix, 0, w - 1), jnp.clip(iy, 0, h - 1)
    x0, y0 = jnp.floor(ix), jnp.floor(iy)
    fx, fy = (ix - x0)[..., None], (iy - y0)[..., None]
    x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
    x1, y1 = x0 + 1, y0 + 1
    if fill_mode == "reflect":
        # Half-sample symmetric extension of the pixel grid: -1 -> 0, n -> n - 1, period 2n.
        def refl(i, n):
            i = jnp.mod(i, 2 * n)
            return jnp.where(i >= n, 2 * n - 1 - i, i)
        x0, x1, y0, y1 = refl(x0, w), refl(x1, w), refl(y0, h), refl(y1, h)
    else:
        x0, x1 = jnp.clip(x0, 0, w - 1), jnp.clip(x1, 0, w - 1)
        y0, y1 = jnp.clip(y0, 0, h - 1), jnp.clip(y1, 0, h - 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    out = top * (1 - fy) + bottom * fy
    if fill_mode == "constant":
        out = jnp.where(inside[..., None], out, jnp.asarray(cval, out.dtype))
    return out


def jax_transform(image, params6, fill_mode: str = "nearest", cval: float = 0.0):
    """Warp one HWC image by the 6 affine `projective_params` (output (x, y) -> input point)."""
    import jax.numpy as jnp

    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    h, w = image.shape[0], image.shape[1]
    ys = jnp.arange(h, dtype=jnp.float32)[:, None]
    xs = jnp.arange(w, dtype=jnp.float32)[None, :]
    t = [jnp.asarray(p, jnp.float32) for p in params6]
    ix = t[0] * xs + t[1] * ys + t[2]
    iy = t[3] * xs + t[4] * ys + t[5]
    return _jax_sample(image.astype(jnp.float32), ix, iy, fill_mode, cval)


def jax_apply_affine(image, theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0,
                     flip_horizontal=False, flip_vertical=False, fill_mode="nearest", cval=0.0):
    """`apply_affine` in JAX for one HWC image (jit-able; parameters may be traced scalars)."""
    import jax.numpy as jnp

    if image.ndim != 3:
        raise ValueError(f"jax_apply_affine: image must be HWC, got shape {image.shape}")
    h, w = float(image.shape[0]), float(image.shape[1])
    f = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    params = projective_params(f(theta), f(tx), f(ty), f(shear), f(zx), f(zy),
                               jnp.asarray(flip_horizontal, bool), jnp.asarray(flip_vertical, bool),
                               h, w, jnp)
    return jax_transform(image, params, fill_mode, cval)


def jax_sample_transform_params(config: AugmentConfig, key, batch_size: int, height: int, width: int) -> dict:
    """`sample_transform_params` with `jax.random` (same distributions, a different stream)."""
    import jax
    import jax.numpy as jnp

    keys = jax.random.split(key, 10)
    b = (batch_size,)

    def uni(i, lo, hi):
        return jax.random.uniform(keys[i], b, jnp.float32, lo, hi)

    zeros = jnp.zeros(b, jnp.float32)
    theta = uni(0, -config.rotation_range, config.rotation_range) if config.rotation_range else zeros
    tx = _jax_shift(config.height_shift_range, height, b, keys[1], keys[2])
    ty = _jax_shift(config.width_shift_range, width, b, keys[3], keys[4])
    shear = uni(5, -config.shear_range, config.shear_range) if config.shear_range else zeros
    lo, hi = config.zoom_bounds
    if lo == 1 and hi == 1:
        zx = zy = jnp.ones(b, jnp.float32)
    else:
        zx, zy = uni(6, lo, hi), uni(7, lo, hi)
    no = jnp.zeros(b, bool)
    fh = uni(8, 0.0, 1.0) < 0.5 if config.horizontal_flip else no
    fv = uni(9, 0.0, 1.0) < 0.5 if config.vertical_flip else no
    return dict(theta=theta, tx=tx, ty=ty, shear=shear, zx=zx, zy=zy,
                flip_horizontal=fh, flip_vertical=fv)


def _jax_shift(r, size, b, key_a, key_b):
    import jax
    import jax.numpy as jnp

    kind = _shift_kind(r)
    if kind == "none":
        return jnp.zeros(b, jnp.float32)
    if kind == "uniform":
        v = jax.random.uniform(key_a, b, jnp.float32, -r, r)
        return v * size if r < 1 else v
    if kind == "int":
        v = jax.random.randint(key_a, b, 0, int(r)).astype(jnp.float32)
    else:
        v = jnp.asarray([float(x) for x in r], jnp.float32)[jax.random.randint(key_a, b, 0, len(r))]
    v = v * jnp.where(jax.random.uniform(key_b, b) < 0.5, -1.0, 1.0)
    if max(r if kind == "choice" else [r]) < 1:
        v = v * size
    return v


def make_jax_augment(config: AugmentConfig | str | None) -> Callable | None:
    """`fn(images [B,H,W,C], key) -> float32 images`: the on-device twin of `make_tf_augment`."""
    import jax
    import jax.numpy as jnp

    if isinstance(config, str) or config is None:
        config = parse_augment(config)
    if config is None or config.is_identity():
        return None

    def augment(images, key):
        b, h, w = images.shape[0], images.shape[1], images.shape[2]
        p = jax_sample_transform_params(config, key, b, h, w)
        params = projective_params(p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
                                   p["flip_horizontal"], p["flip_vertical"], float(h), float(w), jnp)
        params = jnp.stack(params, axis=1)
        warp = lambda img, t: jax_transform(img, tuple(t[i] for i in range(6)),  # noqa: E731
                                            config.fill_mode, config.cval)
        return jax.vmap(warp)(images, params)

    augment.config = config
    return augment


# ----------------------------------------------------------------------------------------------
# Preview
# ----------------------------------------------------------------------------------------------


def save_augment_preview(images, config: AugmentConfig | str, path: str, *, n_augmented: int = 7,
                         seed: int = 0, titles: Sequence[str] | None = None, dpi: int = 80) -> str:
    """A PNG grid: one row per input image, the original then `n_augmented` augmented copies."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tf = _tf()
    cfg = parse_augment(config) if isinstance(config, str) else config
    fn = make_tf_augment(cfg)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    rows = []
    for k in range(n_augmented):
        out = fn(tf.constant(x), tf.constant([seed, k], tf.int64)) if fn else tf.constant(x)
        rows.append(np.clip(out.numpy(), 0.0, 1.0))
    n = len(x)
    fig, axes = plt.subplots(n, n_augmented + 1, figsize=(1.3 * (n_augmented + 1), 1.3 * n), squeeze=False)
    for i in range(n):
        for j in range(n_augmented + 1):
            img = x[i] if j == 0 else rows[j - 1][i]
            ax = axes[i, j]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title("original" if j == 0 else f"aug {j}", fontsize=8)
            if j == 0 and titles is not None:
                ax.set_ylabel(titles[i], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
