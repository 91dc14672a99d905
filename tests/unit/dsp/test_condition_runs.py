"""The compiled conditioning step against the plain definitions of what it computes.

Its one pass over the samples reproduces the band-pass (``scipy.signal.sosfilt``) and the
detector's features (:func:`~streamdx_dsp.core._kernels.qrs_features`: QRS filter,
derivative, moving-window integral), in any cut. It also counts, per quality bin, samples
in a run of identical input samples at least ``flat_min`` long, and samples in a run at
least ``clip_min`` long that sit at the extreme of the input around them (an amplifier
rail); its fast path skips chunks without a long enough run. Both paths are checked.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from streamdx_dsp.core._kernels import condition_stream, qrs_features
from streamdx_dsp.core.bandpass import ecg_bandpass_sos
from streamdx_dsp.core.quality import MIN_PTP_MV, QUALITY_BIN
from streamdx_dsp.core.rpeaks import ecg_rpeak_params, qrs_filter_ba

FS = 360.0
FLAT_MIN, CLIP_MIN = 36, 7
LOOK = 16
RAIL = 360
RUN_KINDS = ["flat", "top", "bottom"]


def _reference_counts(x: np.ndarray, n: int) -> np.ndarray:
    """Rows 4-5 of the quality bins of ``x[:n]`` by the definition (``x`` holds ``LOOK`` more samples).

    A sample's run length counts its run backwards from the stream start and at most
    ``LOOK`` samples forwards; the rail test looks at ``[j - RAIL, j + LOOK]`` (zeros
    before the stream).
    """
    ext = np.concatenate((np.zeros(RAIL), x))
    out = np.zeros((2, n // QUALITY_BIN))
    for j in range(n):
        back = 1
        while j - back >= 0 and x[j - back] == x[j]:
            back += 1
        fwd = 0
        while fwd < LOOK and j + fwd + 1 < x.size and x[j + fwd + 1] == x[j]:
            fwd += 1
        lc = back + fwd
        if lc >= FLAT_MIN:
            out[0, j // QUALITY_BIN] += 1
        if lc >= CLIP_MIN:
            win = ext[j : j + RAIL + LOOK + 1]
            hi, lo = win.max(), win.min()
            if hi - lo > MIN_PTP_MV and (x[j] >= hi or x[j] <= lo):
                out[1, j // QUALITY_BIN] += 1
    return out


def _run(x: np.ndarray, n: int, cuts: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Feed ``x[:n]`` (as denoised and raw input) in pieces ending at ``cuts``: the history
    (band-passed signal, quality bins) and the concatenated ``(mwi, |slope|)``."""
    sos = ecg_bandpass_sos(FS)
    qb, qa = qrs_filter_ba(FS)
    run = np.zeros(2)
    rail = np.zeros(RAIL, np.float32)
    bp_zi = np.zeros((sos.shape[0], 2))
    rp_zi = np.zeros(qa.size - 1)
    f_tail = np.zeros(4)
    sq_tail = np.zeros(ecg_rpeak_params(FS).mwi - 1)
    h_ecg = np.zeros(n, np.float32)
    h_bins = np.zeros((6, n // QUALITY_BIN), np.float32)
    start = 0
    mwis, advs = [], []
    for end in [*cuts, n]:
        if end <= start:
            continue
        piece = x[start:end]
        mwi, adv = condition_stream(
            piece, piece, x[end : end + LOOK], run, rail, sos, bp_zi, qb, qa, rp_zi, f_tail, sq_tail, FS,
            FLAT_MIN, CLIP_MIN, MIN_PTP_MV, QUALITY_BIN, h_ecg, h_bins,
        )  # fmt: skip
        mwis.append(mwi.copy())
        advs.append(adv.copy())
        start = end
    return h_ecg, h_bins, np.concatenate(mwis), np.concatenate(advs)


def _stream_counts(x: np.ndarray, n: int, cuts: list[int]) -> np.ndarray:
    return _run(x, n, cuts)[1][4:6].astype(np.float64)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    runs=st.lists(st.tuples(st.integers(0, 1200), st.integers(2, 60), st.sampled_from(RUN_KINDS)), max_size=6),
    cuts=st.lists(st.integers(1, 159), max_size=8),
)
def test_flat_and_clip_counts_follow_their_definition_in_any_cut(
    seed: int, runs: list[tuple[int, int, str]], cuts: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    n = 1280
    x = np.round(np.cumsum(rng.normal(size=n + LOOK)) * 4) / 200  # quantised: short runs of equal samples
    for at, length, kind in runs:  # long runs: flat lines, plateaus at the top or bottom rail
        level = {"flat": x[at], "top": x.max() + 0.5, "bottom": x.min() - 0.5}[kind]
        x[at : at + length] = level
    x = x.astype(np.float32).astype(np.float64)  # the stream's input is rounded to float32 (offset removal)
    ends = sorted({QUALITY_BIN * c for c in cuts})
    got = _stream_counts(x, n, ends)
    np.testing.assert_array_equal(got, _reference_counts(x, n))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 159), max_size=8))
def test_band_pass_and_detector_features_equal_their_definitions_in_any_cut(seed: int, cuts: list[int]) -> None:
    rng = np.random.default_rng(seed)
    n = 1280
    x = np.cumsum(rng.normal(size=n + LOOK)) * 0.02 + 0.3 * np.sin(np.arange(n + LOOK) / 9.0)
    h_ecg, _, mwi, adv = _run(x, n, sorted({QUALITY_BIN * c for c in cuts}))
    y = signal.sosfilt(ecg_bandpass_sos(FS), x[:n])
    np.testing.assert_allclose(h_ecg, y.astype(np.float32), rtol=1e-6, atol=1e-6)
    qb, qa = qrs_filter_ba(FS)
    want_mwi, want_adv = qrs_features(
        y, qb, qa, np.zeros(qa.size - 1), np.zeros(4), np.zeros(ecg_rpeak_params(FS).mwi - 1), FS
    )
    np.testing.assert_allclose(adv, want_adv, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(mwi, want_mwi, rtol=1e-9, atol=1e-9)
