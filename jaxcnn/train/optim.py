"""Optimizers by name with Keras' defaults, or any optax transformation; learning-rate schedules.

    get_optimizer("adam", make_schedule("cosine,warmup=1", 1e-3, steps_per_epoch=1875, epochs=10))
"""

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


def default_learning_rate(optimizer) -> float | None:
    """Keras' default learning rate of a named optimizer (None for an optax transformation)."""
    if isinstance(optimizer, str) and optimizer.lower() in KERAS_DEFAULTS:
        return KERAS_DEFAULTS[optimizer.lower()]["learning_rate"]
    return None


SCHEDULES = ("constant", "cosine", "exponential", "piecewise")


def make_schedule(spec: str, learning_rate: float, *, steps_per_epoch: int, epochs: int):
    """An optax schedule (step -> learning rate) from a spec, in epochs:

    `cosine` (to 0 at the last step), `exponential[:RATE]` (times RATE per epoch, default 0.9),
    `piecewise:E1=F1,E2=F2` (times F from epoch E on, e.g. `piecewise:5=0.1,8=0.01`), `constant`;
    `,warmup=W` adds a linear warm-up from 0 over the first W epochs (fractions allowed).
    """
    name, _, rest = spec.partition(":")
    parts = [p.strip() for p in (rest or name).split(",")] if rest else [p.strip() for p in spec.split(",")[1:]]
    name = name.split(",")[0].strip().lower()
    options = dict(p.split("=", 1) for p in parts if "=" in p)
    plain = [p for p in parts if p and "=" not in p]
    warmup = round(float(options.pop("warmup", 0)) * steps_per_epoch)
    total = max(1, epochs * steps_per_epoch - warmup)
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {spec!r}; known: {', '.join(SCHEDULES)} "
                         "(e.g. cosine, exponential:0.9, piecewise:5=0.1, with ,warmup=EPOCHS)")
    if name == "cosine":
        main = optax.cosine_decay_schedule(learning_rate, total)
    elif name == "exponential":
        rate = float(plain[0]) if plain else 0.9
        main = optax.exponential_decay(learning_rate, transition_steps=steps_per_epoch, decay_rate=rate)
    elif name == "piecewise":
        scales, factor = {}, 1.0
        for epoch, f in sorted((int(k), float(v)) for k, v in options.items()):
            scales[epoch * steps_per_epoch - warmup] = f / factor  # optax multiplies the scales up
            factor = f
        main = optax.piecewise_constant_schedule(learning_rate, scales)
    else:
        main = optax.constant_schedule(learning_rate)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup), main], [warmup])
