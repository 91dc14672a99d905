"""``streamdx demo``: the whole pipeline on the embedded stack with simulated devices.

Starts the embedded broker and Redis, the ingest service (HTTP on a free loopback port)
and every stage's workers in this process, registers simulated devices, streams synthetic
ECG with ground truth (sinus, AF, ectopy …) through ingest, optionally uploads a WFDB
Holter record for replay, follows ``ecg.beats`` and prints each stream's beats scored
against the generator's annotations and its beat labels (``ecg.labels``: class counts,
unreadable beats, AF share). A simulated camera rig uploads frames of simulated
ESR tubes; the demo prints the GRU's 60-minute forecasts beside the simulated truth.
The alerts service runs too, with a local webhook receiver subscribed to every alert: the
demo prints, per stream, the alarms each scenario should raise beside the signed webhooks
that arrived. Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from redis.asyncio import Redis

from streamdx.embedded import EmbeddedStack, free_port
from streamdx.logs import configure_logging
from streamdx.messaging.admin import all_topics, ensure_topics
from streamdx.messaging.publisher import Publisher
from streamdx.messaging.tail import tail
from streamdx.metrics import AlertsMetrics, DspMetrics, InferenceMetrics
from streamdx.schemas import EcgBeatV1, EcgLabelV1, EsrForecastV1
from streamdx.worker_service import WorkerRuntime, health_app, run_workers

__all__ = ["build_parser", "main", "score_beats"]

SCENARIOS = ("mixed", "af", "ectopy", "vt", "asystole", "leadoff", "brady", "noisy")
#: Alarms each scenario's ground truth calls for (technical alarms for the noisy one).
EXPECTED_ALARMS: dict[str, set[str]] = {
    "mixed": {"af_episode"},
    "af": {"af_episode"},
    "ectopy": set(),
    "sinus": set(),
    "vt": {"vt_run"},
    "asystole": {"asystole"},
    "leadoff": {"lead_off"},
    "brady": {"bradycardia"},
    "noisy": {"signal_unreadable", "lead_off"},
    "tachy": {"tachycardia"},
    "pause": {"pause"},
    "flat": {"lead_off"},
}


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


async def _follow_beats(bootstrap: str, sink: dict[str, list[int]], stop: asyncio.Event) -> None:
    async for beat in tail(bootstrap, EcgBeatV1, "demo-monitor", stop):
        sink[beat.stream_id].append(beat.r_sample)


async def _follow_labels(bootstrap: str, sink: dict[str, dict[int, EcgLabelV1]], stop: asyncio.Event) -> None:
    async for label in tail(bootstrap, EcgLabelV1, "demo-monitor-labels", stop):
        sink[label.stream_id][label.beat_index] = label  # idempotency key: a redelivery overwrites


def _print_labels(labels: dict[str, dict[int, EcgLabelV1]], report: dict[str, Any]) -> None:
    """Beat labels per stream: AAMI classes, unreadable beats (quality gate) and AF beats."""
    print(
        f"\nbeat labels (ecg.labels): {'stream':<12} {'labels':>6} {'N':>6} {'S':>5} {'V':>5} {'F':>4} {'Q':>4} "
        f"{'unread':>6} {'AF %':>6}"
    )
    report["labels"] = {}
    for stream in sorted(labels):
        got = list(labels[stream].values())
        counts = {c: sum(m.beat_class == c for m in got) for c in ("N", "S", "V", "F", "Q")}
        unread = sum(m.quality == "unreadable" for m in got)
        af = 100 * sum(bool(m.af) for m in got) / max(len(got) - unread, 1)
        print(
            f"{'':<26}{stream:<12} {len(got):>6} {counts['N']:>6} {counts['S']:>5} {counts['V']:>5} "
            f"{counts['F']:>4} {counts['Q']:>4} {unread:>6} {af:>6.1f}"
        )
        report["labels"][stream] = {"labels": len(got), **counts, "unreadable": unread, "af_percent": af}


def _print_alerts(receiver: Any, scenarios: dict[str, str], report: dict[str, Any]) -> None:
    """Alarms per stream as received by the subscribed webhook receiver, beside the scenario's truth."""
    raised: dict[str, list[str]] = defaultdict(list)
    for e in receiver.events():
        if e["state"] == "raised":
            raised[e["stream_id"]].append(e["kind"] + ("" if e["severity"] != "critical" else "!"))
    print(f"\nalerts (signed webhooks received: {len(receiver.received)}, rejected {receiver.rejected}; ! = critical):")
    print(f"  {'stream':<10} {'scenario':<9} {'expected':<30} raised")
    report["alerts"] = {}
    for stream, scenario in sorted(scenarios.items()):
        expected = sorted(EXPECTED_ALARMS.get(scenario, set()))
        got = raised.get(stream, [])
        mark = (
            "ok"
            if {k.rstrip("!") for k in got} & set(expected) or (not expected and not got)
            else "MISSED"
            if expected
            else "EXTRA"
        )
        print(f"  {stream:<10} {scenario:<9} {', '.join(expected) or '-':<30} {', '.join(got) or '-'}   [{mark}]")
        report["alerts"][stream] = {"scenario": scenario, "expected": expected, "raised": got}
    others = sorted(set(raised) - set(scenarios))
    for tube in others:
        print(f"  {tube:<20} {'ESR tube':<19} {', '.join(raised[tube])}")
        report["alerts"][tube] = {"raised": raised[tube]}


