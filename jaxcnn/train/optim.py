"""Optimizers by name with Keras' defaults, or any optax transformation."""

from __future__ import annotations

import optax

# Keras defaults: Adam(lr 1e-3, beta1 .9, beta2 .999, eps 1e-7); RMSprop(lr 1e-3, rho .9, eps 1e-7);
# SGD(lr 1e-2, momentum 0).
KERAS_DEFAULTS = {
    "adam": dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-7),
    "rmsprop": dict(learning_rate=1e-3, decay=0.9, eps=1e-7),
    "sgd": dict(learning_rate=1e-2),
}


def get_optimizer(optimizer="rmsprop", learning_rate=None, **kwargs) -> optax.GradientTransformation:
    """`optimizer` is an optax transformation (returned as is) or a Keras name.

    Keras' `compile()` without an optimizer means RMSprop, hence the default.
    """
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    name = optimizer.lower()
    if name not in KERAS_DEFAULTS:
        raise KeyError(f"unknown optimizer {optimizer!r}; known: {', '.join(KERAS_DEFAULTS)} or an optax transformation")
    args = {**KERAS_DEFAULTS[name], **kwargs}
    if learning_rate is not None:
        args["learning_rate"] = learning_rate
    if name == "adam":
        return optax.adam(**args)
    if name == "rmsprop":
        # Keras RMSprop adds eps outside the square root, as optax does with eps_in_sqrt=False.
        return optax.rmsprop(**args, eps_in_sqrt=False)
    return optax.sgd(**args)
