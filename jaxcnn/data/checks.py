"""Host-side checks of what `fit` / `evaluate` are given: labels that fit the loss, finite images.

One pass over the arrays before training, cheap next to an epoch. Errors name the first bad
example (index and value), since a wrong label or a NaN trains to nonsense without a word.

The input rule: uint8 images are scaled by 1/255 (to [0, 1]); float images are used as given,
so non-negative floats above 1.5 (e.g. pixels 0..255 kept as float) get a warning, once per
process; floats with negative values (standardized inputs) are taken as deliberately scaled.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.data.errors import DataError
from jaxcnn.data.records import is_source

FLOAT_IMAGE_RANGE = (0.0, 1.5)  # non-negative float images above 1.5 get the warning
_CHUNK = 1 << 22  # elements per pass: bounds the temporary masks for large float arrays
_warned_range = False

SPARSE_LOSSES = ("sparse_categorical_crossentropy",)
CATEGORICAL_LOSSES = ("categorical_crossentropy",)
BINARY_LOSSES = ("binary_crossentropy",)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def input_shape_problem(shape, input_shape) -> str | None:
    """What is wrong with images of `shape` for a model taking `input_shape` (one example's
    shape), or None: the message fit/evaluate/predict and exported models' Predictor raise."""
    shape, want = tuple(shape), tuple(input_shape)
    if len(shape) != len(want) + 1:
        return (f"images of shape {shape} have {len(shape)} axes; expected {len(want) + 1}: "
                f"[batch, {', '.join(map(str, want))}]")
    got = shape[1:]
    if got == want:
        return None
    hint = (f": {got[-1]} channel(s) where the model takes {want[-1]}"
            if got[:-1] == want[:-1] and got[-1] != want[-1] else "")
    return f"images of shape {got} do not fit the model's input shape {want}{hint}"


def check_images(x: np.ndarray, what: str, input_range: str = "0..1") -> None:
    """DataError for NaN/inf in float images (naming the first bad example); warn once when
    float images look scaled for another model: non-negative and above 1.5 for a model taking
    0..1, or within [0, 1] for one that scales its own 0..255 pixels (floats are used as given).

    A random-access source (prepared records) is not read whole here: its float values were
    checked for NaN/inf when they were written (`jaxcnn.data.records.record_array`)."""
    global _warned_range
    if is_source(x) or not np.issubdtype(x.dtype, np.floating) or x.size == 0:
        return
    flat = x.reshape(len(x), -1)
    per = max(1, _CHUNK // max(1, flat.shape[1]))
    lo, hi = np.inf, -np.inf
    for start in range(0, len(flat), per):
        chunk = flat[start:start + per]
        finite = np.isfinite(chunk)
        if not finite.all():
            row = start + _first(~finite.all(axis=1))
            value = flat[row][~np.isfinite(flat[row])][0]
            raise DataError(f"{what}: image {row} holds {value} (NaN/inf in the inputs): fix or drop "
                            "that example before training")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    # Non-negative floats past 1.5 look like unscaled pixels; data with negative values (e.g.
    # standardized spectrograms) was evidently preprocessed on purpose and passes quietly.
    if _warned_range or lo < FLOAT_IMAGE_RANGE[0]:
        return
    if input_range == "0..255" and 0.0 < hi <= 1.0:
        _warned_range = True
        warnings.warn(f"{what}: float images range over [{lo:g}, {hi:g}], but the model scales its own "
                      "pixels (it takes 0..255, e.g. through a Rescaling layer) and float inputs are used "
                      "as given: pass the pixels unscaled (uint8, or floats in 0..255)", stacklevel=3)
    elif input_range != "0..255" and hi > FLOAT_IMAGE_RANGE[1]:
        _warned_range = True
        warnings.warn(f"{what}: float images range over [{lo:g}, {hi:g}], outside [0, 1.5]; the model takes "
                      "0..1 and float inputs are used as given (only uint8 is scaled by 1/255): divide "
                      "by 255 if they are 0..255 pixels, or pass them as uint8", stacklevel=3)


def _bad_label(y: np.ndarray, bad: np.ndarray, what: str, need: str) -> DataError:
    i = _first(bad)
    value = y[i].tolist()
    return DataError(f"{what}: label {i} is {value!r}; {need}")


def check_labels(y, loss, num_outputs: int | None, what: str, num_examples: int | None = None) -> np.ndarray:
    """The labels, checked for `loss` (a Keras loss name; other losses get the shape checks only).

    Shape (N,), or (N, 1) squeezed as Keras does; categorical_crossentropy also takes (N, C)
    one-hot (or probability) rows of the model's width. Sparse and categorical integer labels
    must be whole numbers in [0, num_outputs); binary labels 0 or 1. Integer-valued labels come
    back as int32.
    """
    y = np.asarray(y)
    if num_examples is not None and len(y) != num_examples:
        raise DataError(f"{what}: {num_examples} images but {len(y)} labels")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
            or y.dtype == np.bool_):
        raise DataError(f"{what}: labels must be numbers, got dtype {y.dtype}")
    name = loss if isinstance(loss, str) else None
    if name in CATEGORICAL_LOSSES and y.ndim == 2 and y.shape[1] != 1:
        if num_outputs is not None and y.shape[1] != num_outputs:
            raise DataError(f"{what}: one-hot labels have {y.shape[1]} columns but the model has "
                            f"{num_outputs} outputs")
        rows = y.astype(np.float64)
        bad = ~np.isfinite(rows).all(axis=1) | (rows < 0).any(axis=1) | (rows > 1).any(axis=1)
        bad |= np.abs(rows.sum(axis=1) - 1.0) > 1e-3
        if bad.any():
            raise _bad_label(y, bad, what, "categorical_crossentropy needs one-hot (or probability) rows "
                                           "that sum to 1")
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = ""
        if name in SPARSE_LOSSES + BINARY_LOSSES and y.ndim == 2:
            hint = (f"; these look one-hot: use loss='categorical_crossentropy', or pass y.argmax(-1) "
                    f"to {name}")
        raise DataError(f"{what}: labels must have shape (N,) or (N, 1), got {y.shape}{hint}")
    if name is None or name not in SPARSE_LOSSES + CATEGORICAL_LOSSES + BINARY_LOSSES:
        return y
    if np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise _bad_label(y, bad, what, f"{name} needs whole-number labels")
    if name in BINARY_LOSSES:
        bad = (y != 0) & (y != 1)
        if bad.any():
            raise _bad_label(y, bad, what, "binary_crossentropy needs labels 0 or 1")
    elif num_outputs is not None:
        bad = (y < 0) | (y >= num_outputs)
        if bad.any():
            raise _bad_label(y, bad, what, f"{name} needs class indices in [0, {num_outputs}) "
                                           f"(the model has {num_outputs} outputs)")
    return y.astype(np.int32)


def model_output_width(model, input_shape) -> int | None:
    """The model's number of outputs per example (from shapes alone), or None when it cannot tell."""
    try:
        rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
        out, _ = jax.eval_shape(lambda x: model.init_with_output(rngs, x, train=False),
                                jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    except Exception:  # noqa: BLE001 - a model with another call signature: skip the range check
        return None
    shape = getattr(out, "shape", None)
    if shape is None or len(shape) > 2:
        return None
    return int(shape[-1]) if len(shape) == 2 else 1
