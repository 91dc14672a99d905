"""Device simulator client logic against fake ingest handlers (httpx.MockTransport, fake WebSocket)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from streamdx.encoding import decode_i16
from streamdx_devkit.sim.device import AdcSignal, IngestError, create_device, load_wfdb, run, stream_ecg
from streamdx_devkit.sim.ecg import SyntheticEcg, ecg_synthesize

URL = "http://127.0.0.1:8000"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeIngest:
    """A tiny ingest: records every POST and answers with ``script(seq, attempt)``."""

    def __init__(self, script: Callable[[int, int], httpx.Response] | None = None) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        self.attempts: dict[int, int] = {}
        self.seen: set[int] = set()
        self.script = script
        self.devices: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/admin/devices":
            assert request.headers["Authorization"] == "Bearer admin-secret"
            dev = json.loads(request.content)["device_id"]
            self.devices.append(dev)
            return httpx.Response(201, json={"device_id": dev, "api_key": f"key-{dev}"})
        body = json.loads(request.content)
        self.paths.append(request.url.path)
        self.auth.append(request.headers.get("Authorization"))
        self.bodies.append(body)
        seq = body["seq"]
        attempt = self.attempts.get(seq, 0)
        self.attempts[seq] = attempt + 1
        if self.script is not None:
            resp = self.script(seq, attempt)
            if resp.status_code != 202:
                return resp
        status = "duplicate" if seq in self.seen else "accepted"
        self.seen.add(seq)
        return httpx.Response(202, json={"status": status, "seq": seq, "gap_before": 0})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler))


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _ok() -> httpx.Response:
    return httpx.Response(202, json={"status": "accepted"})


@pytest.fixture(scope="module")
def ecg10() -> SyntheticEcg:
    return ecg_synthesize(10.0, 250.0, seed=3, scenario="ectopy")


async def test_http_stream_sends_every_chunk_in_order(ecg10: SyntheticEcg) -> None:
    fake = FakeIngest()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001:MLII", "k1", ecg10, chunk_s=1.0, t0=T0)
    assert rep.ok and rep.error is None
    assert rep.chunks_total == 10 and rep.accepted == 10 and rep.duplicates == 0 and rep.retries == 0
    assert rep.samples_sent == 2500 and rep.next_seq == 10
    assert [b["seq"] for b in fake.bodies] == list(range(10))
    assert set(fake.paths) == {"/v1/streams/sim-0001:MLII/ecg"}
    assert set(fake.auth) == {"Bearer k1"}
    adc = np.concatenate([decode_i16(b["data"]) for b in fake.bodies])
    assert np.array_equal(adc, ecg10.to_adc(200.0))
    b3 = fake.bodies[3]
    assert b3["fs"] == 250.0 and b3["gain"] == 200.0 and b3["baseline"] == 0 and b3["lead"] == "MLII"
    assert "samples" not in b3
    t3 = datetime.fromisoformat(b3["t0"].replace("Z", "+00:00"))
    assert t3 == T0 + timedelta(seconds=3)


async def test_samples_encoding_and_partial_last_chunk(ecg10: SyntheticEcg) -> None:
    fake = FakeIngest()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k1", ecg10, chunk_s=0.8, encoding="samples", start_seq=7)
    assert rep.ok and rep.chunks_total == 13
    assert [b["seq"] for b in fake.bodies] == list(range(7, 20))
    assert [len(b["samples"]) for b in fake.bodies] == [200] * 12 + [100]
    assert np.array_equal(np.concatenate([b["samples"] for b in fake.bodies]), ecg10.to_adc())


@pytest.mark.parametrize("status", [503, 429])
async def test_retry_after_resends_the_same_seq(ecg10: SyntheticEcg, status: int) -> None:
    def script(seq: int, attempt: int) -> httpx.Response:
        if seq == 2 and attempt < 2:
            return httpx.Response(status, headers={"Retry-After": "3"}, json={"detail": "busy"})
        return _ok()

    fake = FakeIngest(script)
    sleep = SleepRecorder()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, sleep=sleep)
    assert rep.ok
    assert [b["seq"] for b in fake.bodies] == [0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8, 9]  # never skipped
    assert fake.bodies[2] == fake.bodies[3] == fake.bodies[4]  # the very same chunk
    assert sleep.calls == [3.0, 3.0]
    assert rep.retries == 2 and rep.errors == 2 and rep.accepted == 10


async def test_retry_after_http_date_and_backoff_without_header(ecg10: SyntheticEcg) -> None:
    when = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")

    def script(seq: int, attempt: int) -> httpx.Response:
        if seq == 0 and attempt == 0:
            return httpx.Response(503, headers={"Retry-After": when})
        if seq == 1 and attempt < 2:
            return httpx.Response(502, text="bad gateway")
        return _ok()

    fake = FakeIngest(script)
    sleep = SleepRecorder()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, sleep=sleep)
    assert rep.ok and rep.retries == 3
    assert 25.0 < sleep.calls[0] <= 30.0
    assert sleep.calls[1:] == [0.5, 1.0]  # exponential back-off


async def test_retries_are_bounded_and_never_skip(ecg10: SyntheticEcg) -> None:
    def script(seq: int, attempt: int) -> httpx.Response:
        if seq == 4:
            return httpx.Response(503, headers={"Retry-After": "1"}, json={"detail": "overloaded"})
        return _ok()

    fake = FakeIngest(script)
    sleep = SleepRecorder()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, sleep=sleep, max_retries=3)
    assert not rep.ok
    assert rep.error is not None and "seq 4" in rep.error and "gave up" in rep.error
    assert [b["seq"] for b in fake.bodies] == [0, 1, 2, 3, 4, 4, 4, 4]  # stops; 5 is never sent
    assert rep.accepted == 4 and rep.next_seq == 4 and rep.retries == 3
    assert sleep.calls == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_4xx_stops_with_the_detail(ecg10: SyntheticEcg, status: int) -> None:
    def script(seq: int, attempt: int) -> httpx.Response:
        if seq == 1:
            return httpx.Response(status, json={"detail": "stream not allowed for this key"})
        return _ok()

    fake = FakeIngest(script)
    sleep = SleepRecorder()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, sleep=sleep)
    assert not rep.ok and rep.error is not None
    assert f"HTTP {status}" in rep.error and "stream not allowed" in rep.error
    assert [b["seq"] for b in fake.bodies] == [0, 1]
    assert sleep.calls == [] and rep.retries == 0 and rep.errors == 1


async def test_transport_errors_are_retried(ecg10: SyntheticEcg) -> None:
    calls = {"n": 0}
    inner = FakeIngest()

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 2:
            raise httpx.ConnectError("connection refused", request=request)
        return inner.handler(request)

    sleep = SleepRecorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, sleep=sleep)
    assert rep.ok and rep.retries == 1 and sleep.calls == [0.5]
    assert [b["seq"] for b in inner.bodies] == list(range(10))


async def test_duplicates_are_counted(ecg10: SyntheticEcg) -> None:
    fake = FakeIngest()
    fake.seen.update({0, 1, 2})  # e.g. the simulator restarted from seq 0
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10)
    assert rep.ok and rep.duplicates == 3 and rep.accepted == 7


async def test_pacing_at_speed(ecg10: SyntheticEcg) -> None:
    fake = FakeIngest()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, chunk_s=2.0, speed=40.0)
    assert rep.ok
    assert rep.elapsed_s >= 4 * 2.0 / 40.0 - 0.01  # 5 chunks, the last sent at 4 chunk times


async def test_stop_switches_the_device_off_cleanly(ecg10: SyntheticEcg) -> None:
    fake = FakeIngest()
    stop = asyncio.Event()
    script_calls = 0

    def stop_after_three(seq: int, attempt: int) -> httpx.Response:
        nonlocal script_calls
        script_calls += 1
        if seq == 2:
            stop.set()  # switched off while chunk 2 is in flight: it is still acknowledged
        return _ok()

    fake.script = stop_after_three
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, chunk_s=1.0, speed=20.0, stop=stop)
    assert rep.error is None and rep.accepted == 3 and rep.next_seq == 3
    assert [b["seq"] for b in fake.bodies] == [0, 1, 2] and script_calls == 3
    # already stopped: nothing is sent, even without pacing
    fake2 = FakeIngest()
    async with fake2.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, chunk_s=1.0, stop=stop)
    assert rep.error is None and rep.accepted == 0 and fake2.bodies == []


async def test_create_device_and_errors() -> None:
    fake = FakeIngest()
    async with fake.client() as client:
        assert await create_device(client, URL, "admin-secret", "sim-0042") == "key-sim-0042"

    def conflict(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"detail": "device exists"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(conflict)) as client:
        with pytest.raises(IngestError, match=r"409.*device exists"):
            await create_device(client, URL, "admin-secret", "sim-0042")


# --------------------------------------------------------------------- WebSocket


class FakeWs:
    """Server side of a fake WebSocket: ``reply(seq, attempt)`` → dict, or raise to drop the link."""

    def __init__(self, reply: Callable[[int, int], dict[str, Any]]) -> None:
        self.reply = reply
        self.frames: list[dict[str, Any]] = []
        self.attempts: dict[int, int] = {}
        self.connects: list[tuple[str, dict[str, str]]] = []
        self._pending: list[str] = []

    async def send(self, message: str) -> None:
        body = json.loads(message)
        self.frames.append(body)
        seq = body["seq"]
        attempt = self.attempts.get(seq, 0)
        self.attempts[seq] = attempt + 1
        self._pending.append(json.dumps(self.reply(seq, attempt)))

    async def recv(self) -> str:
        return self._pending.pop(0)

    @asynccontextmanager
    async def connect(self, url: str, headers: dict[str, str]) -> AsyncIterator[FakeWs]:
        self.connects.append((url, headers))
        self._pending.clear()
        yield self


async def test_ws_stream_with_retry_after_reply(ecg10: SyntheticEcg) -> None:
    def reply(seq: int, attempt: int) -> dict[str, Any]:
        if seq == 5 and attempt == 0:
            return {"seq": 5, "status": "error", "detail": "backpressure", "retry_after": 2}
        return {"seq": seq, "status": "accepted"}

    ws = FakeWs(reply)
    sleep = SleepRecorder()
    async with httpx.AsyncClient() as client:
        rep = await stream_ecg(
            client, URL, "sim-0001:MLII", "k9", ecg10, transport="ws", sleep=sleep, ws_connect=ws.connect
        )
    assert rep.ok and rep.transport == "ws" and rep.retries == 1
    assert [f["seq"] for f in ws.frames] == [0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9]
    assert sleep.calls == [2.0]
    assert ws.connects == [("ws://127.0.0.1:8000/v1/streams/sim-0001:MLII/ws", {"Authorization": "Bearer k9"})]


async def test_ws_error_without_retry_after_stops(ecg10: SyntheticEcg) -> None:
    def reply(seq: int, attempt: int) -> dict[str, Any]:
        if seq == 3:
            return {"seq": 3, "status": "error", "detail": "fs changed mid-stream"}
        return {"seq": seq, "status": "accepted"}

    ws = FakeWs(reply)
    async with httpx.AsyncClient() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, transport="ws", ws_connect=ws.connect)
    assert not rep.ok and rep.error is not None and "fs changed" in rep.error
    assert [f["seq"] for f in ws.frames] == [0, 1, 2, 3]


async def test_ws_reconnects_and_resends_the_same_seq(ecg10: SyntheticEcg) -> None:
    def reply(seq: int, attempt: int) -> dict[str, Any]:
        if seq == 4 and attempt == 0:
            raise ConnectionResetError("peer went away")
        return {"seq": seq, "status": "accepted"}

    ws = FakeWs(reply)
    sleep = SleepRecorder()
    async with httpx.AsyncClient() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, transport="ws", sleep=sleep, ws_connect=ws.connect)
    assert rep.ok and len(ws.connects) == 2 and rep.retries == 1
    assert [f["seq"] for f in ws.frames] == [0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9]


async def test_ws_mismatched_ack_is_an_error(ecg10: SyntheticEcg) -> None:
    ws = FakeWs(lambda seq, attempt: {"seq": seq + 1, "status": "accepted"})
    async with httpx.AsyncClient() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, transport="ws", ws_connect=ws.connect)
    assert not rep.ok and rep.error is not None and "acknowledgement" in rep.error


# --------------------------------------------------------------------- CLI and WFDB


async def test_cli_admin_flow_with_truth_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeIngest()
    truth = tmp_path / "truth.json"
    rc = await run(
        [
            "--admin-token", "admin-secret", "--streams", "3", "--scenario", "mixed", "--duration", "5",
            "--speed", "0", "--fs", "360", "--seed", "4", "--truth-out", str(truth),
        ],
        transport=httpx.MockTransport(fake.handler),
    )  # fmt: skip
    assert rc == 0
    assert fake.devices == ["sim-0001", "sim-0002", "sim-0003"]
    assert sorted(set(fake.paths)) == [f"/v1/streams/sim-000{i}/ecg" for i in (1, 2, 3)]
    assert len(fake.bodies) == 15
    out = capsys.readouterr().out
    assert "total: 3/3 streams complete, 15 chunks" in out
    doc = json.loads(truth.read_text())
    s2 = doc["streams"]["sim-0002"]
    ref = ecg_synthesize(5.0, 360.0, seed=5, scenario="mixed")
    assert s2["r_samples"] == ref.r_samples.tolist() and s2["symbols"] == list(ref.beat_symbols)
    assert s2["fs"] == 360.0 and s2["gain"] == 200.0 and {r["label"] for r in s2["rhythms"]} <= {"N", "AFIB"}


async def test_cli_key_flow_ws_json_and_failures(capsys: pytest.CaptureFixture[str]) -> None:
    rc = await run(["--key", "k", "--streams", "2"])
    assert rc == 2  # --key needs a single device
    rc = await run(["--duration", "3"])
    assert rc == 2  # no credentials

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "bad key"})

    capsys.readouterr()
    rc = await run(
        ["--key", "k", "--device", "dev-9", "--stream-suffix", "MLII", "--duration", "3", "--speed", "0", "--json"],
        transport=httpx.MockTransport(refuse),
    )
    assert rc == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["streams"][0]["stream_id"] == "dev-9:MLII"
    assert "bad key" in summary["streams"][0]["error"]


def _write_record(tmp_path: Path) -> str:
    wfdb = pytest.importorskip("wfdb")
    ecg = ecg_synthesize(20.0, 360.0, seed=1, scenario="mixed")
    adc = ecg.to_adc(200.0, 1024).astype(np.int64)[:, None]
    wfdb.wrsamp(
        "rec1", fs=360, units=["mV"], sig_name=["MLII"], d_signal=adc, fmt=["16"],
        adc_gain=[200.0], baseline=[1024], write_dir=str(tmp_path),
    )  # fmt: skip
    aux = ["(N"] + [""] * len(ecg.beat_symbols)
    wfdb.wrann(
        "rec1", "atr", sample=np.concatenate([[0], ecg.r_samples]), symbol=["+", *ecg.beat_symbols],
        aux_note=aux, write_dir=str(tmp_path),
    )  # fmt: skip
    return str(tmp_path / "rec1")


async def test_wfdb_record_replay(tmp_path: Path) -> None:
    path = _write_record(tmp_path)
    sig, truth = load_wfdb(path, duration_s=10.0)
    assert isinstance(sig, AdcSignal)
    assert sig.fs == 360.0 and sig.gain == 200.0 and sig.baseline == 1024 and sig.lead == "MLII"
    assert sig.adc.size == 3600
    ref = ecg_synthesize(20.0, 360.0, seed=1, scenario="mixed")
    assert np.array_equal(sig.adc, ref.to_adc(200.0, 1024)[:3600])
    assert truth is not None
    keep = ref.r_samples < 3600
    assert truth["r_samples"] == ref.r_samples[keep].tolist()
    assert truth["rhythms"][0] == {"start": 0, "end": 3600, "label": "N"}
    fake = FakeIngest()
    rc = await run(
        ["--key", "k", "--record", path, "--duration", "10", "--speed", "0", "--chunk-s", "2"],
        transport=httpx.MockTransport(fake.handler),
    )
    assert rc == 0 and len(fake.bodies) == 5
    assert fake.bodies[0]["baseline"] == 1024 and fake.bodies[0]["fs"] == 360.0
    assert np.array_equal(np.concatenate([decode_i16(b["data"]) for b in fake.bodies]), sig.adc)


def _damage(path: str, damage: str) -> None:
    if damage == "signal":
        Path(path + ".dat").write_bytes(Path(path + ".dat").read_bytes()[:1001])
    elif damage == "annotations":  # bytes that wfdb cannot parse as annotations
        Path(path + ".atr").write_bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    else:
        Path(path + ".hea").write_text("rec1 1 360 garbage\nxx\n")


@pytest.mark.parametrize("damage", ["signal", "annotations", "header"])
async def test_damaged_wfdb_record_is_a_clear_error(
    tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_record(tmp_path)
    _damage(path, damage)
    with pytest.raises(ValueError, match="rec1"):
        load_wfdb(path)
    fake = FakeIngest()
    rc = await run(["--key", "k", "--record", path, "--speed", "0"], transport=httpx.MockTransport(fake.handler))
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "rec1" in err and not fake.bodies


async def test_gap_skips_the_chunks_and_keeps_the_seq_and_clock(ecg10: SyntheticEcg) -> None:
    fake = FakeIngest()
    async with fake.client() as client:
        rep = await stream_ecg(client, URL, "sim-0001", "k", ecg10, chunk_s=1.0, t0=T0, gap=(3.0, 2.5))
    assert rep.ok and rep.chunks_dropped == 3 and rep.chunks_total == 7 and rep.accepted == 7
    assert [b["seq"] for b in fake.bodies] == [0, 1, 2, 6, 7, 8, 9]
    t6 = datetime.fromisoformat(fake.bodies[3]["t0"].replace("Z", "+00:00"))
    assert t6 == T0 + timedelta(seconds=6)
    assert rep.as_dict()["chunks_dropped"] == 3
    with pytest.raises(ValueError):
        await stream_ecg(client, URL, "sim-0001", "k", ecg10, gap=(1.0, 0.0))


async def test_cli_gap_options(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeIngest()
    rc = await run(
        ["--key", "k", "--duration", "8", "--speed", "0", "--gap-at", "2", "--gap-s", "3"],
        transport=httpx.MockTransport(fake.handler),
    )
    assert rc == 0
    assert [b["seq"] for b in fake.bodies] == [0, 1, 5, 6, 7]
    assert await run(["--key", "k", "--gap-at", "2"]) == 2  # --gap-s missing
    assert await run(["--key", "k", "--gap-at", "2", "--gap-s", "0"]) == 2
