"""``streamdx simulate esr`` — a camera rig that pushes rendered frames of *simulated* tubes.

For each simulated tube (:func:`streamdx_devkit.sim.esr.esr_cohort_simulate`) it registers the tube
with ingest (``POST /v1/tubes`` with age, sex and ``simulated: true``) and uploads one rendered
frame per minute (``POST /v1/tubes/{tube_id}/frames``, multipart ``image`` + ``minute``).
429/503 are retried after ``Retry-After`` with the same minute; any other 4xx stops that tube.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from streamdx.cli_args import non_negative_int
from streamdx_devkit.sim.device import IngestError, create_device
from streamdx_devkit.sim.esr import SimulatedTube, esr_cohort_simulate, esr_frame_render

__all__ = ["TubeReport", "build_parser", "main", "stream_tube"]


@dataclass
class TubeReport:
    tube_id: str
    frames_sent: int
    retries: int
    error: str | None
    esr_mm_h: float
    true_h60: float


async def stream_tube(
    client: httpx.AsyncClient, url: str, tube_id: str, api_key: str, tube: SimulatedTube, *,
    minutes: int = 60, interval_s: float = 0.0, max_retries: int = 5,
) -> TubeReport:
    """Register ``tube`` and upload its frames for minutes ``0..minutes``."""
    auth = {"Authorization": f"Bearer {api_key}"}
    report = TubeReport(tube_id, 0, 0, None, tube.esr_mm_h, tube.heights[60])
    body = {"tube_id": tube_id, "age": round(tube.age, 1), "sex": tube.sex, "simulated": True}
    r = await client.post(f"{url}/v1/tubes", json=body, headers=auth)
    if r.status_code not in (200, 201):
        report.error = f"register: HTTP {r.status_code} {r.text[:200]}"
        return report
    started = time.monotonic()
    for minute in range(minutes + 1):
        if interval_s > 0:
            await asyncio.sleep(max(0.0, started + minute * interval_s - time.monotonic()))
        data, _truth = esr_frame_render(tube, minute, seed=tube.seed * 1000 + minute)
        for attempt in range(max_retries + 1):
            r = await client.post(f"{url}/v1/tubes/{tube_id}/frames", files={"image": ("frame.jpg", data)},
                                  data={"minute": str(minute)}, headers=auth)
            if r.status_code == 202:
                report.frames_sent += 1
                break
            if r.status_code in (429, 503) and attempt < max_retries:
                report.retries += 1
                await asyncio.sleep(min(float(r.headers.get("Retry-After", "1")), 60.0))
                continue
            report.error = f"minute {minute}: HTTP {r.status_code} {r.text[:200]}"
            return report
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamdx simulate esr", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ingest", default="http://127.0.0.1:8000", help="ingest base URL (default: %(default)s)")
    p.add_argument("--admin-token", help="create the camera device with this admin token")
    p.add_argument("--key", help="API key of an existing camera device (with --device)")
    p.add_argument("--device", default="cam-01", help="camera device id (default: %(default)s)")
    p.add_argument("--tubes", type=int, default=4, help="simulated tubes, 1..500 (default: %(default)s)")
    p.add_argument("--minutes", type=int, default=60, help="minutes of frames per tube, 1..120 (default: %(default)s)")
    p.add_argument("--interval-s", type=float, default=0.0, help="seconds between minutes (60 = real time)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the simulated cohort (default: %(default)s)")
    p.add_argument("--truth-out", help="write each tube's simulated heights and ESR here (JSON)")
    return p


async def run(argv: Sequence[str]) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if not (args.admin_token or args.key) or not 1 <= args.tubes <= 500 or not 1 <= args.minutes <= 120:
        p.error("give --admin-token or --key; --tubes 1..500; --minutes 1..120")
    tubes = esr_cohort_simulate(args.tubes, seed=args.seed)
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        try:
            key = args.key or await create_device(client, args.ingest, args.admin_token, args.device)
        except IngestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        reports = await asyncio.gather(*[
            stream_tube(client, args.ingest, f"{args.device}:{t.tube_id}", key, t, minutes=args.minutes,
                        interval_s=args.interval_s)
            for t in tubes
        ])
    for rep in reports:
        status = "ok" if rep.error is None else f"ERROR {rep.error}"
        print(f"{rep.tube_id}: {rep.frames_sent} frames, ESR {rep.esr_mm_h:.0f} mm/h (simulated), {status}")
    if args.truth_out:
        truth = {f"{args.device}:{t.tube_id}": {"age": t.age, "sex": t.sex, "esr_mm_h": t.esr_mm_h,
                                                 "heights": list(t.heights), "simulated": True} for t in tubes}
        await asyncio.to_thread(
            Path(args.truth_out).write_text, json.dumps({"tubes": truth, "reports": [asdict(r) for r in reports]})
        )
    return 0 if all(r.error is None for r in reports) else 1


def main(argv: Sequence[str]) -> int:
    return asyncio.run(run(argv))
