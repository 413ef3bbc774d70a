"""ResNet50 in `keras.applications.ResNet50`'s layout and layer names (v1, stride on the 1x1 conv).

Names follow Keras so converted weights map one to one: conv1_conv, conv1_bn, then
conv{2..5}_block{i}_{0,1,2,3}_{conv,bn} (`_0_` is the projection shortcut of each stage's first
block), predictions. BatchNorm uses Keras ResNet's epsilon 1.001e-5 and momentum 0.99.
Inputs go through `preprocess_input` ("caffe" mode, the same as VGG16's).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models.registry import register_model
from jaxcnn.models.layers import Conv, Dense, glorot_uniform
from jaxcnn.models.imagenet import global_pool, preprocess_input  # noqa: F401  (same "caffe" mode)

BN_EPSILON = 1.001e-5
# (stage name, bottleneck filters, blocks, stride of the first block)
RESNET50_STAGES = (("conv2", 64, 3, 1), ("conv3", 128, 4, 2), ("conv4", 256, 6, 2),
                   ("conv5", 512, 3, 2))


def _conv_bn(parent_name: str, x, filters, kernel, stride, padding, train, dtype, axis_name=None):
    x = Conv(filters, (kernel, kernel), strides=(stride, stride), padding=padding,
             kernel_init=glorot_uniform, dtype=dtype, name=f"{parent_name}_conv")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=BN_EPSILON,
                        dtype=dtype, axis_name=axis_name, name=f"{parent_name}_bn")(x)


@register_model("resnet50")
class ResNet50(nn.Module):
    """ResNet50 v1 (He et al. 2015) as Keras builds it.

    include_top: global average pool + `predictions` (num_classes) logits; Keras applies a
      softmax there, we leave it to the loss. Without it, returns the conv5 map or its
      global `pooling` ("avg" / "max").
    output: "logits" or "features" (the pooled 2048-vector, with include_top).
    train: BatchNorm uses batch statistics and updates `batch_stats` (mutable) when True.
    """

    include_top: bool = True
    pooling: str | None = None
    num_classes: int = 1000
    output: str = "logits"
    dtype: Any = None
    # Set by the pmap strategy: batch statistics over the global batch (jaxcnn.parallel).
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.output not in ("logits", "features"):
            raise ValueError(f"output must be 'logits' or 'features', got {self.output!r}")
        conv_bn = functools.partial(_conv_bn, train=train, dtype=self.dtype, axis_name=self.bn_axis_name)
        x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))  # conv1_pad
        x = nn.relu(conv_bn("conv1", x, 64, 7, 2, "VALID"))
        x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # pool1_pad (zeros; inputs are >= 0)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")  # pool1_pool
        for stage, filters, blocks, stride in RESNET50_STAGES:
            for b in range(1, blocks + 1):
                name = f"{stage}_block{b}"
                s = stride if b == 1 else 1
                if b == 1:
                    shortcut = conv_bn(f"{name}_0", x, 4 * filters, 1, s, "VALID")
                else:
                    shortcut = x
                y = nn.relu(conv_bn(f"{name}_1", x, filters, 1, s, "VALID"))
                y = nn.relu(conv_bn(f"{name}_2", y, filters, 3, 1, "SAME"))
                y = conv_bn(f"{name}_3", y, 4 * filters, 1, 1, "VALID")
                x = nn.relu(shortcut + y)
        if not self.include_top:
            return global_pool(x, self.pooling)
        x = jnp.mean(x, axis=(1, 2))  # avg_pool
        if self.output == "features":
            return x
        return Dense(self.num_classes, dtype=self.dtype, name="predictions")(x)
