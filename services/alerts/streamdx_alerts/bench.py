"""``streamdx bench alerts``: wall time from the beat that meets an alarm criterion to the webhook POST.

Starts the embedded stack and ``streamdx serve alerts`` as a separate process (as deployed),
a real webhook receiver in this process (verifying every signature with the Standard Webhooks
library) and one subscription. ``--streams`` live streams send one ``ecg.labels`` message per
beat (sinus at ~75 bpm, the background load); every ``--interval`` seconds one stream's next
beat meets a criterion — a 3-s pause, or the third beat of a ventricular run at 170 bpm. The
latency of one criterion is the time from just before its label is published (the label
then has to be acknowledged by the broker, consumed, run through the rhythm engine, published
as an alert event, consumed by the delivery worker, queued and POSTed) to the receiver
getting the signed POST of that alert's ``raised`` event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

__all__ = ["build_parser", "main"]


@dataclass
class _Stream:
    sid: str
    t: float
    index: int = 0


def _stages(text: str) -> dict[str, Any]:
    """Per consumer group of the alerts service: batches and mean batch time (s), from its /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "streamdx_batch_seconds":
            for smp in fam.samples:
                g = out.setdefault(smp.labels.get("group", "?"), {})
                if smp.name.endswith("_count"):
                    g["batches"] = int(smp.value)
                elif smp.name.endswith("_sum"):
                    g["seconds"] = round(smp.value, 3)
        elif fam.name == "streamdx_webhook_event_to_post_seconds":
            for smp in fam.samples:
                if smp.name.endswith(("_count", "_sum")):
                    out.setdefault("webhook event→POST", {})[smp.name.rsplit("_", 1)[1]] = round(smp.value, 3)
    for g in out.values():
        if g.get("batches") and "seconds" in g:
            g["mean_batch_s"] = round(g["seconds"] / g["batches"], 4)
    return out


def _raised(rx: Any) -> dict[str, float]:
    """alert_id → arrival time of its ``raised`` webhook."""
    return {r.event["alert_id"]: r.at for r in rx.received.values() if r.event["state"] == "raised"}


