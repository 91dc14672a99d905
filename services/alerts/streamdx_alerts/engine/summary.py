"""Holter summary of one stream, computed from the rhythm engine's state.

HR min / mean / max (min and max of the ``average_beats`` averaged rate, mean of the
instantaneous rates), the hourly HR trend, AF episodes (start, end, duration) and AF burden
(whole stream and rolling window), S and V beat counts, pauses and the longest VT run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, Field

from streamdx_alerts.engine.rhythm import RhythmState
from streamdx_alerts.rules import AlertRules

__all__ = ["AfEpisode", "HolterSummary", "HourlyHr", "Pause", "holter_summary"]


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


class HourlyHr(BaseModel):
    hour_start: datetime
    mean_bpm: float
    min_bpm: float
    max_bpm: float
    beats: int


class AfEpisode(BaseModel):
    start: datetime
    end: datetime | None = Field(description="None while the episode is still open")
    duration_s: float


class Pause(BaseModel):
    start: datetime
    duration_s: float


class HolterSummary(BaseModel):
    """What a Holter report shows for one stream."""

    stream_id: str
    start: datetime | None
    end: datetime | None
    duration_s: float
    beats: int
    readable_beats: int
    analysed_s: float = Field(description="Time covered by valid RR intervals (s)")
    hr_min_bpm: float | None
    hr_mean_bpm: float | None
    hr_max_bpm: float | None
    hourly_hr: list[HourlyHr]
    af_episodes: list[AfEpisode]
    af_episode_count: int
    af_burden: float | None = Field(description="AF time / analysed time, whole stream")
    af_burden_window: float | None = Field(description="AF burden over the rolling window")
    af_burden_window_s: float
    beat_classes: dict[str, int]
    s_beats: int
    v_beats: int
    pauses: list[Pause]
    pause_count: int
    longest_vt_run_beats: int
    open_alerts: list[str]


def holter_summary(stream_id: str, state: RhythmState, rules: AlertRules) -> HolterSummary:
    """Build the summary of ``state`` (an AF run that has been raised and is still going is
    reported as an open episode)."""
    s = state
    episodes = [AfEpisode(start=_dt(a), end=_dt(b), duration_s=round(b - a, 1)) for a, b in s.af_episodes]
    if s.af_start is not None and s.book.is_open("af_episode"):
        episodes.append(AfEpisode(start=_dt(s.af_start), end=None, duration_s=round(s.af_last - s.af_start, 1)))
    hourly = [
        HourlyHr(hour_start=_dt(h * 3600.0), mean_bpm=round(v[0] / v[1], 1), min_bpm=round(v[2], 1),
                 max_bpm=round(v[3], 1), beats=int(v[1]))
        for h, v in sorted(s.hours.items()) if v[1] > 0
    ]  # fmt: skip
    window = rules.af.burden_window_s
    burden, rolling = s.af_burden(), s.af_burden(window)
    return HolterSummary(
        stream_id=stream_id,
        start=_dt(s.first_t) if s.first_t is not None else None,
        end=_dt(s.last_t) if s.last_t is not None else None,
        duration_s=round((s.last_t or 0.0) - (s.first_t or 0.0), 1),
        beats=s.n_beats,
        readable_beats=s.n_readable,
        analysed_s=round(s.analysed_s, 1),
        hr_min_bpm=round(s.hr_min, 1) if s.hr_min is not None else None,
        hr_mean_bpm=round(s.hr_sum / s.hr_n, 1) if s.hr_n else None,
        hr_max_bpm=round(s.hr_max, 1) if s.hr_max is not None else None,
        hourly_hr=hourly,
        af_episodes=episodes,
        af_episode_count=s.af_episode_count + (1 if episodes and episodes[-1].end is None else 0),
        af_burden=round(burden, 4) if burden is not None else None,
        af_burden_window=round(rolling, 4) if rolling is not None else None,
        af_burden_window_s=window,
        beat_classes=dict(sorted(s.classes.items())),
        s_beats=s.classes.get("S", 0),
        v_beats=s.classes.get("V", 0),
        pauses=[Pause(start=_dt(a), duration_s=round(d, 2)) for a, d in s.pauses],
        pause_count=s.pause_count,
        longest_vt_run_beats=s.longest_vt_beats,
        open_alerts=sorted(s.book.open),
    )
