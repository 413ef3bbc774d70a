"""The seed networks written in Keras layers: the one Keras twin of each `jaxcnn.models.cnn` net.

    inputs = keras.Input((28, 28, 1))
    logits = keras_layers(keras.layers, get_model("mnist_cnn"), inputs)
    kmodel = keras.Model(inputs, logits)           # layer names = the Flax module names

Each builder `build(L, model, x)` takes a Keras layers namespace `L` (Keras 3's or tf_keras'),
the jaxcnn module whose configuration it follows (units, dropout rates, classes) and an input
tensor, and returns the logits tensor (no final softmax/sigmoid). Weighted layers carry the
Flax module names (conv1, bn1, dense1, lstm, logits), so weights copy across by name.
`jaxcnn export --format keras` uses `EXPORT_BUILDERS`; the tests compare every network with its
twin. Keras itself is never imported here: the caller passes its layers.
"""

from __future__ import annotations

from jaxcnn.models import cnn


def _conv(L, x, filters, name, padding="valid"):
    return L.Conv2D(filters, 3, padding=padding, activation="relu", name=name)(x)


def mnist_cnn(L, m, x):
    """N1 (and N2 with dropout, N6 spectrograms, N8 with 128 dense units)."""
    for name, filters in (("conv1", 32), ("conv2", 64)):
        x = L.MaxPooling2D(2)(_conv(L, x, filters, name))
        x = L.Dropout(m.conv_dropout)(x) if m.conv_dropout else x
    x = L.Dense(m.dense_units, activation="relu", name="dense1")(L.Flatten()(x))
    x = L.Dropout(m.dense_dropout)(x) if m.dense_dropout else x
    return L.Dense(m.num_classes, name="logits")(x)


def mnist_simple(L, m, x):
    """N3: one conv block."""
    x = L.MaxPooling2D(2)(_conv(L, x, 32, "conv1"))
    x = L.Dense(m.dense_units, activation="relu", name="dense1")(L.Flatten()(x))
    return L.Dense(m.num_classes, name="logits")(x)


def mnist_cnn3(L, m, x):
    """N4: three convolutions."""
    x = L.MaxPooling2D(2)(_conv(L, x, 32, "conv1"))
    x = L.MaxPooling2D(2)(_conv(L, x, 64, "conv2"))
    x = _conv(L, x, 64, "conv3")
    x = L.Dense(m.dense_units, activation="relu", name="dense1")(L.Flatten()(x))
    return L.Dense(m.num_classes, name="logits")(x)


def cifar10_mlp(L, m, x):
    """N9: flatten, then the hidden dense layers."""
    x = L.Flatten()(x)
    for i, units in enumerate(m.hidden, start=1):
        x = L.Dense(units, activation="relu", name=f"dense{i}")(x)
    return L.Dense(m.num_classes, name="logits")(x)


def cifar10_cnn(L, m, x):
    """The classic Keras cifar10_cnn example: SAME then VALID convolutions per block."""
    for block, filters in ((1, 32), (2, 64)):
        x = _conv(L, x, filters, f"conv{2 * block - 1}", padding="same")
        x = L.MaxPooling2D(2)(_conv(L, x, filters, f"conv{2 * block}"))
        x = L.Dropout(m.conv_dropout)(x) if m.conv_dropout else x
    x = L.Dense(512, activation="relu", name="dense1")(L.Flatten()(x))
    x = L.Dropout(m.dense_dropout)(x) if m.dense_dropout else x
    return L.Dense(m.num_classes, name="logits")(x)


def bn_cnn_binary(L, m, x):
    """N7: BatchNormalization after each ReLU (Keras' momentum 0.99, epsilon 1e-3)."""
    def bn(name):
        return L.BatchNormalization(momentum=0.99, epsilon=1e-3, name=name)

    for i, filters in ((1, 32), (2, 64)):
        x = L.MaxPooling2D(2)(bn(f"bn{i}")(_conv(L, x, filters, f"conv{i}")))
        x = L.Dropout(m.conv_dropout)(x) if m.conv_dropout else x
    x = bn("bn3")(L.Dense(m.dense_units, activation="relu", name="dense1")(L.Flatten()(x)))
    x = L.Dropout(m.dense_dropout)(x) if m.dense_dropout else x
    return L.Dense(m.num_classes, name="logits")(x)


def cnn_lstm(L, m, x):
    """N5: per frame C32 P F (TimeDistributed), then an LSTM over the frames."""
    x = L.TimeDistributed(L.Conv2D(32, 3, activation="relu", name="conv1"))(x)
    x = L.TimeDistributed(L.Flatten())(L.TimeDistributed(L.MaxPooling2D(2))(x))
    x = L.LSTM(m.lstm_units, name="lstm")(x)
    return L.Dense(m.num_classes, name="logits")(x)


def frame_baseline(L, m, x):
    """N5's order-free baseline: per frame C32 P F D, averaged over the frames."""
    x = L.TimeDistributed(L.Conv2D(32, 3, activation="relu", name="conv1"))(x)
    x = L.TimeDistributed(L.Flatten())(L.TimeDistributed(L.MaxPooling2D(2))(x))
    x = L.TimeDistributed(L.Dense(m.dense_units, activation="relu", name="dense1"))(x)
    return L.Dense(m.num_classes, name="logits")(L.GlobalAveragePooling1D()(x))


# Model class -> builder, for the image models `jaxcnn export --format keras` covers.
EXPORT_BUILDERS = {cnn.MnistCNN: mnist_cnn, cnn.SpectrogramCNN: mnist_cnn, cnn.MnistSimpleCNN: mnist_simple,
                   cnn.MnistCNN3: mnist_cnn3, cnn.Cifar10MLP: cifar10_mlp, cnn.Cifar10CNN: cifar10_cnn,
                   cnn.BnCNN: bn_cnn_binary}
# Every seed network (the video ones too).
BUILDERS = {**EXPORT_BUILDERS, cnn.CnnLSTM: cnn_lstm, cnn.FrameBaseline: frame_baseline}


def keras_layers(L, model, x):
    """The logits of `model`'s Keras twin on the Keras tensor `x` (see the module doc)."""
    try:
        build = BUILDERS[type(model)]
    except KeyError:
        raise KeyError(f"no Keras builder for {type(model).__name__}; known: "
                       f"{', '.join(sorted(c.__name__ for c in BUILDERS))}") from None
    return build(L, model, x)
