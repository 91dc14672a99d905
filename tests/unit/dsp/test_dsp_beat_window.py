"""Beat windows: the RR-based window (seed 003) and the causal fixed span (0.28 s / 0.56 s)."""

from __future__ import annotations

import numpy as np
import pytest
from dsp_synth import synth_ecg

from streamdx_dsp.core import (
    FIXED_POST_S,
    FIXED_PRE_S,
    Beat,
    beat_window_span,
    ecg_state_dumps,
    ecg_state_loads,
    ecg_stream_flush,
    ecg_stream_init,
    ecg_stream_process,
)


def _run(x: np.ndarray, fs: float, window: str, chunk: int, roundtrip: bool = False) -> list[Beat]:
    state = ecg_stream_init(fs, window=window)  # type: ignore[arg-type]
    beats: list[Beat] = []
    for i in range(0, x.size, chunk):
        state, b = ecg_stream_process(state, x[i : i + chunk])
        beats += b
        if roundtrip:
            state = ecg_state_loads(ecg_state_dumps(state))
    state, b = ecg_stream_flush(state)
    return beats + b


@pytest.mark.parametrize("fs", [125.0, 360.0, 1000.0])
def test_fixed_window_spans_fixed_seconds_whatever_the_rate(fs: float) -> None:
    x, _ = synth_ecg(fs, 30.0, hr_bpm=50, seed=1)
    fixed = _run(x, fs, "fixed", int(fs))
    rr = _run(x, fs, "rr", int(fs))
    # the same R peaks; the fixed window also emits the last one (it needs no next R)
    assert [b.r_sample for b in fixed][: len(rr)] == [b.r_sample for b in rr]
    assert len(fixed) - len(rr) in (0, 1)
    assert all(b.rr_next_s is None for b in fixed) and all(b.rr_next_s is not None for b in rr)
    for b in fixed:
        assert abs(int(np.argmax(b.waveform)) - 100) <= 10
    # at 50 bpm the RR window covers 0.4 s before R, the fixed one 0.28 s: the P wave (-0.20 s)
    # sits at index 100 - 0.20/0.28*100 ≈ 29 in the fixed window and ≈ 50 in the RR window
    p_fixed = np.mean([np.argmax(b.waveform[10:80]) + 10 for b in fixed])
    p_rr = np.mean([np.argmax(b.waveform[10:90]) + 10 for b in rr])
    assert abs(p_fixed - (100 - 0.20 / FIXED_PRE_S * 100)) < 5, p_fixed
    assert p_rr > p_fixed + 10
    # the T wave (+0.28 s) at 100 + 0.28/0.56*200 = 200 in the fixed window
    t_fixed = np.mean([np.argmax(b.waveform[150:280]) + 150 for b in fixed])
    assert abs(t_fixed - (100 + 0.28 / FIXED_POST_S * 200)) < 6, t_fixed


def test_fixed_window_is_chunk_invariant_and_survives_checkpoints() -> None:
    fs = 360.0
    x, _ = synth_ecg(fs, 40.0, hr_bpm=35, seed=2)  # RR > 1.7 s: long pauses too
    a = _run(x, fs, "fixed", 360)
    b = _run(x, fs, "fixed", 97, roundtrip=True)
    assert [v.r_sample for v in a] == [v.r_sample for v in b]
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u.waveform, v.waveform, atol=1e-6, rtol=0)
    assert ecg_state_loads(ecg_state_dumps(ecg_stream_init(fs, window="fixed"))).window == "fixed"


def test_window_span_arguments() -> None:
    assert beat_window_span("rr", 360.0) == (0.0, 0.0)
    pre, post = beat_window_span("fixed", 250.0)
    assert pre / 3 == pytest.approx(FIXED_PRE_S * 250) and 2 * post / 3 == pytest.approx(FIXED_POST_S * 250)
    with pytest.raises(ValueError, match="beat window"):
        beat_window_span("wide", 250.0)
