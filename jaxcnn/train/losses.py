"""Per-example losses and correctness by Keras name. Models return logits; labels are integers."""

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


def get_loss(name: str):
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {', '.join(LOSSES)}") from None


def correct(logits, labels, loss_name: str):
    """1.0 where the prediction matches the (integer or one-hot) label, else 0.0."""
    if loss_name == "binary_crossentropy":
        return ((_binary_logits(logits) > 0) == (labels > 0.5)).astype(jnp.float32)
    if labels.ndim == 2:
        labels = labels.argmax(-1)
    return (logits.argmax(-1) == labels).astype(jnp.float32)


def output_activation(logits, loss_name: str):
    """What Keras' `predict` returns: sigmoid for binary models, softmax otherwise."""
    import jax

    if loss_name == "binary_crossentropy":
        return jax.nn.sigmoid(logits)
    return jax.nn.softmax(logits, axis=-1)
