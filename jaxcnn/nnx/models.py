"""The registered networks as NNX modules: a native port of N1's family, the bridge for the rest.

    model = get_model("mnist_cnn", api="nnx")                  # native nnx.Module (MnistCNN below)
    model = get_model("bn_cnn_binary", api="nnx")              # the linen network through ToNNX
    model = get_model("vgg16", api="nnx", input_shape=(64, 64, 3), seed=1)

Both hold their variables in the linen network's layout (`conv1/kernel`, `bn1/mean`, ...), so
`jaxcnn.nnx.load_variables(model, linen_variables)` and `variables_of(model)` convert a trained
network either way unchanged. NNX modules know their shapes at construction: `input_shape`
defaults to the network's tutorial input (`TUTORIAL_INPUT_SHAPES`), else must be given.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxcnn.models import cnn
from jaxcnn.models.layers import conv_general_dilated, flatten, glorot_uniform, max_pool
from jaxcnn.models.registry import get_model, is_import_path, register_api, resolve_import_path

def _conv(lhs, rhs, *args, out_sharding=None, **kwargs):
    """jaxcnn's convolution (im2col on CPU) for nnx.Conv, which also passes `out_sharding`."""
    if out_sharding is not None:
        return lax.conv_general_dilated(lhs, rhs, *args, out_sharding=out_sharding, **kwargs)
    return conv_general_dilated(lhs, rhs, *args, **kwargs)


# Keras defaults, as jaxcnn.models.layers gives linen: glorot-uniform kernels, zero biases, VALID
# convolutions through the same (im2col on CPU) convolution.
Conv = functools.partial(nnx.Conv, padding="VALID", kernel_init=glorot_uniform, bias_init=nnx.initializers.zeros,
                         conv_general_dilated=_conv)
Linear = functools.partial(nnx.Linear, kernel_init=glorot_uniform, bias_init=nnx.initializers.zeros)

# Input shapes of networks without a tutorial shape in jaxcnn.models.cnn.
DEFAULT_INPUT_SHAPES = {"mnist_fast": (28, 28, 1), "airbench": (32, 32, 3)}


class MnistCNN(nnx.Module):
    """N1 in NNX: C32 P C64 P F D64 -> classes, the linen `jaxcnn.models.MnistCNN` layer for layer.

    Same fields (`conv_dropout`/`dense_dropout` give N2, `dense_units=128` N8) plus
    `input_shape` (H, W, C), which fixes the dense layer's input size.
    """

    def __init__(self, num_classes: int = 10, dense_units: int = 64, conv_dropout: float = 0.0,
                 dense_dropout: float = 0.0, input_shape=(28, 28, 1), *, rngs: nnx.Rngs):
        self.num_classes, self.dense_units = num_classes, dense_units
        self.conv_dropout, self.dense_dropout = conv_dropout, dense_dropout
        self.input_shape = tuple(input_shape)
        h, w, c = self.input_shape
        self.conv1 = Conv(c, 32, (3, 3), rngs=rngs)
        self.conv2 = Conv(32, 64, (3, 3), rngs=rngs)
        h, w = ((h - 2) // 2 - 2) // 2, ((w - 2) // 2 - 2) // 2
        self.dense1 = Linear(h * w * 64, dense_units, rngs=rngs)
        self.logits = Linear(dense_units, num_classes, rngs=rngs)
        self.conv_drop = nnx.Dropout(conv_dropout, rngs=rngs)
        self.dense_drop = nnx.Dropout(dense_dropout, rngs=rngs)

    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"MnistCNN expects input [batch, height, width, channels], got shape {x.shape}")
        x = self.conv_drop(max_pool(nnx.relu(self.conv1(x))))
        x = self.conv_drop(max_pool(nnx.relu(self.conv2(x))))
        x = self.dense_drop(nnx.relu(self.dense1(flatten(x))))
        return self.logits(x)


class Bridge(nnx.bridge.ToNNX):
    """A registered linen network as an NNX module (`nnx.bridge.ToNNX`), variables in its layout.

    `__call__(x, train=False)`: in training the BatchNorm statistics update (ToNNX alone would
    apply the network with every collection immutable).
    """

    def __init__(self, network: str, input_shape, model_kwargs=(), *, rngs: nnx.Rngs):
        super().__init__(get_model(network, **dict(model_kwargs)), rngs=rngs)
        # ToNNX reads every attribute not prefixed `to_nnx__` as a linen variable.
        self.to_nnx__fields = (network, tuple(input_shape), tuple(map(tuple, model_kwargs)))
        self.lazy_init(jnp.zeros((1, *self.input_shape), jnp.float32), train=False)

    # The constructor fields, read back by jaxcnn.nnx.fields_of (a run folder's card).
    network = property(lambda self: self.to_nnx__fields[0])
    input_shape = property(lambda self: self.to_nnx__fields[1])
    model_kwargs = property(lambda self: self.to_nnx__fields[2])

    def __call__(self, x, train: bool = False):
        return super().__call__(x, train=train, mutable=["batch_stats"] if train else False)


def input_shape_for(name: str, input_shape=None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(input_shape)
    shape = cnn.TUTORIAL_INPUT_SHAPES.get(name) or DEFAULT_INPUT_SHAPES.get(name)
    if shape is None:
        raise ValueError(f"get_model({name!r}, api='nnx') needs input_shape=(H, W, C): an NNX module "
                         "creates its variables when it is built")
    return tuple(shape)


def nnx_model(name: str, input_shape=None, seed: int = 0, **kwargs) -> nnx.Module:
    """The model `name` as an `nnx.Module` (the `api="nnx"` of `get_model`).

    A registered network: native for N1's family (mnist_cnn, mnist_cnn_dropout, mnist_cnn128,
    spectrogram_cnn), the bridge for the rest. An import path of an NNX class: that class with
    `kwargs` (and `rngs`); of a linen class: bridged. `seed` draws the initial parameters.
    """
    rngs = lambda: nnx.Rngs(seed, params=seed, dropout=seed + 1)  # noqa: E731
    if is_import_path(name):
        cls = resolve_import_path(name)
        if isinstance(cls, type) and issubclass(cls, nnx.Module):
            if input_shape is not None:
                kwargs["input_shape"] = input_shape
            return nnx.jit(lambda: cls(**kwargs, rngs=rngs()))()
    shape = input_shape_for(name, input_shape)
    linen = get_model(name, **kwargs)
    if type(linen) in (cnn.MnistCNN, cnn.SpectrogramCNN):
        build = functools.partial(MnistCNN, linen.num_classes, linen.dense_units, linen.conv_dropout,
                                  linen.dense_dropout, input_shape=shape)
    elif isinstance(linen, nn.Module):
        build = functools.partial(Bridge, name, shape, tuple(sorted(kwargs.items())))
    else:
        raise TypeError(f"model {name!r} is not a linen module ({type(linen).__name__}); nothing to bridge")
    # One compiled program draws every initial value (op by op, N1 alone took seconds of CPU).
    return nnx.jit(lambda: build(rngs=rngs()))()


register_api("nnx", nnx_model)
