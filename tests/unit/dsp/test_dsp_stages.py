"""DSP stages: band-pass, wavelet shrinkage, RR features, quality, evaluation helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
from dsp_synth import synth_ecg
from scipy import signal

from streamdx_dsp.core import (
    ecg_bandpass,
    ecg_bandpass_init,
    ecg_bandpass_sos,
    ecg_quality_bins,
    ecg_quality_flags,
    ecg_quality_score,
    ecg_rr_features,
    ecg_wavelet_denoise,
    ecg_wavelet_stream,
    ecg_wavelet_stream_init,
)
from streamdx_dsp.evaluation.noise import nst_gain, nst_noise_rms, nst_signal_amplitude
from streamdx_dsp.evaluation.rpeaks import match_beats, score_counts


@pytest.mark.parametrize("fs", [125.0, 360.0, 1000.0])
def test_bandpass_is_chunk_invariant_and_matches_sosfilt(fs: float) -> None:
    sos = ecg_bandpass_sos(fs)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(int(10 * fs))
    state = ecg_bandpass_init(sos)
    parts = []
    for a, b in [(0, 17), (17, 1000), (1000, x.size)]:
        state, y = ecg_bandpass(state, x[a:b], sos)
        parts.append(y)
    np.testing.assert_allclose(np.concatenate(parts), signal.sosfilt(sos, x), atol=1e-9)


def test_bandpass_passband_and_stopband() -> None:
    fs = 360.0
    sos = ecg_bandpass_sos(fs)
    _, h = signal.sosfreqz(sos, worN=[0.05, 0.5, 10.0, 50.0, 120.0], fs=fs)
    g = np.abs(h)
    assert g[0] < 0.02  # baseline wander removed
    assert abs(g[1] - 1 / math.sqrt(2)) < 0.02 and abs(g[3] - 1 / math.sqrt(2)) < 0.02  # -3 dB edges
    assert g[2] > 0.99
    assert g[4] < 0.2


def test_wavelet_denoise_reduces_white_noise() -> None:
    fs = 360.0
    x, _ = synth_ecg(fs, 4096 / fs, noise_mv=0.0, wander_mv=0.0, seed=1)
    x = x[:4096]
    rng = np.random.default_rng(1)
    noisy = x + 0.1 * rng.standard_normal(x.size)
    y = ecg_wavelet_denoise(noisy)
    err_in = np.sqrt(np.mean((noisy - x) ** 2))
    err_out = np.sqrt(np.mean((y - x) ** 2))
    assert err_out < 0.8 * err_in
    # a clean, noise-free block is left almost unchanged
    assert np.max(np.abs(ecg_wavelet_denoise(x) - x)) < 0.05


def test_wavelet_stream_equals_blockwise_denoising_and_is_chunk_invariant() -> None:
    block, ov = 384, 256
    rng = np.random.default_rng(2)
    x = rng.standard_normal(5000).astype(np.float32)
    padded = np.concatenate((np.zeros(ov, np.float32), x)).astype(np.float64)

    def run(cuts: list[int]) -> tuple[list[int], np.ndarray]:
        st = ecg_wavelet_stream_init(ov)
        starts, outs, prev = [], [], 0
        for c in [*cuts, x.size]:
            st, blocks = ecg_wavelet_stream(st, x[prev:c], block, ov)
            prev = c
            for b in blocks:
                starts.append(b.start)
                outs.append(b.denoised_mv)
        return starts, np.concatenate(outs)

    s1, y1 = run([])
    s2, y2 = run([1, 2, 700, 701, 3333])
    assert s1 == s2 == list(range(0, len(s1) * block, block))
    np.testing.assert_array_equal(y1, y2)
    k = 3  # block k from first principles
    ref = ecg_wavelet_denoise(padded[k * block : k * block + block + 2 * ov])[ov:-ov]
    np.testing.assert_allclose(y1[k * block : (k + 1) * block], ref, atol=1e-12)


def test_rr_features() -> None:
    mean, irr = ecg_rr_features([360, 360, 360], 360.0)
    assert mean == pytest.approx(1.0) and irr == 0.0
    mean, irr = ecg_rr_features([300, 420, 300, 420], 360.0)
    assert mean == pytest.approx(1.0)
    assert irr == pytest.approx((120 / 360) / 1.0)
    assert ecg_rr_features([250], 250.0) == (1.0, 0.0)


def test_quality_score_rules() -> None:
    clean = ecg_quality_score([0.01, 10.0, -0.1, 0.2, 0.0, 300.0, 0.0])
    assert not clean.flat and not clean.saturated and clean.score > 0.9
    assert clean.baseline_excursion_mv == pytest.approx(0.3)
    sat = ecg_quality_score([0.01, 10.0, -0.1, 0.2, 0.0, 300.0, 5.0])
    assert sat.saturated and sat.score == 0.0
    flat = ecg_quality_score([0.0, 0.0, 0.0, 0.0, 200.0, 300.0, 0.0])
    assert flat.flat and flat.score == 0.0
    noisy = ecg_quality_score([10.0, 10.0, -0.1, 0.2, 0.0, 300.0, 0.0])
    assert noisy.hf_noise == pytest.approx(0.5) and noisy.score == 0.0
    wander = ecg_quality_score([0.0, 10.0, -1.0, 1.0, 0.0, 300.0, 0.0])
    assert wander.score == pytest.approx(0.5)


def test_match_beats_one_to_one() -> None:
    ref = np.array([100, 200, 300, 400])
    det = np.array([105, 110, 260, 395, 900])
    rm, dm, offs = match_beats(ref, det, 50)
    assert rm.tolist() == [True, False, True, True]
    assert dm.tolist() == [True, False, True, True, False]
    assert sorted(offs.tolist()) == [-40, -5, 5]
    s = score_counts(3, 1, 2)
    assert s["se"] == pytest.approx(75.0) and s["ppv"] == pytest.approx(60.0)
    assert s["f1"] == pytest.approx(100 * 6 / 9)


def test_nst_snr_definition() -> None:
    fs = 360.0
    x, r = synth_ecg(fs, 400.0, noise_mv=0.0, wander_mv=0.0, offset_mv=0.0, seed=3)
    a_s = nst_signal_amplitude(x, fs, r, ["N"] * r.size)
    assert a_s == pytest.approx(1.2 + 0.25, rel=0.05)  # R peak to S trough
    rng = np.random.default_rng(3)
    noise = 0.3 * rng.standard_normal(int(400 * fs))
    a_n = nst_noise_rms(noise, fs)
    assert a_n == pytest.approx(0.3, rel=0.02)
    for snr in (0.0, 6.0, 12.0):
        g = nst_gain(snr, a_s, a_n)
        s_power = a_s**2 / 8.0
        n_power = (g * a_n) ** 2
        assert 10 * math.log10(s_power / n_power) == pytest.approx(snr, abs=1e-9)


@pytest.mark.filterwarnings("ignore:Level value of 5 is too high")
@pytest.mark.parametrize("n", [32, 64, 1952, 4096])
def test_compiled_wavelet_shrinkage_matches_pywavelets(n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n)
    x[n // 3] += 8.0  # a spike: large coefficients survive the threshold
    w = pywt.Wavelet("db4")
    coeffs = pywt.wavedec(x, w, mode="periodization", level=5)
    lam = np.median(np.abs(coeffs[-1])) / 0.6745 * math.sqrt(2.0 * math.log(n))
    coeffs = [coeffs[0]] + [pywt.threshold(c, lam, mode="soft") for c in coeffs[1:]]
    ref = pywt.waverec(coeffs, w, mode="periodization")
    np.testing.assert_allclose(ecg_wavelet_denoise(x), ref, rtol=0, atol=1e-12)
    # other wavelets take the PyWavelets path
    y = ecg_wavelet_denoise(x, wavelet="db2")
    assert y.shape == x.shape and np.all(np.isfinite(y))


def test_compiled_quality_bins_match_numpy_definition() -> None:
    fs, ov, block = 360.0, 256, 1440
    rng = np.random.default_rng(5)
    ctx = rng.standard_normal(block + 2 * ov).round(2)
    ctx[400:460] = 1.25  # flat run (>= 100 ms)
    ctx[900:910] = ctx.max() + 1.0  # clipping plateau at the rail (>= 20 ms)
    den = 0.9 * ctx[ov:-ov] + 0.01 * rng.standard_normal(block)
    ecg = den - den.mean()
    hp = den - 0.1
    got = ecg_quality_bins(ctx, den, ecg, hp, ov, fs)
    flags = ecg_quality_flags(ctx, ov, fs)
    starts = np.arange(0, block, 8)
    raw = ctx[ov:-ov]
    ref = np.empty((6, starts.size), dtype=np.float32)
    ref[0] = np.add.reduceat((raw - den) ** 2, starts)
    ref[1] = np.add.reduceat(ecg**2, starts)
    ref[2] = np.minimum.reduceat(den - hp, starts)
    ref[3] = np.maximum.reduceat(den - hp, starts)
    ref[4] = np.add.reduceat((flags & 2) != 0, starts, dtype=np.float64)
    ref[5] = np.add.reduceat((flags & 1) != 0, starts, dtype=np.float64)
    assert ref[4].sum() > 0 and ref[5].sum() > 0
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
