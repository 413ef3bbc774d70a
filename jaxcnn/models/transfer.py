"""Transfer models (N10-N12, tutorials A-C): a Keras-layout conv base with a new head, on any backbone.

Above both backbones (`vgg`, `resnet`), so neither imports the other. The registered variants
are `functools.partial`s of `TransferModel`, one per (base, head) pair.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models.registry import register_model
from jaxcnn.models.imagenet import preprocess_input
from jaxcnn.models.layers import Dense, flatten
from jaxcnn.models.resnet import ResNet50
from jaxcnn.models.vgg import VGG16

BASES = {"vgg16": VGG16, "resnet50": ResNet50}


class TransferHead(nn.Module):
    """The tutorials' heads on a conv base's feature map (N10-N12).

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
        if self.base_name not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base_name!r}")
        x = BASES[self.base_name](include_top=False, dtype=self.dtype, name="base")(x, train=False)
        return TransferHead(self.head, self.num_classes, self.dtype, name="head")(x, train=train)


# N10: VGG16 base, Flatten, Dense 256, Dropout .5, Dense num_classes.
vgg16_transfer_a = register_model("vgg16_transfer_a")(
    functools.partial(TransferModel, base_name="vgg16", head="a", num_classes=10))
# N11: VGG16 base, Flatten, Dense 256, Dropout .5, one binary logit.
vgg16_transfer_b = register_model("vgg16_transfer_b")(
    functools.partial(TransferModel, base_name="vgg16", head="b", num_classes=1))
# N12: VGG16 base, global average pool, Dense 1024, Dense num_classes.
vgg16_transfer_c = register_model("vgg16_transfer_c")(
    functools.partial(TransferModel, base_name="vgg16", head="c", num_classes=10))
# Tutorial A's exercise: the same heads on a ResNet50 base.
resnet50_transfer_a = register_model("resnet50_transfer_a")(
    functools.partial(TransferModel, base_name="resnet50", head="a", num_classes=10))
resnet50_transfer_c = register_model("resnet50_transfer_c")(
    functools.partial(TransferModel, base_name="resnet50", head="c", num_classes=10))
