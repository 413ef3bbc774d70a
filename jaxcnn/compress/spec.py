"""The `--prune` and `--quantize` options as text: parsed and checked without JAX (for the config).

    --prune 0.8                              # polynomial 0 -> 0.8 over the first 2/3 of training
    --prune 0.8,schedule=constant,begin=200  # tfmot's ConstantSparsity from step 200
    --prune 0.5,scope=global,frequency=50    # one threshold over all kernels
    --prune nm=2:4                           # structured 2-of-4 sparsity
"""

from __future__ import annotations

PRUNE_KEYS = ("schedule", "begin", "end", "frequency", "power", "initial", "scope", "nm")
SCHEDULE_NAMES = ("polynomial", "constant")
QUANTIZE_CHOICES = ("int8",)


class SpecError(ValueError):
    """A `--prune` or `--quantize` value that cannot be used; the message names the fix."""


def parse_prune_spec(text) -> dict:
    """`{"sparsity", "schedule", "begin", "end", "frequency", "power", "initial", "scope", "nm"}`
    from `SPARSITY[,key=value...]` (None where the spec leaves it to the run's length)."""
    if isinstance(text, (int, float)):
        text = str(text)
    out = {"sparsity": None, "schedule": "polynomial", "begin": 0, "end": None, "frequency": None,
           "power": 3.0, "initial": 0.0, "scope": "layer", "nm": None}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq:
            out["sparsity"] = _fraction(key, "sparsity")
        elif key not in PRUNE_KEYS:
            raise SpecError(f"prune: unknown option {key!r}; known: {', '.join(PRUNE_KEYS)}")
        elif key in ("begin", "end", "frequency"):
            out[key] = _int(value, key)
        elif key in ("power",):
            out[key] = _number(value, key)
        elif key == "initial":
            out[key] = _fraction(value, key)
        elif key == "nm":
            n, _, m = value.partition(":")
            try:
                out["nm"] = (int(n), int(m))
            except ValueError:
                raise SpecError(f"prune: nm must be N:M such as 2:4, got {value!r}") from None
            if not 0 < out["nm"][0] < out["nm"][1]:
                raise SpecError(f"prune: nm N:M needs 0 < N < M, got {value!r}")
        else:
            out[key] = value.strip().lower()
    if out["schedule"] not in SCHEDULE_NAMES:
        raise SpecError(f"prune: schedule must be one of {', '.join(SCHEDULE_NAMES)}, got {out['schedule']!r}")
    if out["scope"] not in ("layer", "global"):
        raise SpecError(f"prune: scope must be layer or global, got {out['scope']!r}")
    if out["sparsity"] is None and out["nm"] is None:
        raise SpecError(f"prune: give a target sparsity in [0, 1) (e.g. 0.8) or nm=N:M, got {text!r}")
    if out["frequency"] is not None and out["frequency"] < 1:
        raise SpecError(f"prune: frequency must be 1 or more, got {out['frequency']}")
    return out


def prune_spec_problem(value):
    """A config check (jaxcnn.config.checks): None when `value` is unset or a usable spec."""
    if value is None:
        return None
    try:
        parse_prune_spec(value)
    except SpecError as e:
        return f"is not a pruning spec ({e})"
    return None


def quantize_problem(value):
    if value is None or value in QUANTIZE_CHOICES:
        return None
    return f"must be one of {', '.join(QUANTIZE_CHOICES)} (quantization-aware training)"


def _fraction(raw, what):
    v = _number(raw, what)
    if not 0.0 <= v < 1.0:
        raise SpecError(f"prune: {what} must be in [0, 1), got {raw!r}")
    return v


def _number(raw, what):
    try:
        return float(raw)
    except ValueError:
        raise SpecError(f"prune: {what} must be a number, got {raw!r}") from None


def _int(raw, what):
    try:
        return int(raw)
    except ValueError:
        raise SpecError(f"prune: {what} must be an integer, got {raw!r}") from None
