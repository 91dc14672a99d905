"""Compact binary encodings for sample arrays carried inside JSON messages.

ECG chunks travel as little-endian ``int16`` ADC counts, base64-encoded: a 1-s chunk of
250 samples costs 500 raw bytes (668 characters of base64) instead of the 2–3 kB that the
same samples cost as JSON floats. Beat waveforms travel as little-endian ``float32``.
"""

from __future__ import annotations

import base64
import binascii

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


def decode_i16(data: str, n: int | None = None) -> npt.NDArray[np.int16]:
    """Decode base64 little-endian int16; check the count when ``n`` is given."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"not valid base64: {exc}") from exc
    if len(raw) % 2:
        raise EncodingError("int16 payload has an odd number of bytes")
    arr = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    if n is not None and arr.size != n:
        raise EncodingError(f"payload holds {arr.size} samples, header says {n}")
    return arr


def encode_f32(values: npt.ArrayLike) -> str:
    """Encode floats as base64 of little-endian float32 (finite values only)."""
    arr = np.asarray(values, dtype="<f4")
    if not np.all(np.isfinite(arr)):
        raise EncodingError("non-finite value in float payload")
    return base64.b64encode(arr.tobytes()).decode("ascii")


def decode_f32(data: str, n: int | None = None) -> npt.NDArray[np.float32]:
    """Decode base64 little-endian float32; check the count when ``n`` is given."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"not valid base64: {exc}") from exc
    if len(raw) % 4:
        raise EncodingError("float32 payload length is not a multiple of 4")
    arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if n is not None and arr.size != n:
        raise EncodingError(f"payload holds {arr.size} values, expected {n}")
    return arr
