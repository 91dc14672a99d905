"""``streamdx bench ingest``: ingest throughput against the embedded broker.

Starts the embedded stack and ``streamdx serve ingest`` as a separate process (as deployed),
then drives it from this process with many concurrent device streams over HTTP (and a
WebSocket pass), each chunk 1 s of int16 samples in the compact ``data`` encoding. Reports
chunks/s, samples/s, latency percentiles and the bytes one 1-s chunk costs on the wire.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from streamdx.embedded import EmbeddedStack, free_port
from streamdx.encoding import encode_i16
from streamdx.messaging.admin import all_topics, ensure_topics
from streamdx.messaging.codec import encode_message
from streamdx.schemas import EcgSamplesV1

__all__ = ["build_parser", "main", "wire_bytes_per_chunk"]


def wire_bytes_per_chunk(fs: int = 250) -> dict[str, int]:
    """Bytes of one 1-s ``ecg.samples`` record (value + key + headers) vs the samples as JSON floats."""
    rng = np.random.default_rng(0)
    adc = rng.integers(-1500, 1500, fs).astype(np.int16)
    msg = EcgSamplesV1(stream_id="device-0001:MLII", seq=12345, fs=fs, t0=datetime.now(UTC), gain=200, n=fs,
                       data=encode_i16(adc), lead="MLII")
    rec = encode_message(msg)
    header_bytes = sum(len(k) + len(v) for k, v in rec.headers)
    floats = len(json.dumps([round(float(v) / 200.0, 5) for v in adc]))
    return {"samples": fs, "value_bytes": len(rec.value), "key_bytes": len(rec.key or b""),
            "header_bytes": header_bytes, "record_bytes": len(rec.value) + len(rec.key or b"") + header_bytes,
            "raw_int16_bytes": 2 * fs, "json_float_samples_bytes": floats}


def _chunk(seq: int, adc: np.ndarray, fs: int, t0: datetime) -> dict[str, Any]:
    return {"seq": seq, "fs": fs, "t0": (t0 + timedelta(seconds=seq)).isoformat(), "gain": 200.0,
            "data": encode_i16(adc)}


def _requests(device: str, key: str, chunks: int, fs: int, port: int) -> list[bytes]:
    """Pre-built HTTP/1.1 requests of one device's chunks (built before the clock starts)."""
    rng = np.random.default_rng(abs(hash(device)) % 2**32)
    t0 = datetime.now(UTC)
    out = []
    for seq in range(chunks):
        body = json.dumps(_chunk(seq, rng.integers(-1500, 1500, fs), fs, t0)).encode()
        head = (f"POST /v1/streams/{device}/ecg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def _http_stream(port: int, requests: list[bytes], lat: list[float]) -> int:
    """One keep-alive connection sending a device's chunks in order, retrying 429/503.

    A minimal HTTP/1.1 client: the load generator must cost far less CPU than the server it
    measures (an httpx client costs several ms per request, more than ingest itself).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ok = 0
    try:
        for req in requests:
            for _attempt in range(20):
                t = time.perf_counter()
                writer.write(req)
                status_line = await reader.readline()
                length, retry_after = 0, 0.2
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "retry-after":
                        retry_after = float(value)
                await reader.readexactly(length)
                lat.append(time.perf_counter() - t)
                status = int(status_line.split()[1])
                if status == 202:
                    ok += 1
                    break
                await asyncio.sleep(retry_after)
    finally:
        writer.close()
    return ok


async def _ws_stream(url: str, device: str, key: str, chunks: int, fs: int) -> int:
    rng = np.random.default_rng(7)
    t0 = datetime.now(UTC)
    ok = 0
    async with websockets.connect(url + f"/v1/streams/{device}/ws",
                                  additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        for seq in range(chunks):
            await ws.send(json.dumps(_chunk(seq, rng.integers(-1500, 1500, fs), fs, t0)))
            ok += json.loads(await ws.recv()).get("status") == "accepted"
    return ok


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    with EmbeddedStack() as stack:
        await ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions)
        port, admin = free_port(), secrets.token_urlsafe(16)
        env = {**os.environ, "KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "REDIS_URL": stack.redis_url,
               "INGEST_PORT": str(port), "INGEST_ADMIN_TOKEN": admin, "LOG_LEVEL": "WARNING"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdx.cli", "serve", "ingest", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            limits = httpx.Limits(max_connections=args.streams, max_keepalive_connections=args.streams)
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
                for _ in range(300):
                    try:
                        if (await client.get("/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
                keys = {}
                for i in range(args.streams + 1):
                    r = await client.post("/v1/admin/devices", json={"device_id": f"bench-{i:04d}"},
                                          headers={"Authorization": f"Bearer {admin}"})
                    keys[f"bench-{i:04d}"] = r.json()["api_key"]
                lat: list[float] = []
                devices = list(keys)[: args.streams]
                prepared = [_requests(d, keys[d], args.chunks, args.fs, port) for d in devices]
                t = time.perf_counter()
                oks = await asyncio.gather(*[_http_stream(port, reqs, lat) for reqs in prepared])
                http_s = time.perf_counter() - t
                ws_dev = list(keys)[-1]
                t = time.perf_counter()
                ws_ok = await _ws_stream(base.replace("http", "ws"), ws_dev, keys[ws_dev], args.chunks, args.fs)
                ws_s = time.perf_counter() - t
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=10)
    n = sum(oks)
    lat_ms = np.array(lat) * 1000
    return {
        "machine": f"{os.cpu_count()} cores", "broker": "embedded tansu (memory)", "fs": args.fs,
        "http": {"streams": args.streams, "chunks": n, "seconds": http_s, "chunks_per_s": n / http_s,
                 "samples_per_s": n * args.fs / http_s, "latency_ms_p50": float(np.percentile(lat_ms, 50)),
                 "latency_ms_p99": float(np.percentile(lat_ms, 99))},
        "websocket_single_stream": {"chunks": ws_ok, "chunks_per_s": ws_ok / ws_s,
                                    "samples_per_s": ws_ok * args.fs / ws_s},
        "wire": wire_bytes_per_chunk(args.fs),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdx bench ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=32, help="concurrent HTTP streams (default: %(default)s)")
    parser.add_argument("--chunks", type=int, default=100, help="1-s chunks per stream")
    parser.add_argument("--fs", type=int, default=250, help="sampling rate of the chunks in Hz (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each topic (default: %(default)s)")
    parser.add_argument("--out", default="reports/bench_ingest.json",
                        help="JSON report to write (default: %(default)s)")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(_bench(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    h, w = result["http"], result["wire"]
    print(f"HTTP: {h['streams']} streams, {h['chunks']} chunks in {h['seconds']:.1f} s = {h['chunks_per_s']:.0f} "
          f"chunks/s, {h['samples_per_s']:,.0f} samples/s; latency p50 {h['latency_ms_p50']:.1f} ms, "
          f"p99 {h['latency_ms_p99']:.1f} ms")
    ws = result["websocket_single_stream"]
    print(f"WebSocket (1 stream, lock-step acks): {ws['chunks_per_s']:.0f} chunks/s, "
          f"{ws['samples_per_s']:,.0f} samples/s")
    print(f"wire: 1-s chunk of {w['samples']} samples = {w['record_bytes']} B record "
          f"({w['value_bytes']} B JSON value, {w['raw_int16_bytes']} B of raw int16) vs "
          f"{w['json_float_samples_bytes']} B for the samples alone as JSON floats")
    print(f"report: {args.out}")
    return 0
