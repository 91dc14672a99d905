"""``streamdx report --stream ID``: the Holter summary of one stream, as a table or JSON.

Reads the rhythm engine's checkpoint from Redis (``REDIS_URL``, consumer group
``ALERTS_RHYTHM_GROUP``) — the same state ``GET /v1/streams/{id}/summary`` serves — so it
works with or without the alerts service running.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from streamdx.cli_args import report_path

__all__ = ["build_parser", "main", "print_summary"]


def build_parser() -> argparse.ArgumentParser:
    from streamdx.settings import settings_help
    from streamdx_alerts.settings import AlertsSettings

    p = argparse.ArgumentParser(
        prog="streamdx report",
        description="Holter summary of a stream: HR min/mean/max, hourly HR trend, AF episodes (start, end, "
        "duration) and burden, S and V beat counts, pauses and the longest VT run. Read from the alerts "
        "service's rhythm state in Redis.",
        epilog=settings_help(AlertsSettings), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--stream", required=True, help="stream id (a device lead)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    p.add_argument("--out", type=report_path, help="also write the JSON summary to this file")
    return p


def _fmt(v: float | None, unit: str = "") -> str:
    return "—" if v is None else f"{v:g}{unit}"


def print_summary(s: object, out: TextIO) -> None:
    """Human table of a :class:`~streamdx_alerts.engine.summary.HolterSummary`."""
    from streamdx_alerts.engine.summary import HolterSummary

    assert isinstance(s, HolterSummary)
    w = out.write
    w(f"Holter summary of {s.stream_id}: {s.start:%Y-%m-%d %H:%M:%S} → {s.end:%Y-%m-%d %H:%M:%S} UTC "
      f"({s.duration_s / 3600:.2f} h, {s.beats} beats, {s.readable_beats} readable)\n" if s.start and s.end
      else f"Holter summary of {s.stream_id}: no beats\n")
    w(f"  heart rate      min {_fmt(s.hr_min_bpm)}  mean {_fmt(s.hr_mean_bpm)}  max {_fmt(s.hr_max_bpm)} bpm\n")
    burden = "—" if s.af_burden is None else f"{100 * s.af_burden:.1f} %"
    rolling = "—" if s.af_burden_window is None else f"{100 * s.af_burden_window:.1f} %"
    w(f"  AF burden       {burden} (whole), {rolling} (last {s.af_burden_window_s / 3600:g} h); "
      f"{s.af_episode_count} episode(s)\n")
    w(f"  ectopy          S {s.s_beats}, V {s.v_beats}; longest VT run {s.longest_vt_run_beats} beats\n")
    w(f"  pauses          {s.pause_count}" + (f" (longest {max(p.duration_s for p in s.pauses):.1f} s)"
                                               if s.pauses else "") + "\n")
    if s.open_alerts:
        w(f"  open alerts     {', '.join(s.open_alerts)}\n")
    if s.af_episodes:
        w("\n  AF episode  start (UTC)           end (UTC)             duration\n")
        for i, e in enumerate(s.af_episodes, 1):
            end = f"{e.end:%Y-%m-%d %H:%M:%S}" if e.end else "(ongoing)          "
            w(f"  {i:>10}  {e.start:%Y-%m-%d %H:%M:%S}   {end}   {e.duration_s / 60:6.1f} min\n")
    if s.hourly_hr:
        w("\n  hour (UTC)          beats   mean   min    max  bpm\n")
        for h in s.hourly_hr:
            w(f"  {h.hour_start:%Y-%m-%d %H:00}   {h.beats:>6}  {h.mean_bpm:5.1f}  {h.min_bpm:5.1f}"
              f"  {h.max_bpm:5.1f}\n")


async def _load(stream: str) -> object:
    from redis.asyncio import Redis

    from streamdx.state_store import StateStore
    from streamdx_alerts.api.streams import SummarySource
    from streamdx_alerts.rules import load_profiles
    from streamdx_alerts.settings import AlertsSettings

    settings = AlertsSettings()
    redis = Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        source = SummarySource(StateStore(redis, settings.alerts_rhythm_group), load_profiles(settings.alerts_profiles))
        return await source.summary(stream)
    finally:
        await redis.aclose()


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from redis.exceptions import ConnectionError as RedisConnectionError

    from streamdx_alerts.rules import RulesError

    try:
        summary = asyncio.run(_load(args.stream))
    except RedisConnectionError as exc:
        print(f"streamdx report: Redis is not reachable ({exc}); set REDIS_URL", file=sys.stderr)
        return 1
    except RulesError as exc:
        print(f"streamdx report: {exc}", file=sys.stderr)
        return 1
    if summary is None:
        print(f"streamdx report: no labelled beats of stream {args.stream!r} (or its state expired)", file=sys.stderr)
        return 1
    from streamdx_alerts.engine.summary import HolterSummary

    assert isinstance(summary, HolterSummary)
    text = summary.model_dump_json(indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print_summary(summary, sys.stdout)
    return 0
