"""The tutorials' small networks (the tutorials' N1-N9, plus a CIFAR-10 CNN and a frame baseline for N5).

Pure linen modules with Keras defaults (see `layers`). All take NHWC float inputs (videos:
[B, T, H, W, C]) and return logits; softmax/sigmoid lives in the loss. `C32` in the tutorials' notation includes
the ReLU, so where a BatchNormalization follows (N7) it normalizes the activations, as Keras does.
Modules are shape-agnostic; `TUTORIAL_INPUT_SHAPES` gives each network's input in its tutorial.
Parameter names follow Keras' layer roles (conv1, bn1, dense1, lstm, logits) for weight conversion.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from jaxcnn.models.registry import register_model
from jaxcnn.models.layers import LSTM, BatchNorm, Conv, Dense, flatten, max_pool

# Input shape (without batch) each network has in its tutorial; other sizes work too.
TUTORIAL_INPUT_SHAPES = {
    "mnist_cnn": (28, 28, 1),
    "mnist_cnn_dropout": (28, 28, 1),
    "mnist_simple": (28, 28, 1),
    "mnist_cnn3": (28, 28, 1),
    "cnn_lstm": (30, 128, 128, 1),
    "spectrogram_cnn": (64, 64, 1),
    "bn_cnn_binary": (150, 150, 3),
    "mnist_cnn128": (28, 28, 1),
    "cifar10_mlp": (32, 32, 3),
    "cifar10_cnn": (32, 32, 3),
    "frame_baseline": (30, 128, 128, 1),
}


def _check_rank(model: nn.Module, x, ranks: tuple[int, ...], layout: str):
    if x.ndim not in ranks:
        raise ValueError(f"{type(model).__name__} expects input {layout}, got shape {x.shape}")


def _dropout(rate: float, train: bool, x):
    """Keras Dropout: active only in training, kept units scaled by 1/(1-rate)."""
    return nn.Dropout(rate, deterministic=not train)(x)


@register_model("mnist_cnn")
class MnistCNN(nn.Module):
    """N1: C32 P C64 P F D64 -> classes (121,930 parameters at 28x28x1, 10 classes).

    `conv_dropout` after each pool and `dense_dropout` after the dense layer give N2;
    `dense_units=128` gives N8.
    """

    num_classes: int = 10
    dense_units: int = 64
    conv_dropout: float = 0.0
    dense_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (4,), "[batch, height, width, channels]")
        x = max_pool(nn.relu(Conv(32, (3, 3), name="conv1")(x)))
        x = _dropout(self.conv_dropout, train, x)
        x = max_pool(nn.relu(Conv(64, (3, 3), name="conv2")(x)))
        x = _dropout(self.conv_dropout, train, x)
        x = nn.relu(Dense(self.dense_units, name="dense1")(flatten(x)))
        x = _dropout(self.dense_dropout, train, x)
        return Dense(self.num_classes, name="logits")(x)


# N2: C32 P Do.25 C64 P Do.25 F D64 Do.5 -> 10.
MnistCNNDropout = register_model("mnist_cnn_dropout")(
    functools.partial(MnistCNN, conv_dropout=0.25, dense_dropout=0.5))
# N8: C32 P C64 P F D128 -> 10.
MnistCNN128 = register_model("mnist_cnn128")(functools.partial(MnistCNN, dense_units=128))


@register_model("spectrogram_cnn")
class SpectrogramCNN(MnistCNN):
    """N6: N1's layers on 64x64x1 spectrograms; 3 classes (music/speech/silence) by default."""

    num_classes: int = 3


@register_model("mnist_simple")
class MnistSimpleCNN(nn.Module):
    """N3: one conv block, C32 P F D100 -> classes."""

    num_classes: int = 10
    dense_units: int = 100

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (4,), "[batch, height, width, channels]")
        x = max_pool(nn.relu(Conv(32, (3, 3), name="conv1")(x)))
        x = nn.relu(Dense(self.dense_units, name="dense1")(flatten(x)))
        return Dense(self.num_classes, name="logits")(x)


@register_model("mnist_cnn3")
class MnistCNN3(nn.Module):
    """N4: three convs, C32 P C64 P C64 F D64 -> classes."""

    num_classes: int = 10
    dense_units: int = 64

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (4,), "[batch, height, width, channels]")
        x = max_pool(nn.relu(Conv(32, (3, 3), name="conv1")(x)))
        x = max_pool(nn.relu(Conv(64, (3, 3), name="conv2")(x)))
        x = nn.relu(Conv(64, (3, 3), name="conv3")(x))
        x = nn.relu(Dense(self.dense_units, name="dense1")(flatten(x)))
        return Dense(self.num_classes, name="logits")(x)


