"""The networks as pure linen modules, and their name registry (`jaxcnn.models.registry`).

    model = jaxcnn.models.get_model("mnist_cnn", num_classes=10)

Every registered constructor returns a pure `flax.linen.Module` whose `__call__(x, train=False)`
returns logits (one logit per example for binary models). Keras models imported with
`jaxcnn import-keras` are built from `keras:FOLDER` names by `jaxcnn.keras` (a name prefix).
"""

from jaxcnn.models.registry import (PREFIX_PROVIDERS, get_model, list_models, list_prefixes,  # noqa: F401
                                    register_model, register_prefix)
from jaxcnn.models import cnn  # noqa: E402,F401  (registers the small CNNs)
from jaxcnn.models.cnn import (  # noqa: E402,F401
    TUTORIAL_INPUT_SHAPES, BnCNN, Cifar10CNN, Cifar10MLP, CnnLSTM, FrameBaseline, MnistCNN, MnistCNN3,
    MnistSimpleCNN, SpectrogramCNN)
from jaxcnn.models import resnet, transfer, vgg  # noqa: E402,F401  (VGG16, ResNet50, transfer models)
from jaxcnn.models import fast  # noqa: E402,F401  (mnist_fast, airbench: jaxcnn.speedrun's networks)
