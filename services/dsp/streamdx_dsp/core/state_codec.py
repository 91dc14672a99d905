"""Versioned, compact binary encoding of :class:`~streamdx_dsp.core.stream.EcgStreamState`.

Layout: ``b"SDXE"`` magic, format version (uint16, little endian), then a
little-endian uint32 header length, a JSON header (scalars and, for every array, its
dotted name, dtype, shape and byte range) and the concatenated array bytes. No pickle is
involved, so a blob from an untrusted store can at worst be rejected. Arrays keep their
exact in-memory dtype, so ``loads(dumps(s))`` continues the stream bit-identically.

Format 4 (written): not compressed (the state is mostly float samples, which deflate
shrank by only a third at many times the cost of the rest of a checkpoint), the
denoiser's ring buffers stored as their live part only
(:func:`~streamdx_dsp.core.wavelet_stream.wavelet_ring_pack`), the detector's scalars and
filter memories as one vector ``detector.buf`` (:mod:`streamdx_dsp.core.detector_buf`).
Format 3 (read): the detector's scalars as header scalars and its filter memories as
three arrays. Format 2 (read): format 3 zlib-compressed, with full rings. Sizes are
measured by the tests and ``bench dsp``.

The fixed-capacity buffers with a count (the detector's search-back pool, the fixed
window's queue) are stored as their valid rows only, and padded back to their capacity
when read; the count is the number of stored rows.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import struct
import typing
import zlib
from typing import Any

import numpy as np

from streamdx_dsp.core import detector_buf as db
from streamdx_dsp.core.rpeaks import SEARCHBACK_POOL_MAX, ecg_rpeak_params
from streamdx_dsp.core.stream import FS_MAX, FS_MIN, PENDING_MAX, EcgStreamState
from streamdx_dsp.core.wavelet_stream import wavelet_ring_pack, wavelet_ring_unpack

__all__ = ["STATE_FORMAT_VERSION", "ecg_state_dumps", "ecg_state_loads"]

STATE_FORMAT_VERSION = 4
_READABLE = (2, 3, 4)
_RING = "wavelet.ring"
_RING_TAIL = "wavelet.ring_tail"
_MAGIC = b"SDXE"
#: Buffers stored as their valid rows: array -> (its capacity, the shape of a row).
_LIVE: dict[str, tuple[int, tuple[int, ...]]] = {
    "detector.sb": (SEARCHBACK_POOL_MAX, (5,)),
    "pending": (PENDING_MAX, ()),
}
#: Format 3: the detector's scalars (header) and memories (arrays) that form ``detector.buf``.
_V3_DETECTOR_SCALARS = (
    (db.BUF_FEAT_START, "feat_start"), (db.BUF_CAND_NEXT, "cand_next"), (db.BUF_SPK, "spk"), (db.BUF_NPK, "npk"),
    (db.BUF_LAST_R, "last_r"), (db.BUF_LAST_SLOPE, "last_slope"), (db.BUF_RR_N, "rr_n"),
)  # fmt: skip
_V3_DETECTOR_MEMORIES = ((db.BUF_ZI, "zi"), (db.BUF_F_TAIL, "f_tail"))  # 4 values each; then sq_tail
_ALLOWED_DTYPES = {"float64", "float32", "float16", "int64", "uint8"}
#: Little-endian dtype of each allowed dtype, and its name (``dtype.name`` is slow to compute).
_LE = {np.dtype(n): (np.dtype(n).newbyteorder("<"), n) for n in _ALLOWED_DTYPES}


@functools.lru_cache(maxsize=64)
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@functools.lru_cache(maxsize=64)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _flatten(obj: Any, prefix: str, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    cls: type = type(obj)
    for name in _field_names(cls):
        v = getattr(obj, name)
        key = prefix + name
        if isinstance(v, np.ndarray):
            arrays[key] = v
        elif dataclasses.is_dataclass(v):
            _flatten(v, key + ".", scalars, arrays)
        elif isinstance(v, (bool, int, float)):
            scalars[key] = v
        else:  # pragma: no cover - guarded by the state definition
            raise TypeError(f"cannot encode field {key} of type {type(v)}")


#: Per state class (its structure is fixed): the dotted paths of its scalar and array fields and
#: one getter for each group, found by walking the first state of the class.
_LAYOUT: dict[type, tuple[tuple[str, ...], tuple[str, ...], Any, Any]] = {}


def _layout(state: EcgStreamState) -> tuple[tuple[str, ...], tuple[str, ...], Any, Any]:
    cls: type = type(state)
    layout = _LAYOUT.get(cls)
    if layout is None:
        sc: dict[str, Any] = {}
        ar: dict[str, np.ndarray] = {}
        _flatten(state, "", sc, ar)
        layout = _LAYOUT[cls] = (tuple(sc), tuple(ar), operator.attrgetter(*sc), operator.attrgetter(*ar))
    return layout


def ecg_state_dumps(state: EcgStreamState) -> bytes:
    """Encode a stream state to bytes (see module docstring for the format)."""
    scalar_keys, array_keys, get_scalars, get_arrays = _layout(state)
    scalars = dict(zip(scalar_keys, get_scalars(state), strict=True))
    arrays = dict(zip(array_keys, get_arrays(state), strict=True))
    arrays[_RING_TAIL] = wavelet_ring_pack(arrays.pop(_RING), state.wavelet.cnt)
    arrays["detector.sb"] = arrays["detector.sb"][: state.detector.sb_n]
    arrays["pending"] = arrays["pending"][: state.pending_n]
    meta = []
    chunks = []
    pos = 0
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        le, dtype_name = _LE[a.dtype]
        b = a.astype(le, copy=False).tobytes()
        meta.append([name, dtype_name, a.shape, pos, len(b)])
        chunks.append(b)
        pos += len(b)
    header = json.dumps({"s": scalars, "a": meta}, separators=(",", ":")).encode()
    return b"".join((_MAGIC, struct.pack("<HI", STATE_FORMAT_VERSION, len(header)), header, *chunks))


def _build(cls: type, prefix: str, scalars: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, key + ".", scalars, arrays)
        elif key in arrays:
            kwargs[f.name] = arrays[key]
        elif key in scalars:
            val = scalars[key]
            if hint is bool:
                if not isinstance(val, bool):
                    raise ValueError(f"field {key}: expected bool")
            elif hint is int:
                if isinstance(val, bool) or not isinstance(val, int):
                    raise ValueError(f"field {key}: expected int")
            elif hint is float:
                if isinstance(val, bool) or not isinstance(val, (int, float)):
                    raise ValueError(f"field {key}: expected float")
                val = float(val)
            kwargs[f.name] = val
        elif f.default is not dataclasses.MISSING:  # a field added later, with its default
            kwargs[f.name] = f.default
        else:
            raise ValueError(f"state blob lacks field {key}")
    return cls(**kwargs)


def _detector_buf_from_v3(scalars: dict[str, Any], arrays: dict[str, np.ndarray], sb_rows: int) -> None:
    """Format 3 (and 2): gather the detector's scalars and memories into ``detector.buf``."""
    sq_tail = arrays.pop("detector.sq_tail")
    buf = np.zeros(db.BUF_SQ_TAIL + sq_tail.size)
    for i, name in _V3_DETECTOR_SCALARS:
        buf[i] = scalars.pop("detector." + name)
    buf[db.BUF_SB_N] = sb_rows
    buf[db.BUF_SB_NEXT] = scalars.pop("detector.sb_next", -1)
    scalars.pop("detector.sb_n", None)
    for i, name in _V3_DETECTOR_MEMORIES:
        buf[i : i + 4] = arrays.pop("detector." + name)
    buf[db.BUF_SQ_TAIL :] = sq_tail
    arrays["detector.buf"] = buf