def _frames_to_batch(x):
    """[B, T, H, W, C] -> [B*T, H, W, C]: Keras TimeDistributed applies a layer per frame."""
    return x.reshape((x.shape[0] * x.shape[1], *x.shape[2:]))


@register_model("cnn_lstm")
class CnnLSTM(nn.Module):
    """N5: per frame C32 P F (time-distributed), then LSTM(50) over the frames -> classes.

    Input [B, T, H, W, C] (tutorial: 30 frames of 128x128x1); the frame size and count follow
    the input. The LSTM is Keras' (see `layers.LSTM`) and returns its last output.
    """

    num_classes: int = 3
    lstm_units: int = 50

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (5,), "[batch, frames, height, width, channels]")
        b, t = x.shape[:2]
        y = max_pool(nn.relu(Conv(32, (3, 3), name="conv1")(_frames_to_batch(x))))
        y = flatten(y).reshape((b, t, -1))
        h = LSTM(self.lstm_units, name="lstm")(y)
        return Dense(self.num_classes, name="logits")(h)


@register_model("frame_baseline")
class FrameBaseline(nn.Module):
    """Order-free baseline for N5's task: per frame C32 P F D{dense_units}, averaged over frames.

    The mean over frames discards temporal order, so where this fails and `cnn_lstm` succeeds,
    the class lies in the frames' order, not in any single frame. A 4-D input [B, H, W, C] is
    classified as a single frame.
    """

    num_classes: int = 3
    dense_units: int = 32

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (4, 5), "[batch, frames, height, width, channels] or one frame [batch, h, w, c]")
        video = x.ndim == 5
        b, t = (x.shape[0], x.shape[1]) if video else (x.shape[0], 1)
        y = _frames_to_batch(x) if video else x
        y = max_pool(nn.relu(Conv(32, (3, 3), name="conv1")(y)))
        y = nn.relu(Dense(self.dense_units, name="dense1")(flatten(y)))
        y = y.reshape((b, t, -1)).mean(axis=1)
        return Dense(self.num_classes, name="logits")(y)


@register_model("bn_cnn_binary")
class BnCNN(nn.Module):
    """N7: C32 BN P Do.25 C64 BN P Do.25 F D512 BN Do.5 -> 1 logit (tutorial: 150x150x3).

    BatchNorm follows each ReLU, as in the Keras code (`Conv2D(..., activation="relu")` then
    `BatchNormalization()`). `num_classes=1` (default) gives one logit per example for binary
    cross-entropy; more gives softmax logits.
    """

    num_classes: int = 1
    dense_units: int = 512
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    # Set by the pmap strategy: batch statistics over the global batch (jaxcnn.parallel).
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (4,), "[batch, height, width, channels]")
        x = nn.relu(Conv(32, (3, 3), name="conv1")(x))
        x = BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, name="bn1")(x)
        x = _dropout(self.conv_dropout, train, max_pool(x))
        x = nn.relu(Conv(64, (3, 3), name="conv2")(x))
        x = BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, name="bn2")(x)
        x = _dropout(self.conv_dropout, train, max_pool(x))
        x = nn.relu(Dense(self.dense_units, name="dense1")(flatten(x)))
        x = BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, name="bn3")(x)
        x = _dropout(self.dense_dropout, train, x)
        return Dense(self.num_classes, name="logits")(x)


@register_model("cifar10_mlp")
class Cifar10MLP(nn.Module):
    """N9: flatten (32x32x3 -> 3072), D512 D512 -> classes. Accepts NHWC or already flat input."""

    num_classes: int = 10
    hidden: tuple[int, ...] = (512, 512)

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = flatten(x)
        for i, units in enumerate(self.hidden, start=1):
            x = nn.relu(Dense(units, name=f"dense{i}")(x))
        return Dense(self.num_classes, name="logits")(x)


@register_model("cifar10_cnn")
class Cifar10CNN(nn.Module):
    """The CNN tutorial D names as its next step (the classic Keras `cifar10_cnn` example):

    C32(same) C32 P Do.25 C64(same) C64 P Do.25 F D512 Do.5 -> classes (1,250,858 parameters).
    """

    num_classes: int = 10
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5

    @nn.compact
    def __call__(self, x, train: bool = False):
        _check_rank(self, x, (4,), "[batch, height, width, channels]")
        for block, filters in ((1, 32), (2, 64)):
            for j, padding in ((1, "SAME"), (2, "VALID")):
                name = f"conv{2 * block - 2 + j}"
                x = nn.relu(Conv(filters, (3, 3), padding=padding, name=name)(x))
            x = _dropout(self.conv_dropout, train, max_pool(x))
        x = nn.relu(Dense(512, name="dense1")(flatten(x)))
        x = _dropout(self.dense_dropout, train, x)
        return Dense(self.num_classes, name="logits")(x)
