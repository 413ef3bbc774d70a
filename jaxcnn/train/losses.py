"""Per-example losses: a Keras name or your own `(logits, labels) -> [B] losses`.

Models return logits. Labels: integers (sparse CE, binary CE) or one-hot rows (categorical CE).
A custom loss returns one value per example; the step weights it (`mask * sample_weight`) and
divides by the number of real examples, as Keras' "sum_over_batch_size" reduction does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _binary_logits(logits):
    if logits.ndim == 2 and logits.shape[-1] != 1:
        raise ValueError(f"binary_crossentropy expects one logit per example, got shape {logits.shape}")
    return logits.reshape(logits.shape[0])


def sparse_categorical_crossentropy(logits, labels):
    # Through a one-hot product rather than optax's integer-label gather: its gradient is a
    # scatter, which cost XLA:CPU ~10% of N1's step.
    return optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype))


def categorical_crossentropy(logits, labels):
    """One-hot categorical CE; integer labels are one-hot encoded here (the same math as Keras)."""
    if labels.ndim == 1:
        labels = jnp.eye(logits.shape[-1], dtype=logits.dtype)[labels]
    return optax.softmax_cross_entropy(logits, labels)


def binary_crossentropy(logits, labels):
    return optax.sigmoid_binary_cross_entropy(_binary_logits(logits), labels.astype(logits.dtype))


LOSSES = {
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy,
    "categorical_crossentropy": categorical_crossentropy,
    "binary_crossentropy": binary_crossentropy,
}


def get_loss(loss):
    """The per-example loss function for a name in LOSSES, or `loss` itself when it is callable."""
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except (KeyError, TypeError):
        raise KeyError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}, or a callable "
                       "(logits, labels) -> per-example loss") from None


def loss_label(loss) -> str:
    """A name for logs and configs: the Keras name, or the function's name."""
    return loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)


def output_activation(logits, loss):
    """What Keras' `predict` returns: sigmoid for binary models (binary CE, or one output), else softmax."""
    if loss == "binary_crossentropy" or logits.shape[-1] == 1:
        return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits, axis=-1)
