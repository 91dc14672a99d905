"""Gateway batches (POST /v1/gateway/ecg) on the real broker and Redis: per-device auth, per-chunk
validation, exactly-once per (stream, seq), gaps, the trace header, whole-batch refusals."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from streamdx.messaging.codec import ORIGIN_HEADER
from streamdx.schemas import EcgSamplesV1
from streamdx_ingest.gateway_format import GATEWAY_MEDIA_TYPE, GatewayChunk, gateway_batch_encode
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages, read_topic
from tests.integration.servers import serve_ingest
from tests.integration.test_ingest import ADMIN, settings_for

pytestmark = pytest.mark.integration
T0 = (datetime.now(UTC) - timedelta(minutes=10)).timestamp()
HEADERS = {"Content-Type": GATEWAY_MEDIA_TYPE}


@pytest.fixture(scope="module")
async def ingest(stack: StackInfo) -> AsyncIterator[str]:
    async with serve_ingest(settings_for(stack, gateway_max_chunks=64, gateway_max_bytes=64 * 1024)) as base:
        yield base


@pytest.fixture
async def client(ingest: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest, timeout=30) as c:
        yield c


async def new_device(client: httpx.AsyncClient) -> tuple[str, str]:
    device_id = f"gw-{uuid.uuid4().hex[:10]}"
    r = await client.post("/v1/admin/devices", json={"device_id": device_id},
                          headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    return device_id, r.json()["api_key"]


def adc(stream: str, seq: int, n: int = 250) -> np.ndarray:
    return np.random.default_rng(abs(hash((stream, seq))) % 2**32).integers(-400, 400, n).astype(np.int16)


def gchunk(key: int, stream: str, seq: int, fs: float = 250.0, **kw: object) -> GatewayChunk:
    values: dict[str, object] = {"key_index": key, "stream_id": stream, "seq": seq, "fs": fs,
                                 "t0": T0 + seq, "gain": 200.0, "baseline": 0, "adc": adc(stream, seq)}
    values.update(kw)
    return GatewayChunk(**values)  # type: ignore[arg-type]


async def post(client: httpx.AsyncClient, keys: list[str], chunks: list[GatewayChunk]) -> dict:  # type: ignore[type-arg]
    r = await client.post("/v1/gateway/ecg", content=gateway_batch_encode(keys, chunks), headers=HEADERS)
    assert r.status_code == 200, r.text
    body: dict = r.json()  # type: ignore[type-arg]
    return body


async def test_batch_of_many_devices_published_once_each(client: httpx.AsyncClient, stack: StackInfo) -> None:
    devices = [await new_device(client) for _ in range(3)]
    keys = [k for _, k in devices]
    chunks = [gchunk(i, f"{dev}:MLII", seq) for seq in range(2) for i, (dev, _) in enumerate(devices)]
    before = int(time.time() * 1000)
    reply = await post(client, keys, chunks)
    assert (reply["accepted"], reply["duplicates"], reply["errors"]) == (6, 0, 0)
    assert [(r["stream_id"], r["seq"]) for r in reply["results"]] == [(c.stream_id, c.seq) for c in chunks]
    again = await post(client, keys, chunks)  # the gateway retries the whole batch
    assert (again["accepted"], again["duplicates"]) == (0, 6)
    for dev, _ in devices:
        msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, f"{dev}:MLII")
        assert [m.seq for m in msgs] == [0, 1]
        for m in msgs:
            assert np.array_equal(m.adc(), adc(f"{dev}:MLII", m.seq))
            assert m.fs == 250.0 and abs(m.t0.timestamp() - (T0 + m.seq)) < 1e-3
    records = [r for r in await read_topic(stack.kafka_bootstrap, EcgSamplesV1.TOPIC)
               if r.key == f"{devices[0][0]}:MLII".encode()]
    origin = int(dict(records[0].headers)[ORIGIN_HEADER])
    assert before <= origin <= int(time.time() * 1000)  # arrival at ingest, for end-to-end latency


async def test_each_chunk_judged_on_its_own(client: httpx.AsyncClient, stack: StackInfo) -> None:
    (a, ka), (b, kb) = await new_device(client), await new_device(client)
    keys = [ka, kb, "sdx_not_a_key"]
    chunks = [
        gchunk(0, a, 0),                        # accepted
        gchunk(0, b, 0),                        # a's key may not write b's stream
        gchunk(2, a + ":V1", 0),                # unknown key
        gchunk(1, b, 0, fs=50.0),               # fs out of range
        gchunk(1, b + ":II", 0, gain=1.0),      # 400 mV: beyond the physiological limit
        gchunk(1, b + ":III", 0, t0=T0 + 86400.0),  # a day ahead of the server clock
        gchunk(1, b + ":bad id!", 0),           # stream id pattern
        gchunk(1, b, 3),                        # accepted (a stream's first chunk: no gap)
        gchunk(0, a, 1),                        # accepted
        gchunk(0, a, 1),                        # the same seq twice in one batch
    ]
    reply = await post(client, keys, chunks)
    got = [(r["status"], r.get("code")) for r in reply["results"]]
    assert got == [("accepted", None), ("error", 403), ("error", 401), ("error", 422), ("error", 422),
                   ("error", 422), ("error", 422), ("accepted", None), ("accepted", None), ("duplicate", None)]
    gap = await post(client, [kb], [gchunk(0, b, 6)])
    assert gap["results"][0]["gap_before"] == 2
    assert [m.seq for m in await read_messages(stack.kafka_bootstrap, EcgSamplesV1, a)] == [0, 1]
    bmsgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, b)
    assert [(m.seq, m.gap_before) for m in bmsgs] == [(3, 0), (6, 2)]
    late = await post(client, [kb], [gchunk(0, b, 4)])  # after its gap was signalled: refused, not reordered
    assert late["results"][0]["code"] == 409


async def test_revoked_key_refused(client: httpx.AsyncClient) -> None:
    dev, key = await new_device(client)
    r = await client.delete(f"/v1/admin/devices/{dev}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 204
    reply = await post(client, [key], [gchunk(0, dev, 0)])
    assert reply["results"][0]["code"] == 403 and reply["accepted"] == 0


async def test_whole_batch_refusals(client: httpx.AsyncClient) -> None:
    dev, key = await new_device(client)
    body = gateway_batch_encode([key], [gchunk(0, dev, 0)])
    r = await client.post("/v1/gateway/ecg", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 415
    r = await client.post("/v1/gateway/ecg", content=body[:-3], headers=HEADERS)
    assert r.status_code == 400 and "truncated" in r.json()["detail"]
    many = gateway_batch_encode([key], [gchunk(0, dev, s) for s in range(65)])
    r = await client.post("/v1/gateway/ecg", content=many, headers=HEADERS)
    assert r.status_code in (400, 413)  # 65 chunks > GATEWAY_MAX_CHUNKS (and > GATEWAY_MAX_BYTES)
    big = gateway_batch_encode([key], [gchunk(0, dev, s, adc=adc(dev, s, 16_000)) for s in range(3)])
    r = await client.post("/v1/gateway/ecg", content=big, headers=HEADERS)
    assert r.status_code == 413


async def test_t0_that_is_not_a_time_refused(client: httpx.AsyncClient) -> None:
    dev, key = await new_device(client)
    reply = await post(client, [key], [gchunk(0, dev, 0, t0=float("nan")), gchunk(0, dev, 1, t0=1e300),
                                       gchunk(0, dev, 2)])
    assert [(r["status"], r.get("code")) for r in reply["results"]] == [("error", 422), ("error", 422),
                                                                       ("accepted", None)]
    assert reply["results"][0]["detail"] == "t0: not a time"