async def _follow_forecasts(bootstrap: str, sink: dict[str, list[EsrForecastV1]], stop: asyncio.Event) -> None:
    async for forecast in tail(bootstrap, EsrForecastV1, "demo-monitor-esr", stop):
        sink[forecast.tube_id].append(forecast)


async def _demo(args: argparse.Namespace) -> dict[str, Any]:
    import uvicorn

    from streamdx_alerts.main import build_alerts_service
    from streamdx_alerts.rules import Profiles
    from streamdx_alerts.settings import AlertsSettings
    from streamdx_alerts.webhooks.receiver import WebhookReceiver
    from streamdx_devkit.sim import ecg_synthesize
    from streamdx_devkit.sim.device import create_device, stream_ecg
    from streamdx_devkit.sim.esr import esr_cohort_simulate
    from streamdx_devkit.sim.esr_device import stream_tube
    from streamdx_dsp.main import build_dsp_workers, dsp_warm_up
    from streamdx_dsp.settings import DspSettings
    from streamdx_inference.main import build_inference_workers
    from streamdx_inference.settings import InferenceSettings
    from streamdx_ingest.app import create_app
    from streamdx_ingest.settings import IngestSettings

    report: dict[str, Any] = {"streams": {}, "simulated": True}
    with EmbeddedStack() as stack:
        print(f"embedded stack: broker {stack.kafka_bootstrap}, redis {stack.redis_url}")
        await ensure_topics(stack.kafka_bootstrap, all_topics(), args.partitions)
        admin = secrets.token_urlsafe(16)
        port = free_port()
        ingest_settings = IngestSettings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            ingest_admin_token=SecretStr(admin),
            ingest_port=port,
        )
        server = uvicorn.Server(
            uvicorn.Config(create_app(ingest_settings), host="127.0.0.1", port=port, log_config=None, access_log=False)
        )
        http_task = asyncio.create_task(server.serve())
        url = f"http://127.0.0.1:{port}"

        dsp_metrics, inf_metrics = DspMetrics(CollectorRegistry()), InferenceMetrics(CollectorRegistry())
        redis = Redis.from_url(stack.redis_url)
        publisher = Publisher(stack.kafka_bootstrap, dsp_metrics, client_id="streamdx-demo-workers")
        await publisher.start()
        dsp_settings = DspSettings(
            kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, batch_timeout_ms=100
        )
        runtime = WorkerRuntime(dsp_settings, dsp_metrics, redis, publisher)
        inf_settings = InferenceSettings(
            kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, batch_timeout_ms=100
        )
        await dsp_warm_up()
        workers = build_dsp_workers(runtime, dsp_settings) + build_inference_workers(
            WorkerRuntime(inf_settings, inf_metrics, redis, publisher), inf_settings
        )
        stop = asyncio.Event()
        alerts_port, rx_port = free_port(), free_port()
        alerts_settings = AlertsSettings(
            kafka_bootstrap=stack.kafka_bootstrap,
            redis_url=stack.redis_url,
            batch_timeout_ms=100,
            alerts_admin_token=SecretStr(admin),
            metrics_port=alerts_port,
            webhook_allow_private=True,
        )
        alerts_metrics = AlertsMetrics(CollectorRegistry())
        alerts_pub = Publisher(stack.kafka_bootstrap, alerts_metrics, client_id="streamdx-demo-alerts")
        await alerts_pub.start()
        parts = build_alerts_service(
            WorkerRuntime(alerts_settings, alerts_metrics, redis, alerts_pub), alerts_settings, Profiles(), stop
        )
        workers += parts.workers
        workers_task = asyncio.create_task(run_workers(workers, stop))
        background = [asyncio.create_task(job(stop)) for job in parts.background]
        alerts_server = uvicorn.Server(
            uvicorn.Config(
                health_app(parts.workers, background, alerts_metrics.registry, parts.routers, parts.app_state),
                host="127.0.0.1",
                port=alerts_port,
                log_config=None,
                access_log=False,
            )
        )
        receiver = WebhookReceiver()
        rx_server = uvicorn.Server(
            uvicorn.Config(receiver.app(), host="127.0.0.1", port=rx_port, log_config=None, access_log=False)
        )
        side_servers = [asyncio.create_task(alerts_server.serve()), asyncio.create_task(rx_server.serve())]
        beats: dict[str, list[int]] = defaultdict(list)
        forecasts: dict[str, list[EsrForecastV1]] = defaultdict(list)
        labels: dict[str, dict[int, EcgLabelV1]] = defaultdict(dict)
        follow = asyncio.gather(
            _follow_beats(stack.kafka_bootstrap, beats, stop),
            _follow_forecasts(stack.kafka_bootstrap, forecasts, stop),
            _follow_labels(stack.kafka_bootstrap, labels, stop),
        )
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                for _ in range(200):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{url}/readyz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                print(f"ingest listening on {url} (OpenAPI docs at {url}/docs)")
                alerts_url = f"http://127.0.0.1:{alerts_port}"
                for _ in range(200):
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.get(f"{alerts_url}/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                sub = await client.post(
                    f"{alerts_url}/v1/subscriptions",
                    headers={"Authorization": f"Bearer {admin}"},
                    json={"url": f"http://127.0.0.1:{rx_port}/hook", "description": "demo"},
                )
                sub.raise_for_status()
                receiver.secret = sub.json()["secret"]
                print(
                    f"alerts API on {alerts_url} (docs {alerts_url}/docs); webhook receiver "
                    f"http://127.0.0.1:{rx_port}/hook subscribed to every alert"
                )
                for _ in range(600):  # workers own their partitions before devices start
                    if all(w.ready for w in workers):
                        break
                    await asyncio.sleep(0.05)
                fs_cycle = (250.0, 360.0, 500.0)
                ecgs = {}
                for i in range(args.streams):
                    scenario = SCENARIOS[i % len(SCENARIOS)]
                    ecgs[f"demo-{i:02d}"] = ecg_synthesize(
                        args.duration, fs_cycle[i % 3], seed=100 + i, scenario=scenario
                    )
                keys = {d: await create_device(client, url, admin, d) for d in ecgs}
                print(
                    f"streaming {len(ecgs)} simulated devices × {args.duration:.0f} s "
                    f"({'as fast as possible' if args.speed == 0 else f'{args.speed:g}× real time'}) ..."
                )
                started = time.monotonic()
                reports = await asyncio.gather(
                    *[
                        stream_ecg(
                            client,
                            url,
                            d,
                            keys[d],
                            e,
                            chunk_s=1.0,
                            speed=args.speed,
                            transport="ws" if i % 2 else "http",
                        )
                        for i, (d, e) in enumerate(ecgs.items())
                    ]
                )
                elapsed = time.monotonic() - started
                if args.record:
                    report["replay"] = await _replay(client, url, admin, Path(args.record))
                tubes = esr_cohort_simulate(args.tubes, seed=7) if args.tubes else []
                if tubes:
                    print(f"camera rig: {len(tubes)} simulated tubes × {args.tube_minutes} minutes of frames ...")
                    cam_key = await create_device(client, url, admin, "cam-01")
                    tube_reports = await asyncio.gather(
                        *[
                            stream_tube(client, url, f"cam-01:{t.tube_id}", cam_key, t, minutes=args.tube_minutes)
                            for t in tubes
                        ]
                    )
            # let the workers drain: beats settle when counts stop changing
            last, stable_since = -1, time.monotonic()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                total = (
                    sum(len(v) for v in beats.values())
                    + sum(len(v) for v in forecasts.values())
                    + sum(len(v) for v in labels.values())
                    + len(receiver.received)
                )
                if total != last:
                    last, stable_since = total, time.monotonic()
                elif total > 0 and time.monotonic() - stable_since > 3:
                    break
                await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(workers_task, follow, *background, return_exceptions=True)
            server.should_exit = True
            alerts_server.should_exit = True
            rx_server.should_exit = True
            await asyncio.gather(http_task, *side_servers, return_exceptions=True)
            await publisher.stop()
            await alerts_pub.stop()
            await redis.aclose()

    samples = sum(e.n_samples for e in ecgs.values())
    print(f"\n{'stream':<10} {'scenario':<8} {'fs':>5} {'chunks':>7} {'beats':>6} {'truth':>6} {'Se%':>7} {'+P%':>7}")
    pooled = {"tp": 0, "fn": 0, "fp": 0}
    for (device, ecg), rep in zip(ecgs.items(), reports, strict=True):
        found = np.array(beats.get(device, []))
        settled = ecg.r_samples[(ecg.r_samples < ecg.n_samples - 5 * ecg.fs)][1:]
        s = score_beats(
            settled, found[found <= (settled[-1] if settled.size else 0) + 0.15 * ecg.fs], round(0.15 * ecg.fs)
        )
        for k in pooled:
            pooled[k] += int(s[k])
        print(
            f"{device:<10} {ecg.scenario:<8} {ecg.fs:>5.0f} {rep.accepted:>7} {found.size:>6} "
            f"{ecg.r_samples.size:>6} {s['se']:>7.2f} {s['ppv']:>7.2f}"
        )
        report["streams"][device] = {
            "scenario": ecg.scenario,
            "fs": ecg.fs,
            "chunks": rep.accepted,
            "beats": int(found.size),
            **s,
        }
    se = 100 * pooled["tp"] / max(pooled["tp"] + pooled["fn"], 1)
    ppv = 100 * pooled["tp"] / max(pooled["tp"] + pooled["fp"], 1)
    print(
        f"\npooled Se {se:.2f} %  +P {ppv:.2f} % "
        "(150 ms window; the first beat and the last 5 s of each stream unscored)"
    )
    print(f"ingest: {samples} samples in {elapsed:.1f} s = {samples / elapsed:,.0f} samples/s over HTTP + WebSocket")
    report.update({"pooled": {"se": se, "ppv": ppv, **pooled}, "samples": samples, "elapsed_s": elapsed})
    _print_labels(labels, report)
    _print_alerts(receiver, {d: e.scenario for d, e in ecgs.items()}, report)
    if args.record and report.get("replay", {}).get("streams"):
        report["replay"]["score"] = _score_replay(Path(args.record), report["replay"]["streams"].split(",")[0], beats)
    if tubes:
        print("\nESR (SIMULATED tubes): 60-minute height forecast from the frames so far (GRU, 90 % interval)")
        print(f"{'tube':<18} {'ESR mm/h':>8} {'frames':>6} {'minute':>6} {'forecast h60':>22} {'true h60':>8}")
        report["esr"] = {}
        for t, tube_rep in zip(tubes, tube_reports, strict=True):
            tid = f"cam-01:{t.tube_id}"
            fc = forecasts.get(tid, [])
            latest = fc[-1] if fc else None
            shown = f"{latest.h60:.3f} [{latest.h60_low:.3f}, {latest.h60_high:.3f}]" if latest else "-"
            print(
                f"{tid:<18} {t.esr_mm_h:>8.0f} {tube_rep.frames_sent:>6} {latest.minute if latest else '-':>6} "
                f"{shown:>22} {t.heights[60]:>8.3f}"
            )
            report["esr"][tid] = {
                "esr_mm_h": t.esr_mm_h,
                "forecasts": len(fc),
                "true_h60": t.heights[60],
                "last": latest.model_dump(mode="json") if latest else None,
                "simulated": True,
            }
    return report


