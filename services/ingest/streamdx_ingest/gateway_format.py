"""Binary batch format of ``POST /v1/gateway/ecg``: many devices' ECG chunks in one request.

A gateway (a hospital ward's bedside hub, a phone relaying several wearables, a test rig)
sends the chunks of all the devices it carries in one body, as raw int16 samples instead of
base64 JSON. Every device keeps its own API key: the batch lists the keys of the devices it
carries, and each chunk names the key it is sent under, so per-device authorisation is exactly
that of ``POST /v1/streams/{id}/ecg``.

Layout (little endian), media type :data:`GATEWAY_MEDIA_TYPE`::

    "SDXG"          4 bytes   magic
    version         u8        1
    n_keys          u8        1..255
    n_chunks        u16       1..65535 (the service may accept fewer, see ``GATEWAY_MAX_CHUNKS``)
    n_keys times:   u8 length, then that many bytes: a device API key (ASCII)
    n_chunks times:
        key_index   u8        index into the keys above
        id_length   u8        then that many bytes: the stream id (ASCII)
        seq         u32       chunk sequence number of the stream (+1 per chunk)
        fs          f64       sampling frequency (Hz)
        t0          f64       time of the first sample, seconds since the Unix epoch (UTC)
        gain        f64       ADC counts per mV
        baseline    i16       ADC count of 0 mV
        n           u16       number of samples (>= 1)
        samples     n x i16   ADC counts

:func:`gateway_batch_decode` checks the structure only (a malformed body is refused as a
whole); the values of each chunk are checked per chunk by the service, so one bad chunk
does not cost the others.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "GATEWAY_MEDIA_TYPE",
    "GatewayChunk",
    "GatewayFormatError",
    "gateway_batch_decode",
    "gateway_batch_encode",
]

GATEWAY_MEDIA_TYPE = "application/vnd.streamdx.ecg-batch"
_MAGIC = b"SDXG"
_VERSION = 1
_HEAD = struct.Struct("<4sBBH")
_CHUNK = struct.Struct("<IdddhH")


class GatewayFormatError(ValueError):
    """The body is not a well-formed gateway batch (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class GatewayChunk:
    """One chunk of a gateway batch (values not yet validated)."""

    key_index: int
    stream_id: str
    seq: int
    fs: float
    t0: float
    gain: float
    baseline: int
    adc: npt.NDArray[np.int16]


def gateway_batch_encode(keys: Sequence[str], chunks: Sequence[GatewayChunk]) -> bytes:
    """Serialise a batch (the gateway's side). Raises :class:`GatewayFormatError` on values
    the layout cannot carry."""
    if not 1 <= len(keys) <= 255 or not 1 <= len(chunks) <= 65535:
        raise GatewayFormatError("a batch carries 1..255 keys and 1..65535 chunks")
    parts = [_HEAD.pack(_MAGIC, _VERSION, len(keys), len(chunks))]
    for key in keys:
        raw = key.encode("ascii")
        if not 1 <= len(raw) <= 255:
            raise GatewayFormatError("a key is 1..255 ASCII bytes")
        parts += [bytes([len(raw)]), raw]
    for c in chunks:
        sid = c.stream_id.encode("ascii")
        adc = np.ascontiguousarray(c.adc, dtype="<i2")
        if not 0 <= c.key_index < len(keys) or not 1 <= len(sid) <= 255 or not 1 <= adc.size <= 65535:
            raise GatewayFormatError("key index, stream id (1..255 bytes) or sample count (1..65535) out of range")
        parts += [bytes([c.key_index, len(sid)]), sid, _CHUNK.pack(c.seq, c.fs, c.t0, c.gain, c.baseline, adc.size),
                  adc.tobytes()]  # fmt: skip
    return b"".join(parts)


def gateway_batch_decode(body: bytes, max_chunks: int) -> tuple[list[str], list[GatewayChunk]]:
    """Parse a batch; raise :class:`GatewayFormatError` naming the first structural problem.

    Structure only: lengths, indices, trailing bytes, key and stream-id encoding; ``max_chunks``
    bounds the chunk count. The chunks' values (fs, gain, t0, samples) are the caller's to check.
    """
    if len(body) < _HEAD.size:
        raise GatewayFormatError("body shorter than the batch header")
    magic, version, n_keys, n_chunks = _HEAD.unpack_from(body, 0)
    if magic != _MAGIC:
        raise GatewayFormatError("not a gateway batch (magic is not SDXG)")
    if version != _VERSION:
        raise GatewayFormatError(f"batch version {version} is not supported (expected {_VERSION})")
    if n_keys < 1 or n_chunks < 1:
        raise GatewayFormatError("a batch carries at least one key and one chunk")
    if n_chunks > max_chunks:
        raise GatewayFormatError(f"{n_chunks} chunks in one batch; at most {max_chunks} (GATEWAY_MAX_CHUNKS)")
    pos = _HEAD.size
    keys: list[str] = []
    for i in range(n_keys):
        raw, pos = _field(body, pos, f"key {i}")
        try:
            keys.append(raw.decode("ascii"))
        except UnicodeDecodeError as exc:
            raise GatewayFormatError(f"key {i} is not ASCII") from exc
    chunks: list[GatewayChunk] = []
    for i in range(n_chunks):
        if pos + 1 > len(body):
            raise GatewayFormatError(f"chunk {i}: truncated")
        key_index = body[pos]
        if key_index >= n_keys:
            raise GatewayFormatError(f"chunk {i}: key index {key_index} but {n_keys} keys")
        raw, pos = _field(body, pos + 1, f"chunk {i} stream id")
        try:
            stream_id = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise GatewayFormatError(f"chunk {i}: stream id is not ASCII") from exc
        if pos + _CHUNK.size > len(body):
            raise GatewayFormatError(f"chunk {i}: truncated header")
        seq, fs, t0, gain, baseline, n = _CHUNK.unpack_from(body, pos)
        pos += _CHUNK.size
        if n < 1:
            raise GatewayFormatError(f"chunk {i}: no samples")
        end = pos + 2 * n
        if end > len(body):
            raise GatewayFormatError(f"chunk {i}: {n} samples announced, body truncated")
        adc = np.frombuffer(body, dtype="<i2", count=n, offset=pos).astype(np.int16)
        pos = end
        chunks.append(GatewayChunk(key_index, stream_id, seq, fs, t0, gain, baseline, adc))
    if pos != len(body):
        raise GatewayFormatError(f"{len(body) - pos} bytes after the last chunk")
    return keys, chunks


def _field(body: bytes, pos: int, what: str) -> tuple[bytes, int]:
    """A u8-length-prefixed byte string at ``pos`` and the position after it."""
    if pos >= len(body):
        raise GatewayFormatError(f"{what}: truncated")
    n = body[pos]
    if n < 1 or pos + 1 + n > len(body):
        raise GatewayFormatError(f"{what}: empty or truncated")
    return body[pos + 1 : pos + 1 + n], pos + 1 + n
