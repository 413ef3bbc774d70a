"""Model registry: the CLI and experiments name networks by string.

    model = jaxcnn.models.get_model("mnist_cnn", num_classes=10)

Every registered constructor returns a pure `flax.linen.Module` whose `__call__(x, train=False)`
returns logits (one logit per example for binary models).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register a module class or factory under `name`."""

    def wrap(ctor):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ctor
        return ctor

    return wrap


def get_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model `name` with keyword overrides (e.g. num_classes).

    `keras:FOLDER` names a Keras model imported with `jaxcnn import-keras FILE FOLDER` (its
    module; the variables load through `pretrained=FOLDER` / `init_with_pretrained_base`).
    """
    if name.startswith("keras:"):
        from jaxcnn.weights.keras_model import imported_module

        return imported_module(name[len("keras:"):], **kwargs)
    try:
        ctor = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None
    return ctor(**kwargs)


def list_models() -> list[str]:
    return sorted(_REGISTRY)


from jaxcnn.models import cnn  # noqa: E402,F401  (registers the small CNNs)
from jaxcnn.models.cnn import (  # noqa: E402,F401
    TUTORIAL_INPUT_SHAPES, BnCNN, Cifar10CNN, Cifar10MLP, CnnLSTM, FrameBaseline, MnistCNN, MnistCNN3,
    MnistSimpleCNN, SpectrogramCNN)
from jaxcnn.models import resnet, transfer, vgg  # noqa: E402,F401  (VGG16, ResNet50, transfer models)
from jaxcnn.models import fast  # noqa: E402,F401  (mnist_fast, airbench: jaxcnn.speedrun's networks)
