"""argparse `type=` converters of the CLI that the config fields do not already give."""

from __future__ import annotations

import argparse

from jaxcnn.config_flags import positive_int


def positive_float(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {raw}")
    return value


def port_number(raw: str) -> int:
    value = positive_int(raw)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return value


def checkpoint_choice(raw: str) -> str:
    """--checkpoint: auto, final, best, latest or a step number."""
    if raw in ("auto", "final", "best", "latest") or raw.isdigit():
        return raw
    raise argparse.ArgumentTypeError(f"expected auto, final, best, latest or a step number, got {raw!r}")


def shape(text: str) -> tuple[int, ...]:
    """H,W,C (or HxWxC) as a tuple of ints."""
    try:
        return tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,3), got {text!r}") from None
