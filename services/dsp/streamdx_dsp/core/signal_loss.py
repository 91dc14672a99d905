"""Lost-signal detection: runs of identical raw ADC samples (flat line, lead off at the rail).

A real front end always shows some noise, so a run of identical raw samples lasting at
least ``LOST_RUN_S`` = 0.1 s means the signal is not there: a stuck or disconnected
amplifier (output 0), a lead off with the input pinned at the rail, or a saturation
episode holding the rail. It is the "flat run" of :mod:`streamdx_dsp.core.quality`
(same length), here reported as sample intervals rather than per beat. Clipping of
a QRS apex at the rail (a few samples, ~20 ms) is far shorter and is not lost signal.

Intervals are half-open ``[a, b)`` in absolute samples (the indices the stream's beats
use, ``EcgBeatV1.r_sample``). The detection is chunk-invariant: every closed interval
depends only on the samples, never on how they were cut into chunks. A run still open
at the end of a chunk that already lasts ``LOST_RUN_S`` is reported as ending at the
chunk end, then extended by the next chunks until a different sample closes it.

Streaming use::

    state = signal_loss_init(fs, start_sample=0)
    state, lost = signal_loss_process(state, adc_chunk)   # intervals overlapping the chunk
    samples = signal_loss_overlap(state, r_prev, r)        # lost samples in [r_prev, r)
    state = signal_loss_close(state, resume_at=new_start)  # a data gap: the run cannot span it

The state is a small dataclass (``signal_loss_to_dict`` / ``signal_loss_from_dict``
for a JSON checkpoint) keeping the current run and the closed intervals of roughly the
last ``KEEP_S`` = 60 s (at most ``KEEP_MAX`` = 64). Cost per chunk: one vectorised
comparison of neighbouring samples, O(n).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "KEEP_MAX",
    "KEEP_S",
    "LOST_RUN_S",
    "SignalLossState",
    "lost_runs",
    "merge_intervals",
    "signal_loss_close",
    "signal_loss_from_dict",
    "signal_loss_init",
    "signal_loss_intervals",
    "signal_loss_min_run",
    "signal_loss_overlap",
    "signal_loss_process",
    "signal_loss_to_dict",
]

#: Shortest run of identical raw samples that counts as lost signal (s).
LOST_RUN_S = 0.1
#: Closed intervals ending more than this long before the newest sample are forgotten (s).
KEEP_S = 60.0
#: Most closed intervals kept in the state.
KEEP_MAX = 64

Interval = tuple[int, int]


def signal_loss_min_run(fs: float) -> int:
    """Shortest lost run (samples) at ``fs`` Hz: ``max(3, round(LOST_RUN_S * fs))``."""
    return max(3, round(LOST_RUN_S * float(fs)))


@dataclass
class SignalLossState:
    """Streaming state of the lost-signal detector (all fields JSON-serialisable).

    Attributes
    ----------
    fs : float
        Sampling frequency (Hz).
    pos : int
        Absolute index of the next sample expected.
    run_start : int
        Absolute index where the current run of identical samples starts
        (-1: no current run, e.g. at the start or after a gap).
    run_value : int
        Raw ADC value of the current run.
    closed : list of (int, int)
        Closed lost intervals ``[a, b)`` (absolute samples), oldest first, those with
        ``b >= pos - KEEP_S * fs`` and at most ``KEEP_MAX`` of them.
    """

    fs: float
    pos: int
    run_start: int = -1
    run_value: int = 0
    closed: list[Interval] = field(default_factory=list)


def signal_loss_init(fs: float, start_sample: int = 0) -> SignalLossState:
    """State of a new stream whose first sample has absolute index ``start_sample``.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz), > 0.
    start_sample : int
        Absolute index of the first sample.
    """
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be > 0, got {fs!r}")
    return SignalLossState(fs=float(fs), pos=int(start_sample))


def _open(state: SignalLossState) -> Interval | None:
    """The current run as an interval ending at ``pos`` when it is already long enough."""
    if state.run_start >= 0 and state.pos - state.run_start >= signal_loss_min_run(state.fs):
        return (state.run_start, state.pos)
    return None


def _prune(state: SignalLossState) -> None:
    oldest = state.pos - round(KEEP_S * state.fs)
    if state.closed[0][1] < oldest or len(state.closed) > KEEP_MAX:
        kept = [iv for iv in state.closed if iv[1] >= oldest]
        state.closed = kept[-KEEP_MAX:]


def signal_loss_process(state: SignalLossState, adc: npt.ArrayLike) -> tuple[SignalLossState, list[Interval]]:
    """Feed the next raw samples of the stream.

    Parameters
    ----------
    state : SignalLossState
        Updated in place and returned.
    adc : array_like of int, shape (n,)
        Next raw ADC counts (before any gain/offset: identical counts = identical input).

    Returns
    -------
    state : SignalLossState
    lost : list of (int, int)
        Lost intervals ``[a, b)`` (absolute samples) overlapping this chunk
        ``[pos, pos + n)``, in time order: runs that closed inside it, then the run still
        open at its end if that already lasts ``LOST_RUN_S`` (reported with ``b`` = chunk end).
    """
    x = np.asarray(adc)
    if x.ndim != 1:
        raise ValueError("adc must be one-dimensional")
    if x.size and x.dtype.kind not in "iu":
        raise ValueError("adc must hold integer ADC counts")
    n = int(x.size)
    if n == 0:
        return state, []
    c0 = state.pos
    min_run = signal_loss_min_run(state.fs)
    # first sample of each run that starts inside the chunk (local index)
    starts = np.flatnonzero(x[1:] != x[:-1]) + 1
    lost: list[Interval] = []
    head_a = c0
    if state.run_start >= 0:
        if int(x[0]) == state.run_value:
            head_a = state.run_start  # the chunk continues the current run
        elif c0 - state.run_start >= min_run:
            state.closed.append((state.run_start, c0))  # it closed exactly at the chunk boundary
    if starts.size:
        head_b = c0 + int(starts[0])
        if head_b - head_a >= min_run:
            lost.append((head_a, head_b))
        if starts.size > 1:
            lengths = np.diff(starts)
            if int(lengths.max()) >= min_run:  # rare: a whole run inside the chunk
                for i in np.flatnonzero(lengths >= min_run).tolist():
                    lost.append((c0 + int(starts[i]), c0 + int(starts[i + 1])))
        state.closed.extend(lost)
        state.run_start = c0 + int(starts[-1])
    else:
        state.run_start = head_a
    state.run_value = int(x[-1])
    state.pos = c0 + n
    tail = _open(state)
    if tail is not None:
        lost.append(tail)
    if state.closed:
        _prune(state)
    return state, lost


def signal_loss_close(state: SignalLossState, resume_at: int | None = None) -> SignalLossState:
    """End the current run (a data gap or the end of the stream): it cannot span missing data.

    Parameters
    ----------
    state : SignalLossState
        Updated in place and returned.
    resume_at : int or None
        Absolute index of the next sample after the gap (``None``: the current position).
    """
    tail = _open(state)
    if tail is not None:
        state.closed.append(tail)
    state.run_start = -1
    state.run_value = 0
    if resume_at is not None:
        if resume_at < state.pos:
            raise ValueError("resume_at must not go back in time")
        state.pos = int(resume_at)
    if state.closed:
        _prune(state)
    return state


def signal_loss_intervals(state: SignalLossState) -> list[Interval]:
    """Every lost interval the state knows (closed ones, then the open run up to ``pos``)."""
    tail = _open(state)
    return [*state.closed, *([tail] if tail is not None else [])]


def signal_loss_overlap(state: SignalLossState, a: int, b: int) -> int:
    """Lost samples in ``[a, b)`` (absolute) among the intervals the state still knows.

    Intervals older than ``KEEP_S`` (or beyond the last ``KEEP_MAX``) are forgotten and
    not counted.
    """
    total = 0
    for lo, hi in signal_loss_intervals(state):
        total += max(0, min(b, hi) - max(a, lo))
    return total


def merge_intervals(intervals: list[Interval], max_count: int) -> list[Interval]:
    """At most ``max_count`` sorted intervals covering ``intervals`` (joined across the smallest gaps).

    Parameters
    ----------
    intervals : list of (int, int)
        Sorted, non-overlapping ``[a, b)``.
    max_count : int
        Largest number of intervals returned (>= 1).

    Returns
    -------
    list of (int, int)
        The same list when short enough, otherwise a superset cover: the
        ``len - max_count`` smallest gaps between neighbours are filled.
    """
    if max_count < 1:
        raise ValueError("max_count must be >= 1")
    if len(intervals) <= max_count:
        return list(intervals)
    arr = np.asarray(intervals, dtype=np.int64)
    gaps = arr[1:, 0] - arr[:-1, 1]
    fill = np.zeros(gaps.size, dtype=bool)
    fill[np.argsort(gaps, kind="stable")[: len(intervals) - max_count]] = True
    keep_start = np.concatenate(([True], ~fill))
    keep_end = np.concatenate((~fill, [True]))
    return [(int(a), int(b)) for a, b in zip(arr[keep_start, 0], arr[keep_end, 1], strict=True)]


def lost_runs(adc: npt.ArrayLike, fs: float, start_sample: int = 0) -> list[Interval]:
    """Lost intervals of a whole record at once (the reference of the streaming detector).

    Parameters
    ----------
    adc : array_like of int
        Raw ADC counts.
    fs : float
        Sampling frequency (Hz).
    start_sample : int
        Absolute index of ``adc[0]``.

    Returns
    -------
    list of (int, int)
        Runs of identical samples lasting at least ``LOST_RUN_S``, ``[a, b)``, in order
        (the last one ends at the end of the record if the record ends in it).
    """
    x = np.asarray(adc).astype(np.int64, copy=False)
    if x.size == 0:
        return []
    starts = np.concatenate(([0], np.flatnonzero(x[1:] != x[:-1]) + 1))
    ends = np.concatenate((starts[1:], [x.size]))
    long = ends - starts >= signal_loss_min_run(fs)
    return [(int(a) + start_sample, int(b) + start_sample) for a, b in zip(starts[long], ends[long], strict=True)]


def signal_loss_to_dict(state: SignalLossState) -> dict[str, Any]:
    """JSON-ready form of the state."""
    return {
        "fs": state.fs,
        "pos": state.pos,
        "run_start": state.run_start,
        "run_value": state.run_value,
        "closed": [[a, b] for a, b in state.closed],
    }


def signal_loss_from_dict(d: dict[str, Any]) -> SignalLossState:
    """Inverse of :func:`signal_loss_to_dict` (raises ``ValueError`` on a malformed dict)."""
    try:
        closed = [(int(a), int(b)) for a, b in d["closed"]]
        state = SignalLossState(
            fs=float(d["fs"]),
            pos=int(d["pos"]),
            run_start=int(d["run_start"]),
            run_value=int(d["run_value"]),
            closed=closed,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed signal-loss state: {exc}") from exc
    if not np.isfinite(state.fs) or state.fs <= 0 or any(not a < b for a, b in closed):
        raise ValueError("malformed signal-loss state")
    return state
