"""ingest edge cases on the real broker and Redis: absurd seq jumps, t0 far from the server clock,
clock drift between chunks, oversize chunked bodies, invalid JSON, missing content type, the typed
recording status, and /metrics (413s under their route, only ingest's own families)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import websockets

from streamdx.encoding import encode_i16
from streamdx.schemas import EcgSamplesV1
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.servers import serve_ingest
from tests.integration.test_ingest import ADMIN, new_device, settings_for

pytestmark = pytest.mark.integration
MAX_SEQ_JUMP = 1000


@pytest.fixture(scope="module")
async def ingest(stack: StackInfo) -> AsyncIterator[str]:
    async with serve_ingest(settings_for(stack, max_seq_jump=MAX_SEQ_JUMP)) as base:
        yield base


@pytest.fixture
async def client(ingest: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ingest, timeout=30) as c:
        yield c


def body(seq: int, t0: datetime, n: int = 250, fs: float = 250.0) -> dict[str, object]:
    return {"seq": seq, "fs": fs, "t0": t0.isoformat(), "gain": 200.0, "data": encode_i16(np.arange(n) % 100)}


def metric_value(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            head = line.split(" ")[0]
            if head == name or head.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_absurd_seq_jump_is_refused_with_last_seq_and_limit(client: httpx.AsyncClient, stack: StackInfo) -> None:
    device, auth = await new_device(client)
    t0 = datetime.now(UTC)
    for seq in range(6):
        r = await client.post(f"/v1/streams/{device}/ecg", json=body(seq, t0 + timedelta(seconds=seq)), headers=auth)
        assert r.status_code == 202, r.text
    gaps_before = metric_value((await client.get("/metrics")).text, "streamdx_ingest_gaps_total")
    r = await client.post(f"/v1/streams/{device}/ecg", json=body(10**9, t0 + timedelta(seconds=6)), headers=auth)
    assert r.status_code == 409, r.text
    detail = r.json()["detail"]
    assert "last accepted seq 5" in detail and str(MAX_SEQ_JUMP) in detail and "MAX_SEQ_JUMP" in detail
    # a jump within the limit is a gap, signalled downstream
    r = await client.post(f"/v1/streams/{device}/ecg", json=body(6 + MAX_SEQ_JUMP - 1, t0 + timedelta(seconds=9)),
                          headers=auth)
    assert r.status_code == 202 and r.json()["gap_before"] == MAX_SEQ_JUMP - 1
    text = (await client.get("/metrics")).text
    assert metric_value(text, "streamdx_ingest_gaps_total") - gaps_before == MAX_SEQ_JUMP - 1
    assert metric_value(text, "streamdx_ingest_chunks_total", status="seq_jump") >= 1
    msgs = await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)
    assert [m.seq for m in msgs] == [0, 1, 2, 3, 4, 5, 6 + MAX_SEQ_JUMP - 1]


@pytest.mark.parametrize(("offset", "setting"), [(timedelta(days=-3 * 365), "MAX_T0_AGE_S"),
                                                  (timedelta(hours=2), "MAX_CLOCK_SKEW_S")])
async def test_t0_far_from_server_clock_is_422_over_http_and_websocket(
    ingest: str, client: httpx.AsyncClient, stack: StackInfo, offset: timedelta, setting: str
) -> None:
    device, auth = await new_device(client)
    r = await client.post(f"/v1/streams/{device}/ecg", json=body(0, datetime.now(UTC) + offset), headers=auth)
    assert r.status_code == 422 and setting in r.json()["detail"] and "server clock" in r.json()["detail"]
    url = ingest.replace("http://", "ws://") + f"/v1/streams/{device}/ws"
    async with websockets.connect(url, additional_headers=auth) as ws:
        await ws.send(json.dumps(body(0, datetime.now(UTC) + offset)))
        reply = json.loads(await ws.recv())
    assert reply["code"] == 422 and setting in reply["detail"]
    # a store-and-forward device a week late is fine
    r = await client.post(f"/v1/streams/{device}/ecg", json=body(0, datetime.now(UTC) - timedelta(days=7)),
                          headers=auth)
    assert r.status_code == 202, r.text
    assert [m.seq for m in await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device)] == [0]


async def test_clock_drift_between_consecutive_chunks_is_reported(client: httpx.AsyncClient) -> None:
    device, auth = await new_device(client)
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    count_before = metric_value((await client.get("/metrics")).text, "streamdx_ingest_clock_drift_seconds_count")
    r0 = await client.post(f"/v1/streams/{device}/ecg", json=body(0, t0), headers=auth)
    # 250 samples at 250 Hz: the next chunk should start 1 s later; the device clock says 1.25 s
    r1 = await client.post(f"/v1/streams/{device}/ecg", json=body(1, t0 + timedelta(seconds=1.25)), headers=auth)
    r2 = await client.post(f"/v1/streams/{device}/ecg", json=body(2, t0 + timedelta(seconds=2.25)), headers=auth)
    r4 = await client.post(f"/v1/streams/{device}/ecg", json=body(4, t0 + timedelta(seconds=9)), headers=auth)
    assert [r.status_code for r in (r0, r1, r2, r4)] == [202] * 4
    assert r0.json()["clock_drift_s"] is None  # nothing before it
    assert r1.json()["clock_drift_s"] == pytest.approx(0.25, abs=1e-6)
    assert r2.json()["clock_drift_s"] == pytest.approx(0.0, abs=1e-6)
    assert r4.json()["clock_drift_s"] is None  # after a gap the expected start is unknown
    dup = await client.post(f"/v1/streams/{device}/ecg", json=body(1, t0 + timedelta(seconds=1.25)), headers=auth)
    assert dup.json()["status"] == "duplicate" and dup.json()["clock_drift_s"] is None
    text = (await client.get("/metrics")).text
    assert metric_value(text, "streamdx_ingest_clock_drift_seconds_count") - count_before == 2
    assert metric_value(text, "streamdx_ingest_clock_drift_seconds_bucket", le="0.25") >= 1


async def test_oversize_bodies_are_413_chunked_or_not_and_counted_under_their_route(
    client: httpx.AsyncClient, stack: StackInfo
) -> None:
    device, auth = await new_device(client)
    route = "/v1/streams/{stream_id}/ecg"
    before = metric_value((await client.get("/metrics")).text, "streamdx_http_requests_total", route=route,
                          status="413")
    big = json.dumps({**body(0, datetime.now(UTC)), "pad": "x" * (600 * 1024)}).encode()

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 64 * 1024):
            yield big[i : i + 64 * 1024]

    r = await client.post(f"/v1/streams/{device}/ecg", content=chunked(),
                          headers={**auth, "content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["detail"]
    r = await client.post(f"/v1/streams/{device}/ecg", content=big,
                          headers={**auth, "content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    after = metric_value((await client.get("/metrics")).text, "streamdx_http_requests_total", route=route,
                         status="413")
    assert after - before == 2
    assert await read_messages(stack.kafka_bootstrap, EcgSamplesV1, device) == []


async def test_invalid_json_says_line_column_and_hint(client: httpx.AsyncClient) -> None:
    device, auth = await new_device(client)
    text = '{"seq": 0,\n "fs": 250,,\n "t0": "x"}'
    r = await client.post(f"/v1/streams/{device}/ecg", content=text,
                          headers={**auth, "content-type": "application/json"})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert (err["line"], err["column"]) == (2, 12)
    assert "line 2, column 12" in err["msg"] and "double quotes" in err["msg"]


async def test_missing_content_type_says_json_is_expected(client: httpx.AsyncClient) -> None:
    device, auth = await new_device(client)
    payload = json.dumps(body(0, datetime.now(UTC))).encode()
    r = await client.post(f"/v1/streams/{device}/ecg", content=payload, headers=auth)
    assert r.status_code == 415, r.text
    assert "application/json" in r.json()["detail"][0]["msg"]
    r = await client.post(f"/v1/streams/{device}/ecg", content=payload, headers={**auth, "content-type": "text/plain"})
    assert r.status_code == 415 and "text/plain" in r.json()["detail"][0]["msg"]


async def test_recording_status_has_the_typed_shape_of_the_upload_reply(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    device, auth = await new_device(client)
    csv = "time,II,V1\n" + "".join(f"{i / 250:.3f},{np.sin(i / 20):.3f},0.1\n" for i in range(250 * 3))
    r = await client.post("/v1/recordings", files=[("files", ("rec.csv", csv.encode()))],
                          data={"stream_id": device}, headers=auth)
    assert r.status_code == 202, r.text
    posted = r.json()
    assert posted["streams"] == [f"{device}:II", f"{device}:V1"] and posted["fs"] == 250.0
    for _ in range(200):
        got = (await client.get(posted["status_url"], headers=auth)).json()
        if got["status"] != "replaying":
            break
        await asyncio.sleep(0.05)
    assert set(got) == set(posted)
    assert got["status"] == "done" and got["error"] is None
    assert got["streams"] == posted["streams"] and got["leads"] == ["II", "V1"]
    assert isinstance(got["fs"], float) and got["fs"] == 250.0
    assert got["n_samples"] == 750 and got["samples_published"] == got["samples_total"] == 1500
    assert isinstance(got["chunks_total"], int) and got["chunks_published"] == got["chunks_total"] == 6
    _, other_auth = await new_device(client)
    assert (await client.get(posted["status_url"], headers=other_auth)).status_code == 404


async def test_ingest_metrics_export_only_ingest_families(client: httpx.AsyncClient) -> None:
    text = (await client.get("/metrics")).text
    families = {re.sub(r"_(total|created)$", "", n) for n in re.findall(r"^# TYPE (\S+) ", text, flags=re.M)}
    assert {"streamdx_http_requests", "streamdx_ingest_chunks", "streamdx_messages_produced"} <= families
    foreign = {"streamdx_beats", "streamdx_labels", "streamdx_messages_consumed", "streamdx_consumer_lag",
               "streamdx_batch_seconds", "streamdx_dlq_messages", "streamdx_replayed_messages_skipped"}
    assert not families & foreign, families & foreign
    label_names = {name for line in text.splitlines() if not line.startswith("#")
                   for name in re.findall(r'[{,](\w+)="', line)}
    assert label_names and not label_names & {"stream_id", "stream", "device", "device_id", "recording_id"}


async def test_admin_token_never_in_metrics(client: httpx.AsyncClient) -> None:
    await client.post("/v1/admin/devices", json={"device_id": f"m-{uuid.uuid4().hex[:6]}"},
                      headers={"Authorization": f"Bearer {ADMIN}"})
    assert ADMIN not in (await client.get("/metrics")).text
