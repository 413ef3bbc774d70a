"""Watching one logged value for improvement (EarlyStopping, ReduceLROnPlateau share it)."""

from __future__ import annotations


def better(mode: str, value: float, best: float | None, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def monitor_mode(mode: str, monitor: str) -> str:
    if mode == "auto":
        return "max" if any(k in monitor for k in ("acc", "auc")) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode
