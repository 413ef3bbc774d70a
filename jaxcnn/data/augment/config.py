"""Augmentation parameters with Keras `ImageDataGenerator` meanings: the config, the recipes, `--augment`.

Shared by the TensorFlow (`tf_ops`) and JAX (`jax_ops`) backends, which draw the same
distributions from these fields (`shift_kind` says how a shift range is drawn).
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Sequence

import numpy as np

FILL_MODES = ("nearest", "constant", "reflect", "wrap")
# A sample point within this distance (pixels) of the image edge still counts as inside for `constant`
# (float32 coordinates vs Keras' float64 ones).
EDGE_EPS = 1e-4

ShiftRange = float | int | Sequence[float]


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """`ImageDataGenerator`'s geometric parameters, with its meanings.

    - rotation_range: degrees; theta ~ U(-r, r).
    - width_shift_range / height_shift_range: float < 1: fraction of the width / height,
      shift ~ U(-r, r) * size; float >= 1: pixels, U(-r, r); int n: pixels, an integer drawn
      from {0..n-1} with a random sign; a sequence: one of its values with a random sign
      (times the size when all values are < 1).
    - shear_range: degrees; shear ~ U(-r, r).
    - zoom_range: float z -> [1 - z, 1 + z], or (lo, hi); zx and zy drawn independently.
    - horizontal_flip / vertical_flip: each flipped with probability 1/2.
    - fill_mode: nearest | constant | reflect | wrap (scipy's meaning); cval for constant.
    """

    rotation_range: float = 0.0
    width_shift_range: ShiftRange = 0.0
    height_shift_range: ShiftRange = 0.0
    shear_range: float = 0.0
    zoom_range: float | tuple[float, float] = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    fill_mode: str = "nearest"
    cval: float = 0.0

    def __post_init__(self):
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {self.fill_mode!r}")
        self.zoom_bounds  # validates zoom_range
        for name in ("width_shift_range", "height_shift_range"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.zoom_range, list):
            object.__setattr__(self, "zoom_range", tuple(self.zoom_range))

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        z = self.zoom_range
        if isinstance(z, (int, float)) and not isinstance(z, bool):
            return (1.0 - z, 1.0 + z)
        if isinstance(z, (tuple, list)) and len(z) == 2:
            return (float(z[0]), float(z[1]))
        raise ValueError(f"zoom_range must be a float or a pair (lo, hi), got {z!r}")

    def is_identity(self) -> bool:
        return not (self.rotation_range or _shift_active(self.width_shift_range)
                    or _shift_active(self.height_shift_range) or self.shear_range
                    or self.zoom_bounds != (1.0, 1.0) or self.horizontal_flip or self.vertical_flip)


RECIPES: dict[str, AugmentConfig] = {
    # Tutorial A: rotation up to 10 degrees, zoom 0.1, width and height shift 0.1.
    "A": AugmentConfig(rotation_range=10, zoom_range=0.1, width_shift_range=0.1, height_shift_range=0.1),
    # Tutorial B: rotation 40, shifts 0.2, shear 0.2 (degrees, Keras' unit), zoom 0.2, flip.
    "B": AugmentConfig(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
                       shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode="nearest"),
}


def parse_augment(spec: str | None) -> AugmentConfig | None:
    """A CLI `--augment` value: "A", "B", "none", "k=v,k=v" or "B,k=v" (a recipe with overrides).

    Values are Python literals (`10`, `0.1`, `true`); pairs for zoom_range as `0.8:1.2`.
    `int` vs `float` matters for shifts, as in Keras (`5` pixels drawn from integers, `5.0` uniform).
    """
    if spec is None or spec.strip().lower() in ("", "none", "off", "false"):
        return None
    fields = {f.name for f in dataclasses.fields(AugmentConfig)}
    base, overrides = {}, {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" not in part:
            if part.upper() not in RECIPES:
                raise ValueError(f"--augment: unknown recipe {part!r}; known: {', '.join(RECIPES)}, none")
            base = dataclasses.asdict(RECIPES[part.upper()])
            continue
        key, value = (s.strip() for s in part.split("=", 1))
        if key not in fields:
            raise ValueError(f"--augment: unknown parameter {key!r}; known: {', '.join(sorted(fields))}")
        overrides[key] = _parse_value(key, value)
    return AugmentConfig(**{**base, **overrides})


def _parse_value(key: str, value: str):
    low = value.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if ":" in value:
        return tuple(float(v) for v in value.split(":"))
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        if key == "fill_mode":
            return value
        raise ValueError(f"--augment: cannot parse {key}={value!r}") from None


def _shift_active(r) -> bool:
    if isinstance(r, (tuple, list)):
        return len(r) > 0
    return bool(r)


def shift_kind(r) -> str:
    """How Keras draws a shift from range r: 'none', 'uniform', 'int' or 'choice'."""
    if not _shift_active(r):
        return "none"
    if isinstance(r, (tuple, list, np.ndarray)):
        return "choice"
    if isinstance(r, (int, np.integer)) and not isinstance(r, bool):
        return "int"
    return "uniform"
