"""VGG16 in Keras' layout and layer names, plus the SPEC N10-N12 transfer models.

The layer names match `keras.applications.VGG16` and the published weight files
(`block1_conv1` ... `block5_conv3`, `fc1`, `fc2`, `predictions`), so converted Keras weights
(`jaxcnn.weights.convert_keras_h5`) drop straight into the params tree.

Inputs are NHWC images already passed through `preprocess_input` (Keras "caffe" mode: BGR,
ImageNet mean subtracted, no scaling). The modules return logits: Keras' `predictions` layer
applies a softmax, ours leaves it to the loss.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxcnn.models import register_model
from jaxcnn.models.layers import Conv, Dense, flatten, glorot_uniform, max_pool

# ImageNet channel means in BGR order, as `keras.applications.imagenet_utils` ("caffe" mode).
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)

# (block, number of convs, filters) of the VGG16 conv base.
VGG16_BLOCKS: Sequence[tuple[int, int, int]] = (
    (1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


def preprocess_input(x):
    """`keras.applications.vgg16.preprocess_input` ("caffe" mode) for NHWC RGB in [0, 255].

    RGB -> BGR, then subtract the ImageNet mean per channel; no scaling. Works on jax arrays
    (returns jax) and on numpy arrays (returns float32 numpy), like Keras for both.
    """
    if isinstance(x, np.ndarray):
        x = x.astype(np.float32)[..., ::-1]
        return x - np.asarray(IMAGENET_MEAN_BGR, np.float32)
    x = jnp.asarray(x, jnp.float32)[..., ::-1]
    return x - jnp.asarray(IMAGENET_MEAN_BGR, jnp.float32)


def _global_pool(x, pooling: str | None):
    if pooling is None:
        return x
    if pooling == "avg":
        return jnp.mean(x, axis=(1, 2))
    if pooling == "max":
        return jnp.max(x, axis=(1, 2))
    raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")


@register_model("vgg16")
class VGG16(nn.Module):
    """VGG16 (Simonyan & Zisserman), Keras `applications.VGG16` layout.

    include_top: add fc1 4096, fc2 4096, predictions `num_classes` (needs 224x224 inputs,
      since Flatten feeds 7*7*512 values to fc1). Without it the module is the conv base and
      returns the block5_pool map, or its global `pooling` ("avg" / "max").
    output: "logits" (default) or "features": with include_top, the fc2 activations instead
      of the predictions' logits; without include_top both give the (pooled) base output.
    dtype: computation dtype (e.g. jnp.bfloat16); params stay float32.
    """

    include_top: bool = True
    pooling: str | None = None
    num_classes: int = 1000
    output: str = "logits"
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.output not in ("logits", "features"):
            raise ValueError(f"output must be 'logits' or 'features', got {self.output!r}")
        for block, n_convs, filters in VGG16_BLOCKS:
            for i in range(1, n_convs + 1):
                x = Conv(filters, (3, 3), padding="SAME", kernel_init=glorot_uniform,
                         dtype=self.dtype, name=f"block{block}_conv{i}")(x)
                x = nn.relu(x)
            x = max_pool(x)
        if not self.include_top:
            return _global_pool(x, self.pooling)
        x = flatten(x)
        x = nn.relu(Dense(4096, dtype=self.dtype, name="fc1")(x))
        x = nn.relu(Dense(4096, dtype=self.dtype, name="fc2")(x))
        if self.output == "features":
            return x
        # Keras applies softmax in `predictions`; we return its logits.
        return Dense(self.num_classes, dtype=self.dtype, name="predictions")(x)


class TransferHead(nn.Module):
    """The tutorials' heads on a conv base's feature map (SPEC N10-N12).

    "a": Flatten, Dense 256 ReLU, Dropout .5, Dense num_classes          (N10)
    "b": Flatten, Dense 256 ReLU, Dropout .5, Dense 1 (one binary logit) (N11)
    "c": GlobalAveragePool, Dense 1024 ReLU, Dense num_classes           (N12)

    Usable on its own, on features precomputed by the frozen base (`jaxcnn.transfer.extract_features`).
    """

    kind: str = "a"
    num_classes: int = 10
    dtype: Any = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.kind in ("a", "b"):
            x = flatten(x)
            x = nn.relu(Dense(256, dtype=self.dtype, name="dense1")(x))
            x = nn.Dropout(0.5, deterministic=not train)(x)
            out = 1 if self.kind == "b" else self.num_classes
            return Dense(out, dtype=self.dtype, name="logits")(x)
        if self.kind == "c":
            x = jnp.mean(x, axis=(1, 2)) if x.ndim == 4 else x
            x = nn.relu(Dense(1024, dtype=self.dtype, name="dense1")(x))
            return Dense(self.num_classes, dtype=self.dtype, name="logits")(x)
        raise ValueError(f"head must be 'a', 'b' or 'c', got {self.kind!r}")


def _make_base(name: str, dtype):
    if name == "vgg16":
        return VGG16(include_top=False, dtype=dtype, name="base")
    if name == "resnet50":
        from jaxcnn.models.resnet import ResNet50
        return ResNet50(include_top=False, dtype=dtype, name="base")
    raise ValueError(f"base must be 'vgg16' or 'resnet50', got {name!r}")


class TransferModel(nn.Module):
    """A pretrained conv base (include_top=False) under params["base"], a new head under params["head"].

    The split makes freezing by prefix simple (`jaxcnn.transfer.make_transfer_optimizer`).
    A base with BatchNorm (ResNet50) always runs in inference mode (running statistics, never
    updated), as Keras does for a frozen base and recommends when fine-tuning one.

    preprocess: None when inputs are already `preprocess_input`-ed; "caffe" for RGB pixels in
      [0, 255]; "caffe_unit" for RGB in [0, 1] (pixels / 255, as jaxcnn's datasets give them).
    """

    base_name: str = "vgg16"
    head: str = "a"
    num_classes: int = 10
    dtype: Any = None
    preprocess: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.preprocess == "caffe_unit":
            x = preprocess_input(x * 255.0)
        elif self.preprocess == "caffe":
            x = preprocess_input(x)
        elif self.preprocess is not None:
            raise ValueError(f"preprocess must be None, 'caffe' or 'caffe_unit', got {self.preprocess!r}")
        x = _make_base(self.base_name, self.dtype)(x, train=False)
        return TransferHead(self.head, self.num_classes, self.dtype, name="head")(x, train=train)


@register_model("vgg16_transfer_a")
def vgg16_transfer_a(num_classes: int = 10, **kw):
    """N10: VGG16 base, Flatten, Dense 256, Dropout .5, Dense num_classes."""
    return TransferModel("vgg16", "a", num_classes, **kw)


@register_model("vgg16_transfer_b")
def vgg16_transfer_b(num_classes: int = 1, **kw):
    """N11: VGG16 base, Flatten, Dense 256, Dropout .5, one binary logit."""
    return TransferModel("vgg16", "b", num_classes, **kw)


@register_model("vgg16_transfer_c")
def vgg16_transfer_c(num_classes: int = 10, **kw):
    """N12: VGG16 base, global average pool, Dense 1024, Dense num_classes."""
    return TransferModel("vgg16", "c", num_classes, **kw)
