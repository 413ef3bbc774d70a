"""The tutorials' small networks (SPEC N1-N9) as pure linen modules with Keras defaults.

All take NHWC float inputs and return logits; softmax/sigmoid lives in the loss.
"""

from __future__ import annotations

import flax.linen as nn

from jaxcnn.models import register_model
from jaxcnn.models.layers import Conv, Dense, flatten, max_pool


@register_model("mnist_cnn")
class MnistCNN(nn.Module):
    """N1: C32 P C64 P F D64 -> classes (121,930 parameters at 28x28x1, 10 classes)."""

    num_classes: int = 10
    dense_units: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(Conv(32, (3, 3), name="conv1")(x))
        x = max_pool(x)
        x = nn.relu(Conv(64, (3, 3), name="conv2")(x))
        x = max_pool(x)
        x = flatten(x)
        x = nn.relu(Dense(self.dense_units, name="dense1")(x))
        return Dense(self.num_classes, name="logits")(x)
