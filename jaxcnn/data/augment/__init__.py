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

Modules: `config` (AugmentConfig, RECIPES, `--augment` parsing), `matrix` (Keras' matrix),
`tf_ops` (the tf.data road), `jax_ops` (the on-device road), `preview` (a PNG grid). Every
name is importable from `jaxcnn.data.augment` as before.
"""

from jaxcnn.data.augment.config import FILL_MODES, RECIPES, AugmentConfig, ShiftRange, parse_augment, shift_kind
from jaxcnn.data.augment.jax_ops import (
    jax_apply_affine,
    jax_sample_transform_params,
    jax_transform,
    make_jax_augment,
)
from jaxcnn.data.augment.matrix import keras_matrix, projective_params
from jaxcnn.data.augment.preview import save_augment_preview
from jaxcnn.data.augment.tf_ops import (
    KERNELS,
    XLA_MIN_PIXELS,
    apply_affine,
    make_tf_augment,
    sample_transform_params,
    tf_transform_batch,
)

__all__ = [
    "FILL_MODES",
    "KERNELS",
    "RECIPES",
    "XLA_MIN_PIXELS",
    "AugmentConfig",
    "ShiftRange",
    "apply_affine",
    "jax_apply_affine",
    "jax_sample_transform_params",
    "jax_transform",
    "keras_matrix",
    "make_jax_augment",
    "make_tf_augment",
    "parse_augment",
    "projective_params",
    "sample_transform_params",
    "save_augment_preview",
    "shift_kind",
    "tf_transform_batch",
]
