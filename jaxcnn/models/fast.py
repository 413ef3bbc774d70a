"""Networks of the record-style recipes (jaxcnn.speedrun): `mnist_fast` and `airbench` (CIFAR-10).

Both use BatchNorm without the affine scale (scale fixed at 1, only the shift trains), which lets
the learning rate be high from the first step, and end in a global max pool and a bias-free dense
layer scaled down (`logit_scale`), so the initial logits are small.

`airbench` follows the published airbench94 network (Keller Jordan, cifar10-airbench, 2024): a
frozen 2x2 "whitening" convolution (24 filters: the +/- eigenvectors of the training patches'
covariance, set by `jaxcnn.speedrun.whitening_kernel`), GELU, three conv groups (conv, max pool,
BN, GELU, conv, BN, GELU) of widths 64/256/256 with identity ("dirac") initialization of the
first filters, a 3x3 max pool, dense 10 x 1/9. Inputs are NHWC in [0, 1]; the CIFAR-10 mean/std
normalization happens inside.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.registry import register_model
from jaxcnn.models.layers import conv_general_dilated, flatten, max_pool

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def torch_default_init(key, shape, dtype=jnp.float32):
    """PyTorch's default conv/linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (the peers use it too)."""
    bound = 1.0 / math.sqrt(math.prod(shape[:-1]))
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def dirac_init(key, shape, dtype=jnp.float32):
    """The default init, with the first min(in, out) filters replaced by identities (airbench)."""
    kernel = torch_default_init(key, shape, dtype)
    kh, kw, cin, cout = shape
    n = min(cin, cout)
    eye = jnp.zeros((kh, kw, n, n), dtype).at[kh // 2, kw // 2].set(jnp.eye(n, dtype=dtype))
    return kernel.at[:, :, :n, :n].set(eye)


FastConv = functools.partial(nn.Conv, use_bias=False, conv_general_dilated=conv_general_dilated)
# Scale fixed at 1; flax's momentum is the weight of the old running value (torch's 1 - momentum).
ShiftNorm = functools.partial(nn.BatchNorm, use_scale=False, use_bias=True)


@register_model("mnist_fast")
class MnistFast(nn.Module):
    """Three conv-BN-ReLU-pool stages (VALID 3x3 convs), global max, dense x `logit_scale`."""

    num_classes: int = 10
    widths: Sequence[int] = (16, 32, 64)
    bn_momentum: float = 0.9
    logit_scale: float = 0.125
    # Set by the pmap strategy: batch statistics over the global batch (jaxcnn.parallel).
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        for i, width in enumerate(self.widths):
            x = FastConv(width, (3, 3), padding="VALID", kernel_init=torch_default_init, name=f"conv{i + 1}")(x)
            x = ShiftNorm(momentum=self.bn_momentum, epsilon=1e-5, use_running_average=not train,
                          axis_name=self.bn_axis_name, name=f"norm{i + 1}")(x)
            x = nn.relu(x)
            x = max_pool(x) if i < len(self.widths) - 1 else jnp.max(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, use_bias=False, kernel_init=torch_default_init, name="logits")(flatten(x))
        return x * self.logit_scale


class ConvGroup(nn.Module):
    width: int
    bn_momentum: float
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
        norm = functools.partial(ShiftNorm, momentum=self.bn_momentum, epsilon=1e-12, use_running_average=not train,
                                 axis_name=self.bn_axis_name)
        x = FastConv(self.width, (3, 3), padding="SAME", kernel_init=dirac_init, name="conv1")(x)
        x = nn.gelu(norm(name="norm1")(max_pool(x)), approximate=False)
        x = FastConv(self.width, (3, 3), padding="SAME", kernel_init=dirac_init, name="conv2")(x)
        return nn.gelu(norm(name="norm2")(x), approximate=False)


@register_model("airbench")
class Airbench(nn.Module):
    """airbench94's network; `whiten` is set from data before training and stays frozen."""

    num_classes: int = 10
    widths: Sequence[int] = (64, 256, 256)
    bn_momentum: float = 0.6
    logit_scale: float = 1 / 9
    mean: Sequence[float] = CIFAR10_MEAN
    std: Sequence[float] = CIFAR10_STD
    # Set by the pmap strategy: batch statistics over the global batch (jaxcnn.parallel).
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = (x - jnp.asarray(self.mean, x.dtype)) / jnp.asarray(self.std, x.dtype)
        channels = x.shape[-1]
        x = nn.Conv(2 * channels * 4, (2, 2), padding="VALID", use_bias=True, kernel_init=torch_default_init,
                    conv_general_dilated=conv_general_dilated, name="whiten")(x)
        x = nn.gelu(x, approximate=False)
        for i, width in enumerate(self.widths):
            x = ConvGroup(width, self.bn_momentum, self.bn_axis_name, name=f"block{i + 1}")(x, train)
        x = max_pool(x, 3)
        x = nn.Dense(self.num_classes, use_bias=False, kernel_init=torch_default_init, name="logits")(flatten(x))
        return x * self.logit_scale
