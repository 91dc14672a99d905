"""EC57 episode-by-episode comparison of AF episodes (the rules of WFDB ``epicmp``), pure.

``epicmp`` (G. Moody, the reference implementation cited by ANSI/AAMI EC38 and EC57) compares a
reference and a test set of episodes of one record in two passes:

- **sensitivity pass**: every reference episode inside the test period is counted once: a true
  positive (``tp_se``) when at least one test episode overlaps it by a positive time, else a
  false negative (``fn``); its duration adds to ``ref_s`` and the summed overlap of the test
  episodes with it to ``ref_overlap_s``;
- **positive-predictivity pass**: the same with the roles swapped (``tp_ppv``, ``fp``,
  ``test_s``, ``test_overlap_s``).

Episode Se = tp_se / (tp_se + fn), episode +P = tp_ppv / (tp_ppv + fp); duration Se =
ref_overlap_s / ref_s, duration +P = test_overlap_s / test_s (both overlaps are the same time
when neither side's episodes are dropped). Mirrored details of ``epicmp``:

- **test period**: from ``start_s`` (default 300 s: epicmp's 5-minute learning period, its
  ``-f`` default) to the end of the record; an episode ending before the start is ignored, one
  beginning before it is clipped to it, and one running past the end is clipped to the end;
  the episodes of the other side are not clipped (only their overlap with the clipped
  episode counts). Episodes that clip to zero length are dropped (epicmp would count an
  episode ending exactly at 5:00 as a zero-length miss);
- **minimum length** ``min_s`` (``-i``): an episode (after clipping) shorter than this is left
  out of its own pass (both the episode count and the duration totals), but still counts as
  overlap in the other pass; with ``min_s_overlap=True`` (``-I``) short episodes are also
  ignored as overlap;
- **reference episodes**: from a rhythm annotation whose note starts with ``(AFIB`` to the
  next rhythm annotation that does not (:func:`rhythm_episodes`); an episode still open at
  the last annotation ends at the end of the record;
- **atrial flutter**: by default (EC57, EC38:2007) nothing is excluded: ``(AFL`` is non-AF
  reference rhythm, so a test episode in flutter is a false positive. ``exclude`` (epicmp
  ``-x``, EC38:1998) removes reference flutter from the +P pass: test episodes are trimmed at
  the ends by it and lose the excluded time from their duration (epicmp's own code adds
  rather than subtracts the time when an episode *starts* inside an exclusion; the intended
  rule is implemented here).

Gross statistics pool the counts and durations of all records; average statistics are the
mean of the per-record values over the records where each is defined.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "EpisodeCounts",
    "average_scores",
    "compare_episodes",
    "covered_s",
    "gross_scores",
    "rhythm_episodes",
    "scores",
]

Interval = tuple[float, float]


@dataclass(frozen=True)
class EpisodeCounts:
    """Tallies of one comparison (or the sum of several)."""

    tp_se: int = 0
    fn: int = 0
    tp_ppv: int = 0
    fp: int = 0
    ref_s: float = 0.0
    ref_overlap_s: float = 0.0
    test_s: float = 0.0
    test_overlap_s: float = 0.0

    def __add__(self, o: EpisodeCounts) -> EpisodeCounts:
        return EpisodeCounts(*(a + b for a, b in zip(asdict(self).values(), asdict(o).values(), strict=True)))

    @property
    def episode_se(self) -> float:
        return _pct(self.tp_se, self.tp_se + self.fn)

    @property
    def episode_ppv(self) -> float:
        return _pct(self.tp_ppv, self.tp_ppv + self.fp)

    @property
    def duration_se(self) -> float:
        return _pct(self.ref_overlap_s, self.ref_s)

    @property
    def duration_ppv(self) -> float:
        return _pct(self.test_overlap_s, self.test_s)


def _pct(a: float, b: float) -> float:
    return 100.0 * a / b if b > 0 else math.nan


def rhythm_episodes(annotations: Iterable[tuple[float, str]], end_s: float, prefix: str = "(AFIB") -> list[Interval]:
    """Episodes of one rhythm from rhythm annotations ``(time_s, note)`` in time order.

    An episode starts at a note beginning with ``prefix`` and ends at the next rhythm note that
    does not (epicmp's ``find_episode``: repeated ``(AFIB`` notes continue the episode); one
    still open after the last note ends at ``max(end_s, last note time)``.
    """
    out: list[Interval] = []
    start: float | None = None
    last = -math.inf
    for t, note in annotations:
        last = t
        inside = note.startswith(prefix)
        if inside and start is None:
            start = t
        elif not inside and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, max(end_s, last)))
    return out


def _overlap(s: float, e: float, others: Sequence[Interval], min_s: float) -> float:
    total = 0.0
    for a, b in others:
        if b - a < min_s:
            continue
        total += max(0.0, min(e, b) - max(s, a))
    return total


def _trim(s: float, e: float, exclude: Sequence[Interval]) -> tuple[float, float, float]:
    """``(start, end, duration)`` of ``[s, e]`` without the excluded intervals (ends trimmed)."""
    dur = e - s
    for xs, xe in sorted(exclude):
        if xe <= s or xs >= e:
            continue
        if xs <= s:
            if e <= xe:
                return s, e, 0.0  # wholly excluded
            dur -= xe - s
            s = xe
        elif e <= xe:
            dur -= e - xs
            e = xs
        else:
            dur -= xe - xs  # an exclusion inside the episode: duration only
    return s, e, dur


def _one_pass(
    a_eps: Sequence[Interval], b_eps: Sequence[Interval], start: float, end: float | None, min_s: float,
    min_s_overlap: bool, exclude: Sequence[Interval],
) -> tuple[int, int, float, float]:  # fmt: skip
    match = mismatch = 0
    total = total_overlap = 0.0
    for s, e in sorted(a_eps):
        if e <= start:
            continue
        if end is not None and s >= end:
            break
        s = max(s, start)
        if end is not None:
            e = min(e, end)
        s, e, dur = _trim(s, e, exclude)
        if dur <= 0.0 or dur < min_s:
            continue
        total += dur
        ov = _overlap(s, e, b_eps, min_s if min_s_overlap else 0.0)
        if ov > 0.0:
            match += 1
            total_overlap += ov
        else:
            mismatch += 1
    return match, mismatch, total, total_overlap


def compare_episodes(
    reference: Sequence[Interval], test: Sequence[Interval], *, start_s: float = 300.0, end_s: float | None = None,
    min_s: float = 0.0, min_s_overlap: bool = False, exclude: Sequence[Interval] = (),
) -> EpisodeCounts:  # fmt: skip
    """Episode-by-episode comparison of one record (see the module docstring).

    Parameters
    ----------
    reference, test : sequence of (start_s, end_s)
        Non-overlapping episodes of each side.
    start_s, end_s : float
        Test period (``end_s=None``: to the end of the episodes).
    min_s : float
        Shortest episode counted (epicmp ``-i``); ``min_s_overlap`` also ignores shorter
        episodes as overlap (``-I``).
    exclude : sequence of (start_s, end_s)
        Reference intervals removed from the +P pass (epicmp ``-x``: reference ``(AFL``).
    """
    tp_se, fn, ref_s, ref_ov = _one_pass(reference, test, start_s, end_s, min_s, min_s_overlap, ())
    tp_p, fp, test_s, test_ov = _one_pass(test, reference, start_s, end_s, min_s, min_s_overlap, exclude)
    return EpisodeCounts(tp_se, fn, tp_p, fp, ref_s, ref_ov, test_s, test_ov)


def covered_s(intervals: Sequence[Interval], start_s: float, end_s: float) -> float:
    """Time covered by (non-overlapping) ``intervals`` inside ``[start_s, end_s]``."""
    return sum(max(0.0, min(e, end_s) - max(s, start_s)) for s, e in intervals)


def scores(c: EpisodeCounts) -> dict[str, Any]:
    """``{"episode": {se, ppv, tp_se, fn, tp_ppv, fp}, "duration": {se, ppv, ...}}`` (percent; NaN undefined)."""
    return {
        "episode": {"se": c.episode_se, "ppv": c.episode_ppv, "tp_se": c.tp_se, "fn": c.fn, "tp_ppv": c.tp_ppv,
                    "fp": c.fp},
        "duration": {"se": c.duration_se, "ppv": c.duration_ppv, "ref_s": c.ref_s, "ref_overlap_s": c.ref_overlap_s,
                     "test_s": c.test_s, "test_overlap_s": c.test_overlap_s},
    }  # fmt: skip


def gross_scores(counts: Iterable[EpisodeCounts]) -> dict[str, Any]:
    """Scores of the pooled counts and durations of all records."""
    total = EpisodeCounts()
    for c in counts:
        total = total + c
    return scores(total)


def average_scores(counts: Iterable[EpisodeCounts]) -> dict[str, Any]:
    """Mean of the per-record Se/+P over the records where each is defined (``n`` records each)."""
    cs = list(counts)
    out: dict[str, Any] = {"episode": {}, "duration": {}}
    for group, key, attr in (("episode", "se", "episode_se"), ("episode", "ppv", "episode_ppv"),
                             ("duration", "se", "duration_se"), ("duration", "ppv", "duration_ppv")):  # fmt: skip
        vals = [v for v in (getattr(c, attr) for c in cs) if not math.isnan(v)]
        out[group][key] = sum(vals) / len(vals) if vals else math.nan
        out[group][f"n_{key}"] = len(vals)
    return out
