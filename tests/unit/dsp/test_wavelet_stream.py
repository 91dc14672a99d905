"""Bounded-delay wavelet denoiser: equal to its offline definition in any chunking, bounded lag;
beats leave a bounded number of samples after their R peak."""

from __future__ import annotations

import math

import numpy as np
import pywt
from dsp_synth import synth_ecg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from streamdx_dsp.core import (
    FIXED_POST_S,
    ecg_stream_init,
    ecg_stream_process,
    ecg_wavelet_denoise,
    ecg_wavelet_reference,
    ecg_wavelet_stream_v2,
    ecg_wavelet_stream_v2_init,
)
from streamdx_dsp.core._wavelet_kernels import _median_abs_near, hop_shrink, periodic_shrink
from streamdx_dsp.core.wavelet_denoise import dwt_filters
from streamdx_dsp.core.wavelet_stream import H2, L2, P2, R2, hop_matrices, wavelet_ring_pack, wavelet_ring_unpack
from streamdx_dsp.evaluation.latency import wavelet_lag_samples


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=n)) * 0.01 + np.sin(np.arange(n) / 20.0) + 0.05 * rng.normal(size=n)
    return x - x[0]


def test_window_shrinkage_matches_pywavelets() -> None:
    lo, hi = dwt_filters()
    w = np.random.default_rng(0).normal(size=48)
    cs = pywt.wavedec(w, "db4", mode="periodization", level=3)
    ref = pywt.waverec([cs[0]] + [np.sign(c) * np.maximum(np.abs(c) - 0.5, 0) for c in cs[1:]], "db4",
                       mode="periodization")  # fmt: skip
    got = w.copy()
    periodic_shrink(got, 48, lo, hi, 3, 0.5, np.empty(56), np.empty(56), np.empty(56))
    np.testing.assert_allclose(got, ref, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), lam=st.floats(0.0, 2.0), scale=st.floats(0.01, 100.0))
def test_hop_matrices_give_the_kept_part_of_the_whole_window_shrinkage(seed: int, lam: float, scale: float) -> None:
    """One hop by its matrices equals the kept samples of the mirrored window's 3-level shrinkage."""
    lo, hi = dwt_filters()
    core = np.random.default_rng(seed).normal(size=L2 + H2 + R2) * scale
    full = np.concatenate((core, core[::-1][:P2]))
    periodic_shrink(full, full.size, lo, hi, 3, lam, np.empty(40), np.empty(40), np.empty(40))
    hop_m, hop_s = hop_matrices()
    assert hop_m.shape == (H2 + hop_s.shape[0], L2 + H2 + R2) and hop_s.shape == (17, H2)
    out = np.empty(H2)
    hop_shrink(core, hop_m, hop_s, lam, out)
    np.testing.assert_allclose(out, full[L2 : L2 + H2], atol=1e-12 * scale)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=12), seed=st.integers(0, 5))
def test_stream_equals_its_offline_definition_in_any_chunking(cuts: list[int], seed: int) -> None:
    x = _signal(4000, seed)
    ref = ecg_wavelet_reference(x)
    state = ecg_wavelet_stream_v2_init()
    outs, raws = [], []
    pos = 0
    for c in [*cuts, x.size]:
        state, den, raw, ahead = ecg_wavelet_stream_v2(state, x[pos : pos + c])
        outs.append(den)
        raws.append(raw)
        pos += c
        if pos >= x.size:
            break
    y = np.concatenate(outs)
    assert y.size == ref.size and y.size % 8 == 0
    np.testing.assert_allclose(y, ref, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate(raws), x[: y.size])  # raw input aligned with the output
    assert ahead.size == 16


def test_denoiser_lag_is_bounded() -> None:
    lo, hi = wavelet_lag_samples()
    # levels 1-2 exact (24 samples), a 16-sample hop of cA2 windows + 4 samples of right context
    assert 24 <= lo <= hi <= 48


def test_denoiser_removes_high_frequency_noise_like_the_offline_dwt() -> None:
    fs = 360.0
    x, r = synth_ecg(fs, 20.0, hr_bpm=70, seed=4)
    x = x - x[0]
    noisy = x + 0.03 * np.random.default_rng(1).normal(size=x.size)
    y = ecg_wavelet_reference(noisy)
    n = y.size - y.size % 32
    offline = ecg_wavelet_denoise(noisy[:n])
    sos = signal.butter(4, 45.0, btype="high", fs=fs, output="sos")

    def hf(e: np.ndarray) -> float:
        return float(np.sqrt(np.mean(signal.sosfiltfilt(sos, e) ** 2)))

    noise_in = hf(noisy[:n] - x[:n])
    assert hf(y[:n] - x[:n]) < 0.5 * noise_in  # measured 0.43
    assert hf(y[:n] - x[:n]) < 1.25 * hf(offline - x[:n])  # measured 1.10
    peaks = r[(r > 50) & (r < n - 50)]
    assert np.all(np.abs(y[peaks] - x[peaks]) < 0.25 * np.abs(x[peaks]).max())


def test_beats_leave_a_bounded_number_of_samples_after_their_r_peak() -> None:
    """Fed sample by sample, a fixed-window beat leaves when the conditioned signal covers
    R + 0.56 s: its delay is at most the window, the denoiser's lag and one quality bin."""
    fs = 360.0
    x, _ = synth_ecg(fs, 30.0, hr_bpm=80, seed=2)
    state = ecg_stream_init(fs)
    _, lag_hi = wavelet_lag_samples()
    bound = math.ceil(FIXED_POST_S * fs) + 1 + lag_hi + 8
    delays = []
    for i in range(x.size):
        state, beats = ecg_stream_process(state, x[i : i + 1])
        delays += [state.n_in - b.r_sample for b in beats]
    assert len(delays) > 30
    assert max(delays) <= bound, (max(delays), bound)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=10), seed=st.integers(0, 5))
def test_ring_live_part_continues_the_stream_bit_identically(cuts: list[int], seed: int) -> None:
    """The serialised live part of the rings (state format 3) restores a denoiser that continues exactly."""
    x = _signal(5000, seed)

    def run(restore: bool) -> np.ndarray:
        state = ecg_wavelet_stream_v2_init()
        outs, pos = [], 0
        for c in [*cuts, x.size]:
            state, den, _, _ = ecg_wavelet_stream_v2(state, x[pos : pos + c])
            outs.append(den)
            pos += c
            if restore:
                state.ring = wavelet_ring_unpack(wavelet_ring_pack(state.ring, state.cnt), state.cnt.copy())
        return np.concatenate(outs)

    np.testing.assert_array_equal(run(restore=True), run(restore=False))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 200),
    guess=st.floats(0.0, 5.0),
    levels=st.integers(0, 12),
)
def test_median_with_a_guess_is_the_exact_median(seed: int, n: int, guess: float, levels: int) -> None:
    """Whatever the guess (close, far, none) and however many ties, the exact median of |x|."""
    rng = np.random.default_rng(seed)
    x = rng.laplace(size=n)
    if levels:  # quantised values: many ties
        x = np.round(x * levels) / levels
    got = _median_abs_near(x.copy(), guess, np.empty(n))
    assert got == np.median(np.abs(x))
