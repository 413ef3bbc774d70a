"""VGG16 in Keras' layout and layer names (the tutorials' N10-N12 transfer models are in `transfer`).

The layer names match `keras.applications.VGG16` and the published weight files
(`block1_conv1` ... `block5_conv3`, `fc1`, `fc2`, `predictions`), so converted Keras weights
(`jaxcnn.keras.convert_keras_h5`) drop straight into the params tree.

Inputs are NHWC images already passed through `preprocess_input` (Keras "caffe" mode: BGR,
ImageNet mean subtracted, no scaling). The modules return logits: Keras' `predictions` layer
applies a softmax, ours leaves it to the loss.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn

from jaxcnn.models.registry import register_model
from jaxcnn.models.imagenet import IMAGENET_MEAN_BGR, global_pool, preprocess_input  # noqa: F401
from jaxcnn.models.layers import Conv, Dense, flatten, glorot_uniform, max_pool

# (block, number of convs, filters) of the VGG16 conv base.
VGG16_BLOCKS: Sequence[tuple[int, int, int]] = (
    (1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))


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
            return global_pool(x, self.pooling)
        x = flatten(x)
        x = nn.relu(Dense(4096, dtype=self.dtype, name="fc1")(x))
        x = nn.relu(Dense(4096, dtype=self.dtype, name="fc2")(x))
        if self.output == "features":
            return x
        # Keras applies softmax in `predictions`; we return its logits.
        return Dense(self.num_classes, dtype=self.dtype, name="predictions")(x)
