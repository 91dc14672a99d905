"""Signal-status engine: ``ecg.status`` of one stream → lead-off, data-gap and asystole alarms.

Pure core (no I/O). The beats alone cannot tell "no beat for 4 s" while no beat arrives, nor
a lead-off from an asystole; the dsp's per-chunk status can (see
:class:`streamdx.schemas.EcgStatusV1`): how far its R-peak decisions are final
(``horizon_sample``), the last R it accepted, the intervals of lost signal (flat line or
lead off) and data gaps.

* **lead_off** (technical): lost signal lasting ``lead_off.min_s``, resolved after
  ``lead_off.resolve_s`` of signal;
* **data_gap** (technical, info): chunks missing for at least ``data_gap.min_s``, raised
  and resolved at once with the missing seconds;
* **asystole** (critical): no R peak for ``asystole.no_beat_s`` of *good* signal: the
  beat-less span holds at most ``asystole.max_lost_fraction`` lost signal, no lead-off is
  open, and the span does not reach back across a data gap. Raised live when the
  detector's horizon passes the limit, resolved by the next R peak. The horizon advances
  per processed block (seconds), so a pause shorter than a block can be stepped over: the
  R peaks each status lists then show the span, and the alarm is raised and resolved at
  once (``late=True``) — late, never missed.

Technical alarms suppress asystole; the rhythm engine never counts a span with lost signal
or a data gap as a pause, so a lead-off raises exactly one alarm: lead_off.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from streamdx_alerts.engine.lifecycle import AlertBook, AlertChange
from streamdx_alerts.rules import AlertRules

__all__ = ["LOST_KEEP_S", "StatusObs", "TechnicalState", "technical_step"]

#: Lost-signal history kept (s); longer than any beat-less span the rules look at.
LOST_KEEP_S = 60.0
_MAX_LOST = 64


@dataclass(frozen=True)
class StatusObs:
    """One ``ecg.status`` message as the engine sees it (fields as in ``EcgStatusV1``; ``t_end`` in s)."""

    seq: int
    fs: float
    t_end: float
    end_sample: int
    horizon_sample: int
    last_r_sample: int
    lost: tuple[tuple[int, int], ...] = ()
    gap_s: float = 0.0
    final: bool = False
    r_samples: tuple[int, ...] = ()


@dataclass
class TechnicalState:
    """Per-stream state (JSON-serialisable via :meth:`to_dict`)."""

    last_seq: int = -1
    fs: float = 0.0
    end_sample: int = 0
    t_end: float = 0.0
    ref_sample: int = 0
    last_r_sample: int = -1
    lost: list[list[int]] = field(default_factory=list)
    lead_off_from: int = -1
    finished: bool = False
    book: AlertBook = field(default_factory=AlertBook)

    def time_of(self, sample: float) -> float:
        """Signal time (s since the epoch) of an absolute sample index."""
        return self.t_end - (self.end_sample - sample) / self.fs

    def copy(self) -> TechnicalState:
        """An independent copy (cheaper than deepcopy)."""
        new = copy.copy(self)
        new.lost = [list(x) for x in self.lost]
        new.book = self.book.copy()
        return new

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "book"}
        d["book"] = self.book.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TechnicalState:
        d = dict(d)
        book = AlertBook.from_dict(d.pop("book"))
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"technical state: unknown fields {sorted(unknown)}")
        return cls(**d, book=book)


def _merge(lost: list[list[int]], new: Sequence[tuple[int, int]], keep_from: int) -> list[list[int]]:
    spans = sorted([*(list(x) for x in lost), *([a, b] for a, b in new)])
    out: list[list[int]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [x for x in out if x[1] > keep_from][-_MAX_LOST:]


def _lost_in(lost: Sequence[Sequence[int]], a: int, b: int) -> int:
    return sum(max(0, min(y, b) - max(x, a)) for x, y in lost)


def technical_step(
    state: TechnicalState | None, statuses: Sequence[StatusObs], rules: AlertRules, *, stream_id: str,
    profile: str = "default",
) -> tuple[TechnicalState, list[AlertChange]]:
    """Apply a stream's next status messages (``state`` is not mutated; repeated seqs are ignored).

    Returns
    -------
    state : TechnicalState
    changes : list of AlertChange
    """
    st = state.copy() if state is not None else TechnicalState()
    out: list[AlertChange] = []

    def emit(ch: AlertChange | None) -> None:
        if ch is not None:
            out.append(ch)

    for s in statuses:
        if s.seq <= st.last_seq and not st.finished:
            continue
        if st.finished or (st.fs and abs(s.fs - st.fs) > 1e-9):
            st = TechnicalState(book=st.book)  # the stream restarted
        prev_end = st.end_sample
        first = st.last_seq < 0
        st.last_seq, st.fs, st.end_sample, st.t_end = s.seq, s.fs, s.end_sample, s.t_end
        fs = s.fs
        st.lost = _merge(st.lost, s.lost, s.end_sample - round(LOST_KEEP_S * fs))
        gap = rules.data_gap
        if s.gap_s > 0 and not first:
            restart = prev_end + round(s.gap_s * fs)
            st.ref_sample = max(st.ref_sample, min(restart, s.end_sample))
            emit(st.book.resolve_alert("asystole", ended_at=st.time_of(prev_end),
                                       message="asystole: data gap, state unknown"))
            if gap.enabled and s.gap_s >= gap.min_s:
                t_gap = st.time_of(restart)
                ch = st.book.raise_alert(
                    stream_id, "data_gap", rule=f"{profile}/data_gap", severity=gap.severity,
                    started_at=t_gap - s.gap_s, criterion_at=t_gap, hint=restart,
                    message=f"no data from the device for {s.gap_s:.1f} s", details={"missing_s": round(s.gap_s, 3)},
                    suppress_s=gap.suppress_s,
                )
                if ch is not None:
                    out.append(ch)
                    emit(st.book.resolve_alert("data_gap", ended_at=t_gap, message="data resumed"))
        elif first:
            st.ref_sample = 0
        _lead_off(st, s, rules, stream_id, profile, emit)
        _asystole(st, s, rules, stream_id, profile, emit)
        if s.final:
            for kind in list(st.book.open):
                emit(st.book.resolve_alert(kind, ended_at=s.t_end, message="end of stream"))
            st.finished = True
    return st, out


def _lead_off(st: TechnicalState, s: StatusObs, rules: AlertRules, stream_id: str, profile: str,
              emit: Any) -> None:
    rule = rules.lead_off
    fs = st.fs
    if rule.enabled and not st.book.is_open("lead_off"):
        # the first lost interval of at least min_s not raised yet (an ongoing one is reported
        # again, growing, with each chunk: same start, raised once)
        for a, b in sorted(s.lost):
            if b - a >= rule.min_s * fs and a > st.lead_off_from:
                st.lead_off_from = a
                emit(st.book.raise_alert(
                    stream_id, "lead_off", rule=f"{profile}/lead_off", severity=rule.severity,
                    started_at=st.time_of(a), criterion_at=st.time_of(a + rule.min_s * fs), hint=a,
                    suppress_s=rule.suppress_s,
                    message="lead off or flat line: no ECG signal; rhythm alarms suppressed",
                ))
                break
    if st.book.is_open("lead_off") and not any(x[1] >= st.end_sample for x in st.lost):
        last_b = max((x[1] for x in st.lost), default=0)
        if st.end_sample - last_b >= rule.resolve_s * fs:
            emit(st.book.resolve_alert("lead_off", ended_at=st.time_of(last_b), message="ECG signal back"))


def _asystole(st: TechnicalState, s: StatusObs, rules: AlertRules, stream_id: str, profile: str,
              emit: Any) -> None:
    rule = rules.asystole
    fs = st.fs
    limit = rule.no_beat_s * fs

    def raise_at(ref: int, end: int, message: str, **details: float | int | str | bool) -> None:
        emit(st.book.raise_alert(
            stream_id, "asystole", rule=f"{profile}/asystole", severity=rule.severity, started_at=st.time_of(ref),
            criterion_at=st.time_of(ref + limit), hint=ref, suppress_s=rule.suppress_s, message=message,
            details={"no_beat_s": round((end - ref) / fs, 2), **details},
        ))

    # every R peak the dsp reported since the last status, in order: a beat-less span of good signal
    # longer than the limit that the horizon stepped over (it moves per input chunk, and search-back
    # can hold it back by up to 0.5 s) is raised and resolved at once (late, but never missed)
    for r in sorted({x for x in (*s.r_samples, s.last_r_sample) if x > st.last_r_sample}):
        prev = st.last_r_sample
        if st.book.is_open("asystole"):
            emit(st.book.resolve_alert("asystole", ended_at=st.time_of(r), message="beats resumed"))
        elif (rule.enabled and prev >= 0 and prev >= st.ref_sample and r - prev >= limit
              and _lost_in(st.lost, prev, r) <= rule.max_lost_fraction * (r - prev)):  # fmt: skip
            raise_at(prev, r, f"asystole: no beat for {(r - prev) / fs:.1f} s (found when beats resumed)",
                     late=True)
            emit(st.book.resolve_alert("asystole", ended_at=st.time_of(r), message="beats resumed"))
        st.last_r_sample = r
    if not rule.enabled or st.book.is_open("asystole") or st.book.is_open("lead_off") or st.last_r_sample < 0:
        return
    # live: no beat while the detector's decisions are final well past the limit
    ref = max(st.last_r_sample, st.ref_sample)
    span = s.horizon_sample - ref
    if span < limit or _lost_in(st.lost, ref, s.horizon_sample) > rule.max_lost_fraction * span:
        return
    raise_at(ref, s.horizon_sample, f"asystole: no beat for {span / fs:.1f} s")
