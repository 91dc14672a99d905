"""The gateway batch wire format: round trip, and every structural defect refused with a reason."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdx_ingest.gateway_format import GatewayChunk, GatewayFormatError, gateway_batch_decode, gateway_batch_encode


def _chunk(i: int, n: int = 250, key: int = 0) -> GatewayChunk:
    adc = np.random.default_rng(i).integers(-32768, 32767, n).astype(np.int16)
    return GatewayChunk(key, f"dev-{i}:MLII", i, 250.0, 1.7e9 + i, 200.0, -3, adc)


@settings(max_examples=50, deadline=None)
@given(sizes=st.lists(st.integers(1, 600), min_size=1, max_size=20), n_keys=st.integers(1, 5))
def test_round_trip(sizes: list[int], n_keys: int) -> None:
    keys = [f"sdx_key{k}" for k in range(n_keys)]
    chunks = [_chunk(i, n, key=i % n_keys) for i, n in enumerate(sizes)]
    got_keys, got = gateway_batch_decode(gateway_batch_encode(keys, chunks), max_chunks=100)
    assert got_keys == keys
    assert len(got) == len(chunks)
    for a, b in zip(got, chunks, strict=True):
        assert (a.key_index, a.stream_id, a.seq, a.fs, a.t0, a.gain, a.baseline) == (
            b.key_index, b.stream_id, b.seq, b.fs, b.t0, b.gain, b.baseline)
        assert a.adc.dtype == np.int16 and np.array_equal(a.adc, b.adc)


def test_raw_samples_cost_two_bytes_each() -> None:
    body = gateway_batch_encode(["k"], [_chunk(0, 250)])
    assert len(body) < 250 * 2 + 60


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b[:5], "shorter than the batch header"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + bytes([2]) + b[5:], "version 2"),
        (lambda b: b[:5] + bytes([0]) + b[6:], "at least one key"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\x00", "bytes after the last chunk"),
        (lambda b: b[:6] + struct.pack("<H", 3) + b[8:], "truncated"),
        (lambda b: b[:6] + struct.pack("<H", 5000) + b[8:], "at most 100"),
    ],
)
def test_structural_defects_refused(mutate: object, reason: str) -> None:
    body = gateway_batch_encode(["sdx_key"], [_chunk(0), _chunk(1)])
    with pytest.raises(GatewayFormatError, match=reason):
        gateway_batch_decode(mutate(body), max_chunks=100)  # type: ignore[operator]


def test_key_index_beyond_the_keys_refused() -> None:
    body = bytearray(gateway_batch_encode(["a", "b"], [_chunk(0, key=1)]))
    body[8 + 2 + 2] = 7  # the chunk's key index (after the header and the keys "a", "b")
    with pytest.raises(GatewayFormatError, match="key index 7 but 2 keys"):
        gateway_batch_decode(bytes(body), max_chunks=10)


def test_non_ascii_key_and_zero_samples_refused() -> None:
    body = bytearray(gateway_batch_encode(["k"], [_chunk(0, 3)]))
    body[9] = 0xFF  # the key's byte
    with pytest.raises(GatewayFormatError, match="not ASCII"):
        gateway_batch_decode(bytes(body), max_chunks=10)
    good = gateway_batch_encode(["k"], [_chunk(0, 1)])
    zero = good[:-4] + struct.pack("<H", 0) + b"\x00\x00"  # n = 0 and one stray sample
    with pytest.raises(GatewayFormatError, match="no samples"):
        gateway_batch_decode(zero, max_chunks=10)


def test_encoder_refuses_what_the_layout_cannot_carry() -> None:
    with pytest.raises(GatewayFormatError):
        gateway_batch_encode([], [_chunk(0)])
    with pytest.raises(GatewayFormatError):
        gateway_batch_encode(["k"], [_chunk(0, key=3)])
