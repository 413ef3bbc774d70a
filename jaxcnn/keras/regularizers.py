"""Keras' weight and activity regularizers (L1, L2, L1L2) as penalties the train step adds.

`parse_regularizer(value)` turns a config entry (`"l2"`, `{"class_name": "L2", "config":
{"l2": 0.01}}`, tf_keras' `L1L2` form) into `{"l1": a, "l2": b}` or None; anything else (a custom
or orthogonal regularizer) gives a `ValueError` naming it. `penalty(reg, x)` is Keras' value:
`l1 * sum(|x|) + l2 * sum(x**2)`. The imported module sows each penalty into the `losses`
collection; `jaxcnn.train.step` adds their sum to the loss, as Keras adds `sum(model.losses)`.
"""

from __future__ import annotations

import jax.numpy as jnp

# Keras' defaults for the bare names ("l2" -> L2(0.01)).
_DEFAULTS = {"l1": {"l1": 0.01, "l2": 0.0}, "l2": {"l1": 0.0, "l2": 0.01},
             "l1_l2": {"l1": 0.01, "l2": 0.01}, "l1l2": {"l1": 0.01, "l2": 0.01}}


def parse_regularizer(value) -> dict | None:
    """A Keras regularizer config -> {"l1", "l2"} factors (None when there is none)."""
    if value is None:
        return None
    if isinstance(value, str):
        key = value.lower()
        if key in _DEFAULTS:
            return dict(_DEFAULTS[key])
        raise ValueError(f"regularizer {value!r} (L1, L2, L1L2 only)")
    cls = str(value.get("class_name", "")).lower().replace("_", "")
    cfg = value.get("config") or {}
    if cls not in ("l1", "l2", "l1l2"):
        raise ValueError(f"regularizer {value.get('class_name')} (L1, L2, L1L2 only)")
    out = {"l1": float(cfg.get("l1", 0.0) or 0.0), "l2": float(cfg.get("l2", 0.0) or 0.0)}
    if cls == "l1" and "l1" not in cfg:
        out["l1"] = 0.01
    if cls == "l2" and "l2" not in cfg:
        out["l2"] = 0.01
    return out


def penalty(reg: dict, x):
    """Keras' regularization value of `x`."""
    x = x.astype(jnp.float32)
    out = jnp.zeros((), jnp.float32)
    if reg.get("l1"):
        out += reg["l1"] * jnp.sum(jnp.abs(x))
    if reg.get("l2"):
        out += reg["l2"] * jnp.sum(jnp.square(x))
    return out
