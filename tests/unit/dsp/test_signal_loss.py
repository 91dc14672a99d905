"""Lost-signal detection (runs of identical raw samples): tables, chunk invariance, state, horizon."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdx_devkit.sim import ecg_synthesize
from streamdx_dsp.core import (
    ecg_stream_flush,
    ecg_stream_horizon,
    ecg_stream_init,
    ecg_stream_process,
    lost_runs,
    merge_intervals,
    signal_loss_close,
    signal_loss_from_dict,
    signal_loss_init,
    signal_loss_overlap,
    signal_loss_process,
    signal_loss_to_dict,
)
from streamdx_dsp.core.rpeaks import SEARCHBACK_AGE_S
from streamdx_dsp.core.signal_loss import KEEP_MAX, signal_loss_intervals, signal_loss_min_run
from streamdx_dsp.evaluation.latency import wavelet_lag_samples


def stream(x: np.ndarray, fs: float, cuts: list[int]) -> tuple[list[tuple[int, int]], list[list[tuple[int, int]]]]:
    """Final intervals after closing, and what each chunk reported."""
    state = signal_loss_init(fs, start_sample=1000)
    reported = []
    prev = 0
    for c in [*cuts, x.size]:
        state, lost = signal_loss_process(state, x[prev:c])
        reported.append(lost)
        prev = c
    state = signal_loss_close(state)
    return state.closed, reported


def test_min_run_is_100_ms() -> None:
    assert signal_loss_min_run(250.0) == 25
    assert signal_loss_min_run(360.0) == 36
    assert signal_loss_min_run(1000.0) == 100
    assert signal_loss_min_run(125.0) == 12


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        ([1, 2] * 50, []),  # alternating: never identical
        ([5] * 24 + [6], []),  # 96 ms at 250 Hz: not lost
        ([5] * 25 + [6], [(0, 25)]),  # exactly 100 ms
        ([1, 2] + [0] * 30 + [3], [(2, 32)]),
        ([0] * 30 + [1] * 30, [(0, 30), (30, 60)]),  # a step between two flat levels: two intervals
        ([7] * 40, [(0, 40)]),  # open at the end of the record
    ],
)
def test_lost_runs_table(x: list[int], expected: list[tuple[int, int]]) -> None:
    assert lost_runs(np.array(x, np.int16), 250.0) == expected
    assert lost_runs(np.array(x, np.int16), 250.0, start_sample=7) == [(a + 7, b + 7) for a, b in expected]


def test_qrs_clipped_at_the_rail_for_20_ms_is_not_lost() -> None:
    fs = 250.0
    t = np.arange(int(10 * fs)) / fs
    x = 1.5 * np.exp(-0.5 * (((t + 0.4) % 0.8 - 0.4) / 0.02) ** 2) + 0.01 * np.random.default_rng(0).standard_normal(
        t.size
    )
    adc = np.clip(np.round(x * 200), -32768, 200).astype(np.int16)  # rail at 1 mV: the apex clips
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate(([-1], np.flatnonzero(adc == 200), [-1]))) != 1))
    assert (adc == 200).sum() > 50 and runs.size  # plateaus of ~20 ms exist
    assert lost_runs(adc, fs) == []


def test_open_run_is_reported_up_to_the_chunk_end_then_extended() -> None:
    fs = 250.0
    x = np.concatenate((np.arange(100) % 7, np.zeros(100, int), np.arange(50) % 5 + 1)).astype(np.int16)
    state = signal_loss_init(fs)
    state, lost = signal_loss_process(state, x[:110])  # 10 samples of the run: too short yet
    assert lost == []
    state, lost = signal_loss_process(state, x[110:150])  # 50 samples: open, ends at the chunk end
    assert lost == [(99, 150)] or lost == [(100, 150)]
    a = lost[0][0]
    state, lost = signal_loss_process(state, x[150:200])
    assert lost == [(a, 200)]
    state, lost = signal_loss_process(state, x[200:])  # closed exactly at the chunk boundary
    assert lost == []
    assert state.closed == [(a, 200)] == lost_runs(x, fs)


def test_gap_closes_the_run_and_keeps_history() -> None:
    fs = 250.0
    state = signal_loss_init(fs)
    state, _ = signal_loss_process(state, np.zeros(100, np.int16))
    state = signal_loss_close(state, resume_at=500)
    state, lost = signal_loss_process(state, np.zeros(10, np.int16))  # same value, but after missing data
    assert lost == [] and state.closed == [(0, 100)] and state.pos == 510
    assert signal_loss_overlap(state, 50, 450) == 50
    with pytest.raises(ValueError):
        signal_loss_close(state, resume_at=0)


def test_history_is_bounded() -> None:
    fs = 125.0
    block = np.concatenate((np.zeros(20, np.int16), np.arange(1, 6, dtype=np.int16)))
    state = signal_loss_init(fs)
    for _ in range(300):
        state, lost = signal_loss_process(state, block)
        assert len(lost) == 1
    assert len(state.closed) == KEEP_MAX
    state, _ = signal_loss_process(state, np.arange(round(61 * fs), dtype=np.int16) % 3)
    assert state.closed == []


def test_merge_intervals_fills_the_smallest_gaps() -> None:
    iv = [(0, 10), (12, 20), (50, 60), (61, 70), (100, 110)]
    assert merge_intervals(iv, 5) == iv
    assert merge_intervals(iv, 3) == [(0, 20), (50, 70), (100, 110)]
    assert merge_intervals(iv, 1) == [(0, 110)]
    with pytest.raises(ValueError):
        merge_intervals(iv, 0)


def test_state_round_trip_and_bad_dicts() -> None:
    state = signal_loss_init(360.0, 5)
    state, _ = signal_loss_process(state, np.r_[np.zeros(50), np.ones(3), np.full(40, 9)].astype(np.int16))
    back = signal_loss_from_dict(json.loads(json.dumps(signal_loss_to_dict(state))))
    assert back == state
    for bad in ({}, {**signal_loss_to_dict(state), "fs": -1}, {**signal_loss_to_dict(state), "closed": [[3, 3]]}):
        with pytest.raises(ValueError):
            signal_loss_from_dict(bad)
    with pytest.raises(ValueError):
        signal_loss_process(state, np.zeros(4))  # floats are not ADC counts
    with pytest.raises(ValueError):
        signal_loss_init(0.0)


def _flat_ish_signal() -> np.ndarray:
    ecg = ecg_synthesize(40.0, 250.0, seed=4, scenario="leadoff")
    x = ecg.to_adc()
    x[1000:1040] = 17  # 160 ms
    x[2000:2020] = 3  # 80 ms: too short
    x[3000:3025] = -4  # exactly 100 ms
    x[-30:] = 0  # open at the end
    return x


_X = _flat_ish_signal()
_REF = lost_runs(_X, 250.0, start_sample=1000)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=_X.size - 1), max_size=60, unique=True))
def test_chunking_does_not_change_the_intervals(cuts: list[int]) -> None:
    final, reported = stream(_X, 250.0, sorted(cuts))
    assert final == _REF
    # every reported interval is a prefix of a final one and overlaps its chunk
    starts = {a: b for a, b in _REF}
    bounds = [0, *sorted(cuts), _X.size]
    for (c0, c1), lost in zip(itertools.pairwise(bounds), reported, strict=True):
        for a, b in lost:
            assert a in starts and b <= starts[a] and b > c0 + 1000 and a < c1 + 1000
        # and every final interval overlapping the chunk is reported in it once it lasts 100 ms
        want = [(a, b) for a, b in _REF if b > c0 + 1000 and min(b, c1 + 1000) - a >= 25]
        assert [a for a, _ in lost] == [a for a, _ in want]


def test_reference_covers_the_simulated_leadoffs() -> None:
    fs = 250.0
    ecg = ecg_synthesize(40.0, fs, seed=4, scenario="leadoff")
    flat = [(r.start, r.end) for r in ecg.rhythms if r.label == "FLAT"]
    lost = lost_runs(ecg.to_adc(), fs)
    assert len(flat) == 2
    for s, e in flat:
        assert any(a <= s + 0.1 * fs and b >= e - 0.1 * fs for a, b in lost)


# ------------------------------------------------------------------ horizon of the R-peak decisions


@pytest.mark.parametrize(("fs", "scenario"), [(250.0, "ectopy"), (360.0, "asystole"), (250.0, "af"), (500.0, "noisy")])
def test_no_r_peak_is_accepted_before_the_horizon(fs: float, scenario: str) -> None:
    ecg = ecg_synthesize(90.0, fs, seed=2, scenario=scenario)
    x = ecg.signal_mv
    state = ecg_stream_init(fs, start_sample=77)
    accepted: set[int] = set()
    horizon = 77
    n = int(fs)
    delays = []
    for i in range(0, x.size, n):
        state, beats = ecg_stream_process(state, x[i : i + n])
        # R peaks the detector accepted so far: emitted, waiting for their window, or the last one
        det = state.detector
        now = {b.r_sample for b in beats} | {77 + int(r) for r in state.pending[: state.pending_n]}
        now |= {77 + det.last_r} if det.last_r >= 0 else set()
        assert all(r >= horizon for r in now - accepted)
        accepted |= now
        h = ecg_stream_horizon(state)
        assert horizon <= h <= 77 + state.n_in
        horizon = h
        delays.append(77 + state.n_in - h)
    # the delay is the wavelet stage's plus the detector's look-ahead and R search (250 ms);
    # rejected candidates that search-back could still take hold it back by at most 0.5 s more
    lag_lo, lag_hi = wavelet_lag_samples()
    w, rb = round(0.25 * fs), round(0.25 * fs)
    assert min(delays[10:]) >= lag_lo + w + rb
    assert max(delays[10:]) <= lag_hi + 8 + w + rb + round(SEARCHBACK_AGE_S * fs) + round(0.25 * fs)
    state, _ = ecg_stream_flush(state)
    assert ecg_stream_horizon(state) == 77 + state.n_in


def test_horizon_is_the_start_before_any_decision() -> None:
    state = ecg_stream_init(250.0, start_sample=500)
    assert ecg_stream_horizon(state) == 500
    state, _ = ecg_stream_process(state, np.zeros(100))
    assert ecg_stream_horizon(state) == 500
    assert signal_loss_intervals(signal_loss_init(250.0)) == []
