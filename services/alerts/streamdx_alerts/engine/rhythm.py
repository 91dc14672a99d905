"""Rhythm engine: per-beat labels of one stream → heart rate, episodes, alarms and Holter statistics.

Pure core (no I/O). :func:`rhythm_step` takes the stream's :class:`RhythmState` and its next
labelled beats (:class:`RhythmBeat`, built from ``ecg.labels``) and returns the new state and
the alert changes. The input state is never mutated, beats at or below the last applied
index are ignored (redelivery), and the output depends only on the beats, so replaying a
stream gives the same alerts with the same ids.

What it tracks, in signal time:

* **heart rate**: instantaneous ``60 / RR`` and the mean over the last ``average_beats`` valid
  RR intervals. An RR is valid when both beats passed the quality gate, it does not follow a
  data gap, and no signal was lost inside it (``rr_prev_lost_s == 0``);
* **AF episodes**: a run starts at the first AF beat, and is ended by non-AF rhythm lasting
  ``af.offset_s`` (hysteresis; unreadable beats neither extend nor end it). It is raised
  once it has lasted ``af.min_duration_s`` (clinical minimum 30 s) with at least
  ``af.min_af_fraction`` AF beats, and resolved at its last AF beat. AF burden = AF time /
  analysed time (valid RR intervals), over the whole stream and a rolling window;
* **bradycardia / tachycardia** on the averaged rate with minimum durations, hysteresis and
  escalation to critical below/above the extreme thresholds;
* **pauses**: a valid RR of at least ``pause.rr_s`` and below ``asystole.no_beat_s`` (longer
  spans are asystole, raised from the dsp's signal status by
  :mod:`streamdx_alerts.engine.technical`); a data gap or lost signal is never a pause;
* **VT runs**: ``vt.min_beats`` consecutive V beats at a mean rate of at least
  ``vt.min_rate_bpm``; updated as *sustained* after ``vt.sustained_s``; tachycardia is not
  raised while VT is;
* **unreadable signal**: beats failing the quality gate without interruption for
  ``unreadable.min_s`` (lost signal and data gaps excluded: those are lead_off / data_gap) raise a
  technical alarm that suppresses new rhythm alarms until ``unreadable.resolve_beats``
  readable beats in a row;
* Holter statistics for :mod:`streamdx_alerts.engine.summary` (hourly HR, S/V counts,
  pauses, longest VT run, AF episodes).

Alarm criteria follow the bedside-monitor alarm set of IEC 60601-2-27 (asystole, VT,
extreme brady/tachycardia, technical alarms); the AF episode minimum of 30 s is the
clinical definition (Hindricks et al. 2020 ESC AF guidelines).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamdx_alerts.engine.lifecycle import AlertBook, AlertChange
from streamdx_alerts.rules import AlertRules, RateRule

__all__ = ["MAX_KEPT", "RhythmBeat", "RhythmState", "rhythm_finish", "rhythm_step"]

#: Most AF episodes / pauses kept in the state for the summary (the oldest are dropped, counts stay).
MAX_KEPT = 500
#: Hours of hourly HR statistics kept (7 days).
MAX_HOURS = 168


@dataclass(frozen=True)
class RhythmBeat:
    """One labelled beat as the engine sees it.

    Attributes
    ----------
    beat_index : int
        Index of the beat in its stream (strictly increasing).
    t : float
        Time of the R peak (s since the epoch, signal clock).
    rr_prev_s : float
        RR interval ending at this beat (s).
    readable : bool
        Passed the quality gate.
    af : bool or None
        AF at this beat (None when unreadable).
    beat_class : str or None
        AAMI class N, S, V, F or Q (None when unreadable).
    after_gap : bool
        First beat after a data gap (its RR is not a real interval).
    rr_prev_lost_s : float
        Lost signal (flat line / lead off) inside the RR interval (s).
    """

    beat_index: int
    t: float
    rr_prev_s: float
    readable: bool
    af: bool | None
    beat_class: str | None
    after_gap: bool = False
    rr_prev_lost_s: float = 0.0


@dataclass
class _Rate:
    since: float | None = None
    clear_since: float | None = None


@dataclass
class RhythmState:
    """Everything the engine keeps for one stream (JSON-serialisable via :meth:`to_dict`)."""

    last_index: int = -1
    last_t: float | None = None
    first_t: float | None = None
    prev_readable: bool = False
    rr: list[float] = field(default_factory=list)
    unreadable_since: float | None = None
    readable_run: int = 0
    brady: _Rate = field(default_factory=_Rate)
    tachy: _Rate = field(default_factory=_Rate)
    vt_start_t: float = 0.0
    vt_start_index: int = -1
    vt_n: int = 0
    vt_rr_sum: float = 0.0
    vt_rr_n: int = 0
    vt_last_t: float = 0.0
    vt_sustained: bool = False
    af_start: float | None = None
    af_start_index: int = -1
    af_last: float = 0.0
    af_nonaf_since: float | None = None
    af_n_af: int = 0
    af_n: int = 0
    af_episodes: list[list[float]] = field(default_factory=list)
    af_episode_count: int = 0
    af_s: float = 0.0
    analysed_s: float = 0.0
    minutes: dict[int, list[float]] = field(default_factory=dict)
    n_beats: int = 0
    n_readable: int = 0
    classes: dict[str, int] = field(default_factory=dict)
    pauses: list[list[float]] = field(default_factory=list)
    pause_count: int = 0
    longest_vt_beats: int = 0
    hours: dict[int, list[float]] = field(default_factory=dict)
    hr_min: float | None = None
    hr_max: float | None = None
    hr_sum: float = 0.0
    hr_n: int = 0
    hr_avg: float | None = None
    book: AlertBook = field(default_factory=AlertBook)

    def copy(self) -> RhythmState:
        """An independent copy (the containers the engine mutates are copied; ~10× cheaper than deepcopy)."""
        new = copy.copy(self)
        new.rr = list(self.rr)
        new.brady, new.tachy = copy.copy(self.brady), copy.copy(self.tachy)
        new.af_episodes = [list(x) for x in self.af_episodes]
        new.minutes = {k: list(v) for k, v in self.minutes.items()}
        new.classes = dict(self.classes)
        new.pauses = [list(x) for x in self.pauses]
        new.hours = {k: list(v) for k, v in self.hours.items()}
        new.book = self.book.copy()
        return new

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("book", "brady", "tachy", "minutes", "hours")}
        d["brady"] = [self.brady.since, self.brady.clear_since]
        d["tachy"] = [self.tachy.since, self.tachy.clear_since]
        d["minutes"] = {str(k): v for k, v in self.minutes.items()}
        d["hours"] = {str(k): v for k, v in self.hours.items()}
        d["book"] = self.book.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RhythmState:
        d = dict(d)
        book = AlertBook.from_dict(d.pop("book"))
        brady, tachy = d.pop("brady"), d.pop("tachy")
        minutes = {int(k): [float(x) for x in v] for k, v in d.pop("minutes").items()}
        hours = {int(k): [float(x) for x in v] for k, v in d.pop("hours").items()}
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"rhythm state: unknown fields {sorted(unknown)}")
        return cls(**d, book=book, brady=_Rate(*brady), tachy=_Rate(*tachy), minutes=minutes, hours=hours)

    def af_burden(self, window_s: float | None = None) -> float | None:
        """AF time / analysed time over the whole stream, or over the last ``window_s`` (None: no data)."""
        if window_s is None:
            return self.af_s / self.analysed_s if self.analysed_s > 0 else None
        if self.last_t is None:
            return None
        first = int((self.last_t - window_s) // 60)
        af = sum(v[0] for m, v in self.minutes.items() if m > first)
        total = sum(v[1] for m, v in self.minutes.items() if m > first)
        return af / total if total > 0 else None


def _rule_name(profile: str, kind: str) -> str:
    return f"{profile}/{kind}"


class _Step:
    """One call's mutable context (the copied state, rules and collected changes)."""

    def __init__(self, state: RhythmState, rules: AlertRules, stream_id: str, profile: str) -> None:
        self.s, self.r, self.sid, self.profile = state, rules, stream_id, profile
        self.out: list[AlertChange] = []

    def emit(self, ch: AlertChange | None) -> None:
        if ch is not None:
            self.out.append(ch)

    def raise_(self, kind: str, *, severity: str, started_at: float, criterion_at: float, hint: int | str,
               message: str, details: dict[str, float | int | str | bool] | None = None, suppress_s: float = 0.0,
               enabled: bool = True) -> bool:
        if not enabled:
            return False
        ch = self.s.book.raise_alert(self.sid, kind, rule=_rule_name(self.profile, kind), severity=severity,
                                     started_at=started_at, criterion_at=criterion_at, hint=hint, message=message,
                                     details=details, suppress_s=suppress_s)
        self.emit(ch)
        return ch is not None

    @property
    def technical_open(self) -> bool:
        return self.s.book.is_open("signal_unreadable")

    # --- per-beat rules -------------------------------------------------------------------

    def beat(self, b: RhythmBeat) -> None:
        s, r = self.s, self.r
        valid_rr = (b.readable and s.prev_readable and not b.after_gap and b.rr_prev_lost_s <= 0.0
                    and s.last_t is not None)  # fmt: skip
        if s.first_t is None:
            s.first_t = b.t
        s.n_beats += 1
        self.unreadable(b)
        if b.readable:
            s.n_readable += 1
            cls = b.beat_class or "?"
            s.classes[cls] = s.classes.get(cls, 0) + 1
            if valid_rr:
                self.heart_rate(b)
                self.pause(b)
                self.burden(b)
            self.vt(b, valid_rr)
            self.af(b)
            if s.hr_avg is not None and valid_rr:
                self.rate("bradycardia", r.bradycardia, s.brady, b.t, low=True)
                self.rate("tachycardia", r.tachycardia, s.tachy, b.t, low=False)
        elif b.after_gap:
            s.rr.clear()
        s.prev_readable = b.readable
        s.last_t = b.t
        s.last_index = b.beat_index
        if s.book.open:
            self.escalate()

    def unreadable(self, b: RhythmBeat) -> None:
        s, rule = self.s, self.r.unreadable
        if (b.rr_prev_lost_s > 0.0 or b.after_gap) and s.unreadable_since is not None and not s.book.is_open(
            "signal_unreadable"
        ):
            s.unreadable_since = None  # lost signal and data gaps are lead_off / data_gap, not unreadable time
        if not b.readable:
            s.readable_run = 0
            if s.unreadable_since is None:
                s.unreadable_since = b.t
            if b.t - s.unreadable_since >= rule.min_s:
                self.raise_("signal_unreadable", severity=rule.severity, started_at=s.unreadable_since,
                            criterion_at=b.t, hint=b.beat_index, enabled=rule.enabled, suppress_s=rule.suppress_s,
                            message=f"ECG unreadable for {rule.min_s:.0f} s: rhythm alarms suppressed")
            return
        s.readable_run += 1
        if not s.book.is_open("signal_unreadable"):
            s.unreadable_since = None  # the unreadable span must be uninterrupted to raise
        elif s.readable_run >= rule.resolve_beats:
            s.unreadable_since = None
            self.emit(s.book.resolve_alert("signal_unreadable", ended_at=b.t, message="ECG readable again"))
            s.brady, s.tachy = _Rate(), _Rate()  # rate conditions must be met again on readable signal

    def heart_rate(self, b: RhythmBeat) -> None:
        s = self.s
        s.rr.append(b.rr_prev_s)
        del s.rr[: -self.r.average_beats]
        hr = 60.0 / b.rr_prev_s
        s.hr_sum += hr
        s.hr_n += 1
        hour = s.hours.setdefault(int(b.t // 3600), [0.0, 0.0, hr, hr])
        hour[0] += hr
        hour[1] += 1
        hour[2] = min(hour[2], hr)
        hour[3] = max(hour[3], hr)
        while len(s.hours) > MAX_HOURS:
            del s.hours[min(s.hours)]
        if len(s.rr) >= min(4, self.r.average_beats):
            s.hr_avg = 60.0 / (sum(s.rr) / len(s.rr))
            s.hr_min = s.hr_avg if s.hr_min is None else min(s.hr_min, s.hr_avg)
            s.hr_max = s.hr_avg if s.hr_max is None else max(s.hr_max, s.hr_avg)

    def burden(self, b: RhythmBeat) -> None:
        s = self.s
        rr = b.rr_prev_s
        s.analysed_s += rr
        m = s.minutes.setdefault(int(b.t // 60), [0.0, 0.0])
        m[1] += rr
        if b.af:
            s.af_s += rr
            m[0] += rr
        oldest = int((b.t - self.r.af.burden_window_s) // 60)
        for k in [k for k in s.minutes if k <= oldest]:
            del s.minutes[k]

    def pause(self, b: RhythmBeat) -> None:
        s, rule = self.s, self.r.pause
        if b.rr_prev_s < rule.rr_s:
            return
        s.pause_count += 1
        s.pauses.append([b.t - b.rr_prev_s, b.rr_prev_s])
        del s.pauses[:-MAX_KEPT]
        if b.rr_prev_s >= self.r.asystole.no_beat_s or self.technical_open:
            return  # asystole is raised from the signal status
        start = b.t - b.rr_prev_s
        if self.raise_("pause", severity=rule.severity, started_at=start, criterion_at=start + rule.rr_s,
                       hint=b.beat_index, enabled=rule.enabled, suppress_s=rule.suppress_s,
                       message=f"pause of {b.rr_prev_s:.1f} s", details={"rr_s": round(b.rr_prev_s, 3)}):
            self.emit(s.book.resolve_alert("pause", ended_at=b.t, message="pause ended"))

    def vt(self, b: RhythmBeat, valid_rr: bool) -> None:
        s, rule = self.s, self.r.vt
        if b.beat_class == "V":
            if s.vt_n == 0:
                s.vt_start_t, s.vt_start_index, s.vt_rr_sum, s.vt_rr_n, s.vt_sustained = b.t, b.beat_index, 0, 0, False
            elif valid_rr:
                s.vt_rr_sum += b.rr_prev_s
                s.vt_rr_n += 1
            s.vt_n += 1
            s.vt_last_t = b.t
            rate = 60.0 * s.vt_rr_n / s.vt_rr_sum if s.vt_rr_n else 0.0
            if s.vt_n < rule.min_beats or rate < rule.min_rate_bpm:
                return
            s.longest_vt_beats = max(s.longest_vt_beats, s.vt_n)
            details: dict[str, float | int | str | bool] = {"beats": s.vt_n, "rate_bpm": round(rate, 1)}
            if not s.book.is_open("vt_run"):
                if not self.technical_open:
                    self.raise_("vt_run", severity=rule.severity, started_at=s.vt_start_t, criterion_at=b.t,
                                hint=s.vt_start_index, enabled=rule.enabled, suppress_s=rule.suppress_s,
                                message=f"VT run: {s.vt_n} ventricular beats at {rate:.0f} bpm", details=details)
            elif not s.vt_sustained and b.t - s.vt_start_t >= rule.sustained_s:
                s.vt_sustained = True
                self.emit(s.book.update_alert("vt_run", criterion_at=b.t, severity="critical",
                                              message=f"sustained VT (> {rule.sustained_s:.0f} s) at {rate:.0f} bpm",
                                              details={**details, "sustained": True}))
            return
        if s.vt_n:
            rate = 60.0 * s.vt_rr_n / s.vt_rr_sum if s.vt_rr_n else 0.0
            self.emit(s.book.resolve_alert("vt_run", ended_at=s.vt_last_t, message="VT run ended",
                                           details={"beats": s.vt_n, "rate_bpm": round(rate, 1)}))
            s.vt_n = 0

    def af(self, b: RhythmBeat) -> None:
        s, rule = self.s, self.r.af
        if b.af:
            if s.af_start is None:
                start = b.t - b.rr_prev_s if s.prev_readable and not b.after_gap else b.t
                s.af_start, s.af_start_index, s.af_n_af, s.af_n = start, b.beat_index, 0, 0
            s.af_last = b.t
            s.af_nonaf_since = None
            s.af_n_af += 1
            s.af_n += 1
        elif s.af_start is not None:
            s.af_n += 1
            if s.af_nonaf_since is None:
                s.af_nonaf_since = b.t
            if b.t - s.af_nonaf_since >= rule.offset_s:
                self.af_end()
                return
        if s.af_start is None:
            return
        open_ = s.book.is_open("af_episode")
        if (not open_ and b.af and s.af_last - s.af_start >= rule.min_duration_s
                and s.af_n_af >= rule.min_af_fraction * s.af_n and not self.technical_open):  # fmt: skip
            burden = s.af_burden(rule.burden_window_s)
            self.raise_("af_episode", severity=rule.severity, started_at=s.af_start, criterion_at=b.t,
                        hint=s.af_start_index, enabled=rule.enabled, suppress_s=rule.suppress_s,
                        message=f"atrial fibrillation for {s.af_last - s.af_start:.0f} s",
                        details={"af_burden_window": round(burden, 4) if burden is not None else -1.0})

    def af_end(self) -> None:
        s = self.s
        assert s.af_start is not None
        if s.book.is_open("af_episode"):
            s.af_episodes.append([s.af_start, s.af_last])
            del s.af_episodes[:-MAX_KEPT]
            s.af_episode_count += 1
            self.emit(s.book.resolve_alert("af_episode", ended_at=s.af_last, message="atrial fibrillation ended",
                                           details={"af_beats": s.af_n_af}))
        s.af_start, s.af_nonaf_since = None, None

    def rate(self, kind: str, rule: RateRule, st: _Rate, t: float, *, low: bool) -> None:
        s = self.s
        hr = s.hr_avg
        assert hr is not None
        cond = hr < rule.bpm if low else hr > rule.bpm
        clear = hr >= rule.bpm + rule.hysteresis_bpm if low else hr <= rule.bpm - rule.hysteresis_bpm
        extreme = hr <= rule.extreme_bpm if low else hr >= rule.extreme_bpm
        word = "bradycardia" if low else "tachycardia"
        details: dict[str, float | int | str | bool] = {"hr_bpm": round(hr, 1)}
        if cond:
            st.clear_since = None
            if st.since is None:
                st.since = t
            if not s.book.is_open(kind):
                if self.technical_open or (not low and s.book.is_open("vt_run")):
                    st.since = t  # must be met again after the superseding alarm
                elif t - st.since >= rule.min_duration_s:
                    self.raise_(kind, severity="critical" if extreme else rule.severity, started_at=st.since,
                                criterion_at=t, hint=int(st.since * 1000), enabled=rule.enabled,
                                suppress_s=rule.suppress_s, message=f"{word}: {hr:.0f} bpm", details=details)
            elif extreme:
                self.emit(s.book.update_alert(kind, criterion_at=t, severity="critical",
                                              message=f"extreme {word}: {hr:.0f} bpm", details={"extreme": True}))
        elif clear:
            st.since = None
            if s.book.is_open(kind):
                if st.clear_since is None:
                    st.clear_since = t
                if t - st.clear_since >= rule.resolve_s:
                    self.emit(s.book.resolve_alert(kind, ended_at=st.clear_since, message=f"{word} ended",
                                                   details=details))
                    st.clear_since = None

    def escalate(self) -> None:
        r = self.r
        if self.s.last_t is None:
            return
        after = {"af_episode": r.af.escalate_after_s, "bradycardia": r.bradycardia.escalate_after_s,
                 "tachycardia": r.tachycardia.escalate_after_s, "vt_run": r.vt.escalate_after_s,
                 "signal_unreadable": r.unreadable.escalate_after_s}  # fmt: skip
        self.out += self.s.book.escalate(self.s.last_t, after)


def rhythm_step(
    state: RhythmState | None, beats: Sequence[RhythmBeat], rules: AlertRules, *, stream_id: str,
    profile: str = "default",
) -> tuple[RhythmState, list[AlertChange]]:
    """Apply a stream's next beats.

    Parameters
    ----------
    state : RhythmState or None
        State after the previous call (None: a new stream). Not mutated.
    beats : sequence of RhythmBeat
        Next beats in index order; those at or below ``state.last_index`` are ignored.
    rules : AlertRules
        The stream's profile.
    stream_id : str
        Used in alert ids.
    profile : str
        Profile name, reported in each alert's ``rule``.

    Returns
    -------
    state : RhythmState
        New state.
    changes : list of AlertChange
        Alert events in the order they happened.
    """
    st = state.copy() if state is not None else RhythmState()
    step = _Step(st, rules, stream_id, profile)
    for b in beats:
        if b.beat_index <= st.last_index:
            continue
        step.beat(b)
    return st, step.out


def rhythm_finish(
    state: RhythmState, rules: AlertRules, *, stream_id: str, profile: str = "default"
) -> tuple[RhythmState, list[AlertChange]]:
    """End of a finite recording: close the AF run in progress (recording its episode) and
    resolve every open alert at the last beat."""
    st = state.copy()
    step = _Step(st, rules, stream_id, profile)
    if st.af_start is not None:
        step.af_end()
    if st.vt_n:
        step.emit(st.book.resolve_alert("vt_run", ended_at=st.vt_last_t, message="VT run ended (end of recording)"))
        st.vt_n = 0
    end = st.last_t if st.last_t is not None else 0.0
    for kind in list(st.book.open):
        step.emit(st.book.resolve_alert(kind, ended_at=end, message="end of recording"))
    return st, step.out
