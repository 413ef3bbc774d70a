"""MNIST-format IDX files (optionally gzip-compressed), read and written with numpy alone."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np

from jaxcnn.data.errors import DataError

# IDX type codes -> big-endian numpy dtypes.
_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}


def _read_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return f.read()
        with open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from e


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file into an array of its stored shape and dtype (native byte order)."""
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _DTYPES or ndim == 0:
        raise DataError(
            f"{path}: wrong magic number 0x{int.from_bytes(data[:4], 'big'):08x} "
            "(expected 0x0000TTNN: an IDX type code and a dimension count)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no int64 overflow
    body = len(data) - header
    if body != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes of data) but the file holds {body}"
            + (" (truncated)" if body < expected else " (trailing bytes)")
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write `array` as an IDX file (gzip-compressed when `path` ends in .gz)."""
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    code = _CODES[native]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(_DTYPES[code], copy=False).tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(payload)
