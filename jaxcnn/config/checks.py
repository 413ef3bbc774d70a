"""Every value check of the package's command lines and configs, in one set.

A check takes a value and returns None when it is fine, else the problem ("must be a positive
integer"). `FIELD_CHECKS` applies them to ExperimentConfig fields (flags, `--set` and
`validate_config` alike, so a bad value is refused the same way wherever it comes from);
`argument_type` turns one into an argparse `type=` (`positive_int`, `positive_float`, ...), whose
error argparse prints with the flag's name.
"""

from __future__ import annotations

import argparse
from typing import Callable

from jaxcnn.compress.spec import prune_spec_problem, quantize_problem
from jaxcnn.errors import UsageError

CHECKPOINT_CHOICES = ("auto", "final", "best", "latest")


# -- checks: value -> None or the problem ----------------------------------------------------------
def positive(value):
    """An integer >= 1 (None passes: an optional field left unset)."""
    return None if value is None or value >= 1 else "must be a positive integer"


def non_negative(value):
    return None if value >= 0 else "must be 0 or more"


def positive_real(value):
    """A number > 0 (None passes)."""
    return None if value is None or value > 0 else "must be positive"


def finite_positive(value):
    return None if value > 0 and value != float("inf") else "must be a positive number"


def port(value):
    return positive(value) or (None if value <= 65535 else "must be a port number (1-65535)")


def open_unit_interval(value):
    """A fraction in (0, 1) (None passes)."""
    return None if value is None or 0 < value < 1 else "must lie in (0, 1)"


def image_size(value):
    """(height, width), two positive integers (None passes)."""
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 2
                         and all(isinstance(n, int) and n >= 1 for n in value)):
        return None
    return "must be two positive integers (height, width)"


def step_range(value):
    """START:STOP global steps, 0 <= START < STOP (None passes)."""
    try:
        start, stop = (int(p) for p in value.split(":")) if isinstance(value, str) else (None, None)
    except ValueError:
        start = stop = None
    if value is None or (start is not None and 0 <= start < stop):
        return None
    return "must be START:STOP global steps with 0 <= START < STOP (e.g. 10:20)"


def one_of(*choices):
    def check(value):
        return None if value in choices else f"must be one of {', '.join(str(c) for c in choices)}"

    return check


def checkpoint_name(value):
    """auto, final, best, latest or a step number (a string of digits)."""
    if value in CHECKPOINT_CHOICES or (isinstance(value, str) and value.isdigit()):
        return None
    return "expected auto, final, best, latest or a step number"


# Field -> check of its value, for jaxcnn.config.ExperimentConfig.
FIELD_CHECKS: dict[str, Callable] = {
    "epochs": positive, "batch_size": positive, "train_limit": positive, "test_limit": positive,
    "checkpoint_every_steps": positive, "checkpoint_keep": positive, "seed": non_negative,
    "learning_rate": positive_real,
    "validation_split": open_unit_interval,
    "road": one_of("auto", "pipeline", "device"),
    "precision": one_of("auto", "bf16", "bfloat16", "f16", "float16", "fp16", "f32", "fp32", "float32"),
    "strategy": one_of(None, "jit", "pmap"),
    "checkpoint_best_mode": one_of("min", "max"),
    "resize": image_size,
    "prune": prune_spec_problem, "quantize": quantize_problem,
    "profile": step_range,
}


def validate_config(config) -> None:
    """UsageError for a field value the run cannot use (from a flag, `--set`, a variant or code)."""
    for field, check in FIELD_CHECKS.items():
        value = getattr(config, field)
        problem = check(value)
        if problem:
            raise UsageError(f"{config.name}: {field} {problem}, got {value!r}")


# -- argparse `type=` from a check --------------------------------------------------------------------
_EXPECTED = {int: "an integer", float: "a number"}


def argument_type(kind, check: Callable, name: str | None = None) -> Callable[[str], object]:
    """argparse `type=`: the string as `kind` (int or float), refused with the check's problem."""

    def parse(raw: str):
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_EXPECTED[kind]}, got {raw!r}") from None
        problem = check(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {value if kind is int else raw}")
        return value

    parse.__name__ = name or check.__name__
    return parse


positive_int = argument_type(int, positive, "positive_int")  # an integer >= 1
non_negative_int = argument_type(int, non_negative, "non_negative_int")  # an integer >= 0
positive_float = argument_type(float, finite_positive, "positive_float")  # a finite number > 0
port_number = argument_type(int, port, "port_number")  # 1-65535


def checkpoint_choice(raw: str) -> str:
    """argparse `type=` for --checkpoint: auto, final, best, latest or a step number."""
    problem = checkpoint_name(raw)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}, got {raw!r}")
    return raw


def input_shape(raw: str) -> tuple[int, ...]:
    """argparse `type=` for --input-shape: H,W,C (or HxWxC) as positive integers."""
    try:
        shape = tuple(int(v) for v in raw.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,3), got {raw!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes H,W,C (e.g. 32,32,3), got {raw!r}")
    return shape
