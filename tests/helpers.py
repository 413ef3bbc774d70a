"""Small models and helpers shared by several test files (imported as `tests.helpers`)."""

import flax.linen as nn

from jaxcnn.models.layers import Conv, Dense, flatten, max_pool


class Tiny(nn.Module):
    """One 4-filter conv, a pool and a dense layer: trains in milliseconds on MNIST-sized images."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = max_pool(nn.relu(Conv(4, (3, 3), name="conv")(x)))
        return Dense(self.num_classes, name="out")(flatten(x))
