"""The smallest inputs each registered model accepts, for tests that run every model.

A model registered without an entry here fails `test_every_registered_model_has_a_tiny_shape`.
"""

# Two 3x3 VALID convs with 2x2 pools need >= 10 pixels; mnist_cnn3's third conv needs 18;
# VGG16 halves five times (32); ResNet50 takes any size, but 32 keeps its last map 1x1.
TINY_SHAPES = {
    "mnist_cnn": (12, 12, 1), "mnist_cnn_dropout": (12, 12, 1), "mnist_cnn128": (12, 12, 1),
    "spectrogram_cnn": (12, 12, 1), "mnist_simple": (8, 8, 1), "mnist_cnn3": (18, 18, 1),
    "cnn_lstm": (3, 8, 8, 1), "frame_baseline": (3, 8, 8, 1), "bn_cnn_binary": (12, 12, 3),
    "cifar10_mlp": (8, 8, 3), "cifar10_cnn": (12, 12, 3),
    "mnist_fast": (18, 18, 1), "airbench": (25, 25, 3),  # 2x2 whiten conv, three pools, then a 3x3 pool
    "vgg16": (32, 32, 3), "vgg16_transfer_a": (32, 32, 3), "vgg16_transfer_b": (32, 32, 3),
    "vgg16_transfer_c": (32, 32, 3), "resnet50": (32, 32, 3), "resnet50_transfer_a": (32, 32, 3),
    "resnet50_transfer_c": (32, 32, 3),
}
# Checking these takes 20-60 s of CPU each: they run on 2 devices (not 8) in the device check.
LARGE = {"airbench", "vgg16", "vgg16_transfer_a", "vgg16_transfer_b", "vgg16_transfer_c", "resnet50",
         "resnet50_transfer_a", "resnet50_transfer_c"}
