"""ingest on the real broker and Redis: exactly-once per seq, validation, auth, gaps, WS, replay."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets
from pydantic import SecretStr

from streamdx.encoding import encode_i16
from streamdx.schemas import EcgSamplesV1
from streamdx_ingest.app import create_app
from streamdx_ingest.settings import IngestSettings
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import serve, serve_ingest

pytestmark = pytest.mark.integration
ADMIN = "test-admin-token"
#: a recent start time: device chunks must be within MAX_T0_AGE_S / MAX_CLOCK_SKEW_S of the server clock
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
T0_ISO = T0.isoformat().replace("+00:00", "Z")


def settings_for(stack: StackInfo, **kw: object) -> IngestSettings:
    values: dict[str, object] = {
        "kafka_bootstrap": stack.kafka_bootstrap, "redis_url": stack.redis_url,
        "ingest_admin_token": SecretStr(ADMIN), **kw,
    }
    return IngestSettings.model_validate(values)


@pytest.fixture(scope="module")
async def ingest(stack: StackInfo) -> AsyncIterator[str]:
    async with serve_ingest(settings_for(stack)) as base:
        yield base


@pytest.fixture
async def client(ingest: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest, timeout=30) as c:
        yield c


async def new_device(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    device_id = f"dev-{uuid.uuid4().hex[:10]}"
    r = await client.post("/v1/admin/devices", json={"device_id": device_id},
                          headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    return device_id, {"Authorization": f"Bearer {r.json()['api_key']}"}


def chunk(seq: int, n: int = 250, fs: float = 250.0, **kw: object) -> dict[str, object]:
    rng = np.random.default_rng(seq)
    body: dict[str, object] = {
        "seq": seq, "fs": fs, "t0": (T0 + timedelta(seconds=seq * n / fs)).isoformat(), "gain": 200.0,
        "data": encode_i16(rng.integers(-400, 400, n)),
    }
    body.update(kw)
    return body


async def test_chunk_published_exactly_once_despite_retries(client: httpx.AsyncClient, stack: StackInfo) -> None:
    device, auth = await new_device(client)
    statuses = []
    for _ in range(3):  # the device retries the same seq (e.g. it lost the first response)
        r = await client.post(f"/v1/streams/{device}/ecg", json=chunk(0), headers=auth)
        assert r.status_code == 202, r.text
        statuses.append(r.json()["status"])
    assert statuses == ["accepted", "duplicate", "duplicate"]
    # concurrent retries of the next seq
    rs = await asyncio.gather(*[client.post(f"/v1/streams/{device}/ecg", json=chunk(1), headers=auth)
                                for _ in range(4)])
    assert {r.status_code for r in rs} <= {202, 429}
    assert sum(r.json().get("status") == "accepted" for r in rs) == 1
    msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)
    assert [m.seq for m in msgs] == [0, 1]
    assert msgs[0].n == 250 and msgs[0].fs == 250.0
    assert np.array_equal(msgs[0].adc(), np.random.default_rng(0).integers(-400, 400, 250))


async def test_samples_in_mv_and_adc_lists(client: httpx.AsyncClient, stack: StackInfo) -> None:
    device, auth = await new_device(client)
    mv = [0.0, 0.5, -1.25, 2.0]
    r = await client.post(f"/v1/streams/{device}/ecg", headers=auth,
                          json={**chunk(0), "data": None, "samples": mv, "units": "mV"})
    assert r.status_code == 202, r.text
    r = await client.post(f"/v1/streams/{device}/ecg", headers=auth,
                          json={**chunk(1), "data": None, "samples": [1, -2, 3]})
    assert r.status_code == 202, r.text
    msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)
    assert np.allclose(msgs[0].millivolts(), mv)
    assert msgs[1].adc().tolist() == [1, -2, 3]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": [1, NaN, 3]}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": [1, Infinity]}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": [40000]}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": [1.5]}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "units": "mV", "samples": [99.0]}', 422),
        ('{"seq": 0, "fs": 50, "t0": "' + T0_ISO + '", "samples": [1]}', 422),
        ('{"seq": -1, "fs": 250, "t0": "' + T0_ISO + '", "samples": [1]}', 422),
        ('{"seq": 0, "fs": 250, "t0": "2026-01-01T00:00:00", "samples": [1]}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "data": "!!!"}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "data": "AA=="}', 422),
        ('{"seq": 0, "fs": 250, "t0": "2026-01-01T00:00:00Z"}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": [1], "extra": 1}', 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": []}', 422),
        ("{not json", 422),
        ('{"seq": 0, "fs": 250, "t0": "' + T0_ISO + '", "samples": [' + "1," * 300_000 + "1]}", 413),
    ],
)
async def test_malformed_chunk_is_4xx_and_not_published(
    client: httpx.AsyncClient, stack: StackInfo, body: str, status: int
) -> None:
    device, auth = await new_device(client)
    r = await client.post(f"/v1/streams/{device}/ecg", content=body,
                          headers={**auth, "content-type": "application/json"})
    assert r.status_code == status, r.text
    assert "detail" in r.json()
    assert await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device) == []


async def test_auth_missing_unknown_revoked_and_foreign_stream(client: httpx.AsyncClient) -> None:
    device, auth = await new_device(client)
    other, _ = await new_device(client)
    assert (await client.post(f"/v1/streams/{device}/ecg", json=chunk(0))).status_code == 401
    r = await client.post(f"/v1/streams/{device}/ecg", json=chunk(0), headers={"Authorization": "Bearer sdx_nope"})
    assert r.status_code == 401
    assert (await client.post(f"/v1/streams/{other}/ecg", json=chunk(0), headers=auth)).status_code == 403
    assert (await client.post(f"/v1/streams/{device}:V5/ecg", json=chunk(0), headers=auth)).status_code == 202
    r = await client.delete(f"/v1/admin/devices/{device}", headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 204
    assert (await client.post(f"/v1/streams/{device}/ecg", json=chunk(1), headers=auth)).status_code == 403
    assert (await client.post("/v1/admin/devices", json={"device_id": "x"})).status_code == 401
    r = await client.post("/v1/admin/devices", json={"device_id": "x"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403


async def test_gap_signalled_late_chunk_refused_fs_fixed(client: httpx.AsyncClient, stack: StackInfo) -> None:
    device, auth = await new_device(client)
    assert (await client.post(f"/v1/streams/{device}/ecg", json=chunk(0), headers=auth)).status_code == 202
    r = await client.post(f"/v1/streams/{device}/ecg", json=chunk(3), headers=auth)
    assert r.status_code == 202 and r.json()["gap_before"] == 2
    r = await client.post(f"/v1/streams/{device}/ecg", json=chunk(1), headers=auth)
    assert r.status_code == 409 and "older" in r.json()["detail"]
    r = await client.post(f"/v1/streams/{device}/ecg", json=chunk(4, fs=360.0), headers=auth)
    assert r.status_code == 409 and "Hz" in r.json()["detail"]
    msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)
    assert [(m.seq, m.gap_before) for m in msgs] == [(0, 0), (3, 2)]


async def test_websocket_chunks(ingest: str, client: httpx.AsyncClient, stack: StackInfo) -> None:
    device, auth = await new_device(client)
    url = ingest.replace("http://", "ws://") + f"/v1/streams/{device}/ws"
    async with websockets.connect(url, additional_headers=auth) as ws:
        replies = []
        for body in [chunk(0), chunk(1), chunk(1), {"seq": 2, "fs": 250}, chunk(2)]:
            await ws.send(json.dumps(body))
            replies.append(json.loads(await ws.recv()))
    assert [r["status"] for r in replies] == ["accepted", "accepted", "duplicate", "error", "accepted"]
    assert replies[3]["code"] == 422
    msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)
    assert [m.seq for m in msgs] == [0, 1, 2]
    async with websockets.connect(url, additional_headers={"Authorization": "Bearer bad"}) as ws:
        reply = json.loads(await ws.recv())
        assert reply["code"] == 401


async def test_wfdb_upload_replayed_completely(
    client: httpx.AsyncClient, stack: StackInfo, tmp_path: Path
) -> None:
    import wfdb

    device, auth = await new_device(client)
    fs, n = 360, 360 * 20 + 123  # 20.3 s, a partial last chunk
    t = np.arange(n) / fs
    sig = np.stack([np.sin(2 * np.pi * 1.2 * t), 0.5 * np.cos(2 * np.pi * 0.7 * t)], axis=1)
    wfdb.wrsamp("rec", fs=fs, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=sig, fmt=["212", "212"],
                adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    files = [("files", ("rec.hea", (tmp_path / "rec.hea").read_bytes())),
             ("files", ("rec.dat", (tmp_path / "rec.dat").read_bytes()))]
    r = await client.post("/v1/recordings", files=files, data={"stream_id": device}, headers=auth)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["n_samples"] == n and body["streams"] == [f"{device}:MLII", f"{device}:V5"]
    for _ in range(200):
        progress = (await client.get(body["status_url"], headers=auth)).json()
        if progress["status"] != "replaying":
            break
        await asyncio.sleep(0.1)
    assert progress["status"] == "done", progress
    assert int(progress["samples_published"]) == 2 * n
    for lead, stream in enumerate(body["streams"]):
        msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, stream)
        assert [m.seq for m in msgs] == list(range(21))
        assert sum(m.n for m in msgs) == n
        assert msgs[-1].final and not any(m.final for m in msgs[:-1])
        mv = np.concatenate([m.millivolts() for m in msgs])
        assert np.allclose(mv, sig[:, lead], atol=1 / 200 + 1e-9)
    # uploading the same recording again is idempotent: nothing republished
    r = await client.post("/v1/recordings", files=files, data={"stream_id": device}, headers=auth)
    for _ in range(200):
        progress = (await client.get(r.json()["status_url"], headers=auth)).json()
        if progress["status"] != "replaying":
            break
        await asyncio.sleep(0.1)
    assert progress["status"] == "done" and int(progress["chunks_published"]) == 0
    assert len(await read_messages(stack.kafka_bootstrap, EcgSamplesV1, f"{device}:MLII")) == 21


async def test_bad_uploads_are_422(client: httpx.AsyncClient) -> None:
    device, auth = await new_device(client)
    r = await client.post("/v1/recordings", files=[("files", ("x.txt", b"hello"))], data={"stream_id": device},
                          headers=auth)
    assert r.status_code == 422
    r = await client.post("/v1/recordings", files=[("files", ("x.hea", b"rec 1 360 10\n")),
                                                   ("files", ("x.dat", b"\x00"))],
                          data={"stream_id": device}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"]


async def test_broker_down_gives_503_with_retry_after(stack: StackInfo) -> None:
    from streamdx.embedded import free_port

    settings = settings_for(stack, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    async with serve(create_app(settings)) as base, httpx.AsyncClient(base_url=base) as c:
        device = (await c.post("/v1/admin/devices", json={"device_id": "down-1"},
                               headers={"Authorization": f"Bearer {ADMIN}"})).json()
        r = await c.post("/v1/streams/down-1/ecg", json=chunk(0),
                         headers={"Authorization": f"Bearer {device['api_key']}"})
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert (await c.get("/readyz")).status_code == 503


async def test_metrics_and_openapi(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    assert "streamdx_ingest_chunks_total" in text and "streamdx_http_requests_total" in text
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/streams/{stream_id}/ecg" in spec["paths"]


def test_encoding_is_compact() -> None:
    """A 1-s chunk of 250 int16 samples costs < 1 kB as a whole message, vs kB as JSON floats."""
    rng = np.random.default_rng(1)
    adc = rng.integers(-2000, 2000, 250)
    msg = EcgSamplesV1(stream_id="d", seq=1, fs=250, t0=datetime.now(UTC), gain=200, n=250, data=encode_i16(adc))
    wire = len(msg.model_dump_json())
    floats = len(json.dumps((adc / 200.0).tolist()))
    assert len(base64.b64decode(msg.data)) == 500
    assert wire < 1000 < floats
