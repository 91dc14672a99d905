"""The live strip's deltas and event stream (streamdx_web.strip) on a LiveCache fed by hand."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np

from streamdx.encoding import encode_i16
from streamdx.schemas import EcgLabelV1, EcgSamplesV1
from streamdx_web.live import LiveCache
from streamdx_web.strip import delta, event_stream, parse_position, window

FS = 250.0
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def chunk(stream: str, k: int, n: int = 25) -> EcgSamplesV1:
    x = (np.arange(n) + k * n).astype(np.int16)
    return EcgSamplesV1(stream_id=stream, seq=k, fs=FS, t0=T0 + timedelta(seconds=k * n / FS), gain=1000.0, n=n,
                        data=encode_i16(x), source="simulator")


def label(stream: str, i: int) -> EcgLabelV1:
    return EcgLabelV1(stream_id=stream, beat_index=i, r_sample=100 * i, r_time=T0 + timedelta(seconds=0.4 * i),
                      rr_prev_s=0.8, quality="ok", quality_prob=0.0, af_prob=0.1, af=False, beat_class="N",
                      class_probs={"N": 1.0})


def test_first_delta_then_only_what_is_new() -> None:
    live = LiveCache(window_s=30)
    for k in range(8):
        live.apply(chunk("s", k))
    live.apply(label("s", 0))
    v = live.streams["s"]
    body, t, b = delta(v, -math.inf, -1, True)
    assert body is not None and body["reset"] and b == 0
    assert len(body["s"]) == 1 and len(body["s"][0][1]) == 200  # contiguous chunks merge
    assert body["s"][0][1][:3] == [0, 1, 2]  # µV (gain 1000 counts/mV → 1 µV per count)
    assert math.isclose(t, T0.timestamp() + 199 / FS)
    assert delta(v, t, b, False)[0] is None
    live.apply(chunk("s", 8))
    live.apply(label("s", 1))
    body, t2, b2 = delta(v, t, b, False)
    assert body is not None and "reset" not in body
    assert [len(y) for _, y in body["s"]] == [25] and body["s"][0][1][0] == 200
    assert [r[5] for r in body["b"]] == [1] and b2 == 1 and t2 > t


def test_a_gap_makes_a_new_segment() -> None:
    live = LiveCache(window_s=30)
    live.apply(chunk("s", 0))
    live.apply(chunk("s", 3))
    body, _, _ = delta(live.streams["s"], -math.inf, -1, True)
    assert body is not None and [len(y) for _, y in body["s"]] == [25, 25]


def test_window_around_a_time_or_none() -> None:
    live = LiveCache(window_s=30)
    for k in range(100):  # 10 s
        live.apply(chunk("s", k))
    v = live.streams["s"]
    w = window(v, T0.timestamp() + 5)
    assert w is not None and sum(len(y) for _, y in w["s"]) == 2500
    assert window(v, T0.timestamp() - 3600) is None


def test_position_from_last_event_id_or_query() -> None:
    assert parse_position("12.5:7", None, None) == (12.5, 7, False)
    assert parse_position(None, 3.0, None) == (3.0, -1, False)
    assert parse_position("junk", None, None) == (-math.inf, -1, True)
    assert parse_position("nan:1", None, None)[2] is True


async def test_event_stream_throttles_coalesces_and_beats() -> None:
    live = LiveCache(window_s=30)
    live.apply(chunk("s", 0))
    out: list[str] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async for piece in event_stream(live, "s", -math.inf, -1, True, stopping=stop.is_set,
                                        min_interval_s=0.1, heartbeat_s=0.3, poll_s=0.05):
            out.append(piece)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    for k in range(1, 21):  # 20 updates in 0.2 s → coalesced into ≤ ~3 events
        live.apply(chunk("s", k))
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.8)  # quiet: heartbeats
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    events = [json.loads(p.split("data: ", 1)[1]) for p in out if p.startswith("id: ")]
    assert out[0] == "retry: 1000\n\n"
    assert events[0]["reset"]
    assert 2 <= len(events) <= 5
    assert sum(len(y) for e in events for _, y in e["s"]) == 21 * 25  # every sample once
    assert any(p.startswith(": heartbeat") for p in out)
