"""Int8 quantization-aware training of a linen model through Google's Qwix.

    model = qat_model(get_model("mnist_cnn"), "int8")   # same params; every conv and dense
    trainer = Trainer(model, (28, 28, 1), ...)          # computes with int8 fake quantization

Qwix rather than AQT: Qwix is the library Google now keeps for this (AQT's README points to it),
it quantizes an unchanged linen (or NNX) model by intercepting `jax.lax.dot_general` and
`conv_general_dilated` inside its methods, so the registered networks need no quantized layer
classes, and its only new dependency is itself. Weights are int8 per output channel, activations
int8 per tensor with dynamic (absmax) scales, gradients straight through (`QtProvider`). The
params keep their float32 shapes and names: checkpoints, `predict` and `export` read them as a
float model's, and `jaxcnn export --quantize int8` writes the int8 file to serve.
"""

from __future__ import annotations

import importlib.util

import jax
import numpy as np

from jaxcnn.compress.prune import is_kernel
from jaxcnn.compress.spec import QUANTIZE_CHOICES
from jaxcnn.errors import UsageError


def require_qwix() -> None:
    if importlib.util.find_spec("qwix") is None:
        raise UsageError("quantization-aware training needs qwix, which is not installed: "
                         "pip install 'jaxcnn[compress]'")


def qat_model(model, kind: str = "int8"):
    """`model` (a linen module) computing every matmul and convolution in int8 fake quantization."""
    if kind not in QUANTIZE_CHOICES:
        raise UsageError(f"quantize: {kind!r} is not known; choose one of {', '.join(QUANTIZE_CHOICES)}")
    require_qwix()
    import jax.numpy as jnp
    import qwix

    rule = qwix.QtRule(module_path=".*", weight_qtype=jnp.int8, act_qtype=jnp.int8)
    return qwix.quantize_model(model, qwix.QtProvider([rule]))


def int8_size_bytes(params) -> int:
    """Bytes of the params stored as int8 kernels (one float32 scale per output channel) with
    float32 biases and norms: the size an int8 model's weights take."""
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        a = np.asarray(leaf)
        total += a.size + 4 * a.shape[-1] if is_kernel(path, a) else 4 * a.size
    return total


def float_size_bytes(params) -> int:
    return sum(4 * np.asarray(a).size for a in jax.tree.leaves(params))
