"""Mixed precision: which dtype the layers compute in. Params, optimizer state and the loss stay float32.

    resolve_compute_dtype("auto")  # bfloat16 on GPU/TPU, None (float32) on CPU
    resolve_compute_dtype("bf16")  # jnp.bfloat16

The train step casts the float32 params and the images to the compute dtype inside the loss, so
every linen layer computes in it whatever its own `dtype` field says; gradients flow back to the
float32 params through the cast. bf16 needs no loss scaling. On CPU, XLA emulates most bf16
math, so float32 is the default there.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_NAMES = {"bf16": jnp.bfloat16, "bfloat16": jnp.bfloat16, "f16": jnp.float16, "float16": jnp.float16,
          "fp16": jnp.float16, "f32": None, "fp32": None, "float32": None}


def default_precision(platform: str | None = None) -> str:
    """'bf16' on GPU/TPU (faster there), 'f32' on CPU."""
    platform = platform or jax.default_backend()
    return "f32" if platform == "cpu" else "bf16"


def resolve_compute_dtype(precision="auto", platform: str | None = None):
    """'auto' | 'bf16' | 'f32' | a dtype | None -> the compute dtype, None meaning float32."""
    if precision is None:
        return None
    if isinstance(precision, str):
        key = precision.lower()
        if key == "auto":
            key = default_precision(platform)
        if key not in _NAMES:
            raise ValueError(f"unknown precision {precision!r}; use auto, bf16, f16 or f32")
        return _NAMES[key]
    dtype = jnp.dtype(precision)
    return None if dtype == jnp.float32 else dtype


def cast_floats(tree, dtype):
    """Cast the floating leaves of `tree` to `dtype` (integer leaves untouched)."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