def _label(s: _Stream, rr: float, cls: Literal["N", "V"]) -> Any:
    from streamdx.schemas import EcgLabelV1

    s.t += rr
    m = EcgLabelV1(
        stream_id=s.sid, beat_index=s.index, r_sample=int(s.t * 250), r_time=datetime.fromtimestamp(s.t, UTC),
        rr_prev_s=rr, quality="ok", quality_prob=0.0, af_prob=0.0, af=False, beat_class=cls, class_probs={cls: 1.0},
        models={"bench": "synthetic"},
    )  # fmt: skip
    s.index += 1
    return m


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import numpy as np
    import uvicorn
    from prometheus_client import CollectorRegistry

    from streamdx.embedded import EmbeddedStack, free_port
    from streamdx.messaging.admin import all_topics, ensure_topics
    from streamdx.messaging.publisher import Publisher
    from streamdx.metrics import PublisherMetrics
    from streamdx_alerts.webhooks.receiver import WebhookReceiver

    rx = WebhookReceiver()
    rx_port, api_port, admin = free_port(), free_port(), secrets.token_urlsafe(16)
    with EmbeddedStack() as stack:
        await ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions)
        env = {**os.environ, "KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "REDIS_URL": stack.redis_url,
               "METRICS_PORT": str(api_port), "ALERTS_ADMIN_TOKEN": admin, "WEBHOOK_ALLOW_PRIVATE": "true",
               "LOG_LEVEL": "WARNING", "BATCH_TIMEOUT_MS": str(args.batch_timeout_ms)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamdx.cli", "serve", "alerts", env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        server = uvicorn.Server(uvicorn.Config(rx.app(), host="127.0.0.1", port=rx_port,
                                               log_config=None, access_log=False))
        rx_task = asyncio.create_task(server.serve())
        pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()), client_id="bench-alerts")
        await pub.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=10,
                                         headers={"Authorization": f"Bearer {admin}"}) as api:
                for _ in range(600):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await api.get("/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError("the alerts service did not become ready")
                r = await api.post("/v1/subscriptions", json={"url": f"http://127.0.0.1:{rx_port}/hook",
                                                              "description": "bench"})
                r.raise_for_status()
                rx.secret = r.json()["secret"]
            now = time.time()
            streams = [_Stream(f"bench-{i:04d}", now - 60.0) for i in range(args.streams)]
            # history: 40 sinus beats per stream so every rule has its context
            history = [_label(s, 0.8, "N") for s in streams for _ in range(40)]
            for i in range(0, len(history), 5000):  # within the publisher's in-flight bound
                await pub.publish_many(history[i:i + 5000])
            await asyncio.sleep(3.0)
            sent: dict[str, float] = {}
            rng = np.random.default_rng(0)
            beat_period = 0.8
            next_beat = time.monotonic()
            next_criterion = time.monotonic() + 1.0
            t_end = time.monotonic() + args.seconds
            k = 0
            while time.monotonic() < t_end:
                await asyncio.sleep(max(0.0, min(next_beat, next_criterion) - time.monotonic()))
                if time.monotonic() >= next_criterion:
                    s = streams[int(rng.integers(len(streams)))]
                    if k % 2 == 0:
                        msgs = [_label(s, 3.0, "N")]
                        alert_id = f"{s.sid}:pause:{s.index - 1}"
                    else:
                        msgs = [_label(s, 0.8, "V"), _label(s, 0.35, "V")]
                        start_index = s.index - 2
                        await pub.publish_many(msgs)
                        msgs = [_label(s, 0.35, "V")]
                        alert_id = f"{s.sid}:vt_run:{start_index}"
                    sent[alert_id] = time.time()
                    await pub.publish_many(msgs)
                    await pub.publish_many([_label(s, 0.8, "N") for _ in range(2)])  # the run / pause ends
                    k += 1
                    next_criterion += args.interval
                if time.monotonic() >= next_beat:
                    await pub.publish_many([_label(s, beat_period, "N") for s in streams])
                    next_beat += beat_period
            for _ in range(int(args.drain_s * 10)):  # bounded wait for the last webhooks
                if set(sent) <= set(_raised(rx)):
                    break
                await asyncio.sleep(0.1)
            async with httpx.AsyncClient(timeout=10) as c:
                stages = _stages((await c.get(f"http://127.0.0.1:{api_port}/metrics")).text)
        finally:
            await pub.stop()
            server.should_exit = True
            await rx_task
            proc.terminate()
            await asyncio.wait_for(proc.wait(), timeout=15)
    got = _raised(rx)
    lat = np.array([got[a] - t for a, t in sent.items() if a in got])
    lost = [a for a in sent if a not in got]
    q = (lambda p: float(np.percentile(lat, p))) if lat.size else (lambda p: float("nan"))
    return {
        "machine": f"{os.cpu_count()} cores", "broker": "embedded tansu (memory)",
        "streams": args.streams, "seconds": args.seconds, "background_labels_per_s": args.streams / 0.8,
        "criteria": len(sent), "delivered": int(lat.size), "lost": len(lost), "bad_signatures": rx.rejected,
        "latency_s": {"p50": q(50), "p90": q(90), "p99": q(99), "max": float(lat.max()) if lat.size else None},
        "budget_p99_s": 1.0, "batch_timeout_ms": args.batch_timeout_ms, "stages": stages,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamdx bench alerts", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=100, help="live label streams (background load, ~75 bpm each)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the measured run (s)")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between two criteria")
    p.add_argument("--partitions", type=int, default=4, help="partitions of each topic")
    p.add_argument("--batch-timeout-ms", type=int, default=200,
                   help="BATCH_TIMEOUT_MS of the alerts service (its default: 200)")
    p.add_argument("--drain-s", type=float, default=30.0, help="longest wait for the last webhooks (s)")
    p.add_argument("--out", default="reports/bench_alerts.json", help="JSON report to write")
    return p


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    result = asyncio.run(_bench(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    lat = result["latency_s"]
    print(f"criterion → webhook POST, {result['criteria']} criteria (pause / VT run) over {result['seconds']:.0f} s "
          f"with {result['streams']} live streams ({result['background_labels_per_s']:.0f} labels/s):")
    print(f"  p50 {lat['p50']:.3f} s   p90 {lat['p90']:.3f} s   p99 {lat['p99']:.3f} s   max {lat['max']} s   "
          f"(budget p99 ≤ {result['budget_p99_s']} s)")
    print(f"  delivered {result['delivered']}, lost {result['lost']}, bad signatures {result['bad_signatures']}")
    for name, st in result["stages"].items():
        print(f"  stage {name:<22} {json.dumps(st)}")
    print(f"report: {args.out}")
    return 0 if result["lost"] == 0 and result["bad_signatures"] == 0 else 1
