"""Compact binary encodings for sample arrays carried inside JSON messages.

ECG chunks travel as little-endian ``int16`` ADC counts, base64-encoded: a 1-s chunk of
250 samples costs 500 raw bytes (668 characters of base64) instead of the 2–3 kB that the
same samples cost as JSON floats. Beat waveforms travel as little-endian ``float32``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EncodingError",
    "decode_f32",
    "decode_i16",
    "encode_f32",
    "encode_i16",
]


class EncodingError(ValueError):
    """Raised when an encoded payload cannot be decoded to the declared array."""


def encode_i16(samples: npt.ArrayLike) -> str:
    """Encode integer ADC counts as base64 of little-endian int16.

    Parameters
    ----------
    samples : array_like of int
        Values that must fit in int16; a value outside [-32768, 32767] raises.
    """
    arr = np.asarray(samples)
    if arr.size and (arr.min() < -32768 or arr.max() > 32767):
        raise EncodingError("sample outside the int16 range")
    return base64.b64encode(arr.astype("<i2", copy=False).tobytes()).decode("ascii")


def _decode(data: str, dtype: str, n: int | None, what: str) -> npt.NDArray[Any]:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"not valid base64: {exc}") from exc
    size = np.dtype(dtype).itemsize
    if len(raw) % size:
        raise EncodingError(f"{what} payload length is not a multiple of {size}")
    arr = np.frombuffer(raw, dtype=dtype)
    if n is not None and arr.size != n:
        raise EncodingError(f"payload holds {arr.size} values, expected {n}")
    return arr


def decode_i16(data: str, n: int | None = None) -> npt.NDArray[np.int16]:
    """Decode base64 little-endian int16; check the count when ``n`` is given."""
    return _decode(data, "<i2", n, "int16").astype(np.int16)


def encode_f32(values: npt.ArrayLike) -> str:
    """Encode floats as base64 of little-endian float32 (finite values only)."""
    arr = np.asarray(values, dtype="<f4")
    if not np.all(np.isfinite(arr)):
        raise EncodingError("non-finite value in float payload")
    return base64.b64encode(arr.tobytes()).decode("ascii")


def decode_f32(data: str, n: int | None = None) -> npt.NDArray[np.float32]:
    """Decode base64 little-endian float32; check the count when ``n`` is given."""
    return _decode(data, "<f4", n, "float32").astype(np.float32)