def ecg_state_loads(blob: bytes) -> EcgStreamState:
    """Decode bytes from :func:`ecg_state_dumps`.

    Raises
    ------
    ValueError
        If the blob is not a StreamDx ECG state, is corrupted, or has another format
        version.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError("state blob must be bytes")
    data = bytes(blob)
    if len(data) < 6 or data[:4] != _MAGIC:
        raise ValueError("not a StreamDx ECG stream state")
    (version,) = struct.unpack("<H", data[4:6])
    if version not in _READABLE:
        raise ValueError(f"unsupported ECG state version {version} (expected one of {_READABLE})")
    try:
        body = zlib.decompress(data[6:]) if version == 2 else data[6:]
        (hlen,) = struct.unpack("<I", body[:4])
        header = json.loads(body[4 : 4 + hlen])
        payload = body[4 + hlen :]
        scalars = header["s"]
        arrays: dict[str, np.ndarray] = {}
        for name, dtype, shape, off, nbytes in header["a"]:
            if dtype not in _ALLOWED_DTYPES:
                raise ValueError(f"unexpected dtype {dtype}")
            dt = np.dtype(dtype).newbyteorder("<")
            if off < 0 or off + nbytes > len(payload) or nbytes != int(np.prod(shape)) * dt.itemsize:
                raise ValueError(f"bad array extent for {name}")
            arr = np.frombuffer(payload, dtype=dt, count=int(np.prod(shape)), offset=off)
            arrays[name] = arr.astype(np.dtype(dtype), copy=True).reshape(shape)
        if _RING_TAIL in arrays:
            arrays[_RING] = wavelet_ring_unpack(arrays.pop(_RING_TAIL), arrays["wavelet.cnt"])
        rows: dict[str, int] = {}
        for key, (capacity, row) in _LIVE.items():
            if key in arrays:
                live = arrays[key]
                if live.ndim != 1 + len(row) or live.shape[1:] != row:
                    raise ValueError(f"bad shape {live.shape} for {key}")
                buf = np.zeros((max(capacity, live.shape[0]), *live.shape[1:]), live.dtype)
                buf[: live.shape[0]] = live
                arrays[key] = buf
                rows[key] = live.shape[0]
        scalars["pending_n"] = rows.get("pending", 0)
        if version < 4:
            _detector_buf_from_v3(scalars, arrays, rows.get("detector.sb", 0))
        state = _build(EcgStreamState, "", scalars, arrays)
        if not FS_MIN <= state.fs <= FS_MAX:
            raise ValueError("corrupted ECG stream state: fs out of range")
        det = state.detector
        if det.buf.size != db.buf_length(ecg_rpeak_params(state.fs).mwi) or det.sb_n != rows.get("detector.sb", 0):
            raise ValueError("corrupted ECG stream state: detector vector does not match its fs or pool")
    except ValueError:
        raise
    except Exception as exc:  # zlib.error, KeyError, struct.error, TypeError, json errors
        raise ValueError(f"corrupted ECG stream state: {exc}") from exc
    return typing.cast(EcgStreamState, state)