async def _replay(client: httpx.AsyncClient, url: str, admin: str, record: Path) -> dict[str, Any]:
    from streamdx_devkit.sim.device import create_device

    key = await create_device(client, url, admin, "holter-01")
    files = [
        ("files", (record.with_suffix(".hea").name, record.with_suffix(".hea").read_bytes())),
        ("files", (record.with_suffix(".dat").name, record.with_suffix(".dat").read_bytes())),
    ]
    auth = {"Authorization": f"Bearer {key}"}
    r = await client.post(f"{url}/v1/recordings", files=files, data={"stream_id": "holter-01"}, headers=auth)
    r.raise_for_status()
    body = r.json()
    print(f"replaying {record.name}: {body['n_samples']} samples × {len(body['streams'])} leads at {body['fs']:g} Hz")
    progress: dict[str, Any] = {}
    for _ in range(1200):
        progress = (await client.get(f"{url}{body['status_url']}", headers=auth)).json()
        if progress["status"] != "replaying":
            break
        await asyncio.sleep(0.25)
    print(f"replay {progress.get('status')}: {progress.get('samples_published')} samples published")
    return {"record": record.name, **progress}


_BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")


def _score_replay(record: Path, stream: str, beats: dict[str, list[int]]) -> dict[str, float]:
    """Score the replayed first lead's beats against the record's ``.atr`` beat annotations."""
    import wfdb

    if not record.with_suffix(".atr").exists():
        print(f"{record.name}: no .atr annotations to score against")
        return {}
    ann = wfdb.rdann(str(record), "atr")
    fs = float(wfdb.rdheader(str(record)).fs)
    truth = np.array([s for s, sym in zip(ann.sample, ann.symbol, strict=True) if sym in _BEAT_SYMBOLS])
    found = np.array(beats.get(stream, []))
    # beats within the pipeline latency of the end of a finished replay are flushed; skip the first 5 s
    truth = truth[truth > 5 * fs]
    score = score_beats(truth, found[found > 5 * fs - 0.15 * fs], round(0.15 * fs))
    print(
        f"replayed {record.name} ({stream}): {found.size} beats, Se {score['se']:.2f} %  +P {score['ppv']:.2f} % "
        "against the record's annotations (150 ms window)"
    )
    return score


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdx demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=len(SCENARIOS),
        help="simulated ECG devices, 1..200, one scenario each in turn (default: %(default)s)",
    )
    parser.add_argument(
        "--duration", type=float, default=120.0, help="seconds of ECG per device, 10..3600 (default: %(default)s)"
    )
    parser.add_argument("--speed", type=float, default=0.0, help="0 = as fast as possible, 1 = real time")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of each topic (default: %(default)s)")
    parser.add_argument("--record", help="also upload this WFDB record (path without extension) for replay")
    parser.add_argument("--tubes", type=int, default=3, help="simulated ESR tubes (0 = none)")
    parser.add_argument("--tube-minutes", type=int, default=30, help="minutes of frames per tube")
    parser.add_argument("--out", help="write the JSON report here")
    return parser


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.streams <= 200 or not 10 <= args.duration <= 3600:
        parser.error("--streams 1..200, --duration 10..3600")
    configure_logging("demo", "WARNING")
    report = asyncio.run(_demo(args))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2, default=str))
    ok = report["pooled"]["se"] > 90 and report["pooled"]["ppv"] > 90
    print("demo OK" if ok else "demo finished with poor beat detection", file=sys.stderr if not ok else sys.stdout)
    return 0 if ok else 1
