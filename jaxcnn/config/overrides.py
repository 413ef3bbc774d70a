"""`--set field=value` for any dataclass config, typed from its annotations (Flax `config_flags`).

    apply_overrides(config, [("epochs", 3), ("model_kwargs.dropout", 0.3)])
    parse_assignment(ExperimentConfig, "batch_size=64")   # -> ("batch_size", 64)

A value is converted to the field's annotated type: int, float, str, bool (true/false/yes/no/1/0),
`X | None` ("none"/"null" give None), dict/tuple/list (a Python literal; a tuple also takes
`a,b,c`), `Any` (a Python literal when it parses as one, else the string). `field.key=value`
sets one key of a dict field. An unknown field is an error that names the close matches.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import types
import typing
from typing import Any, Callable, Iterable

from jaxcnn.errors import UsageError

_NONE = ("none", "null")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def field_types(cls) -> dict[str, Any]:
    """Field name -> resolved annotation, for a dataclass type."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}


def _literal(raw: str):
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"not a Python literal: {raw!r}") from None


def convert(tp, raw: str):
    """`raw` (a command-line string) as a value of annotation `tp`; ValueError if it is none."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and raw.strip().lower() in _NONE:
            return None
        problems = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, raw)
            except ValueError as e:
                problems.append(str(e))
        raise ValueError("; ".join(problems))
    if tp is bool:
        low = raw.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError(f"expected true or false, got {raw!r}")
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if tp is str:
        return raw
    container = origin or tp
    if container is dict:
        value = _literal(raw)
        if not isinstance(value, dict):
            raise ValueError(f"expected a dict literal such as {{'key': 1}}, got {raw!r}")
        return value
    if container in (tuple, list):
        try:
            value = _literal(raw)
        except ValueError:  # a,b,c of plain words
            value = tuple(part.strip() for part in raw.split(",") if part.strip())
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return container(value)
    # Any (or an annotation we do not model): a literal when it is one, else the string.
    try:
        return _literal(raw)
    except ValueError:
        return raw


def _close(name: str, names: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(names), n=3)
    return f"; did you mean {' or '.join(repr(m) for m in match)}?" if match else ""


def convert_field(cls, name: str, raw, checks: dict[str, Callable] | None = None):
    """`raw` converted to field `name` of dataclass `cls` and checked by `checks[name]`, if any.

    `name` may be `field.key` for a key of a dict field (the value is then a Python literal or a
    string). Raises UsageError naming the field for an unknown field or a bad value.
    """
    types_ = field_types(cls)
    base, _, key = name.partition(".")
    if base not in types_:
        raise UsageError(f"unknown config field {base!r}{_close(base, types_)} "
                         f"(fields: {', '.join(sorted(types_))})")
    if key:
        tp = types_[base]
        if (typing.get_origin(tp) or tp) is not dict:
            raise UsageError(f"{name}: {base!r} is not a dict field, so it has no keys to set")
        return convert(Any, raw) if isinstance(raw, str) else raw
    try:
        value = convert(types_[base], raw) if isinstance(raw, str) else raw
    except ValueError as e:
        raise UsageError(f"{name}: {e}") from None
    check = (checks or {}).get(base)
    if check is not None:
        problem = check(value)
        if problem:
            raise UsageError(f"{name}: {problem}, got {value!r}")
    return value


def parse_assignment(cls, text: str, checks: dict[str, Callable] | None = None) -> tuple[str, Any]:
    """`field=value` -> (field, typed value)."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"expected FIELD=VALUE, got {text!r}")
    name = name.strip()
    return name, convert_field(cls, name, raw, checks)


def apply_overrides(config, overrides: Iterable[tuple[str, Any]]):
    """A copy of dataclass `config` with each (field or field.key, value) applied in order."""
    changes: dict[str, Any] = {}
    for name, value in overrides:
        base, _, key = name.partition(".")
        if key:
            current = changes.get(base, getattr(config, base))
            changes[base] = {**(current or {}), key: value}
        else:
            changes[base] = value
    return dataclasses.replace(config, **changes)
