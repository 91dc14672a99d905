"""Beat latency of the streaming core and agreement of its denoiser with the offline DWT.

Used by ``streamdx bench dsp``:

- :func:`beat_delays` replays signals in small chunks and measures, for every beat,
  ``(samples the core had received when it emitted the beat - the beat's R sample) / fs``;
- :func:`stage_delays` lists the fixed delay of each stage at a sampling frequency;
- :func:`denoise_agreement` compares the bounded-delay denoiser with the whole-record DWT
  shrinkage it replaces (and with the former 4-s block version), after the same
  0.5-50 Hz band-pass, as a normalised RMS difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import signal

from streamdx_dsp.core import (
    ecg_bandpass_sos,
    ecg_rpeak_params,
    ecg_stream_init,
    ecg_stream_process,
    ecg_wavelet_denoise,
    ecg_wavelet_stream,
    ecg_wavelet_stream_init,
    ecg_wavelet_stream_v2,
    ecg_wavelet_stream_v2_init,
)
from streamdx_dsp.core.segmentation import FIXED_POST_S
from streamdx_dsp.core.wavelet_stream import H2, PAD, R2

__all__ = ["beat_delays", "delay_summary", "denoise_agreement", "resample_to", "stage_delays", "wavelet_lag_samples"]


def resample_to(x_mv: npt.NDArray[np.float64], fs_in: float, fs_out: float) -> npt.NDArray[np.float64]:
    """Polyphase resampling of a record to another sampling frequency (identity when equal)."""
    if abs(fs_in - fs_out) < 1e-9:
        return x_mv
    frac = Fraction(fs_out / fs_in).limit_denominator(1000)
    out: npt.NDArray[np.float64] = signal.resample_poly(x_mv, frac.numerator, frac.denominator)
    return out


def beat_delays(x_mv: npt.NDArray[np.float64], fs: float, chunk_s: float = 0.1) -> npt.NDArray[np.float64]:
    """Delay (s) of every beat of one stream replayed in ``chunk_s`` chunks, default beat window."""
    state = ecg_stream_init(fs)
    c = max(1, round(chunk_s * fs))
    out: list[float] = []
    for a in range(0, x_mv.size, c):
        state, beats = ecg_stream_process(state, x_mv[a : a + c])
        n = state.n_in
        out.extend((n - b.r_sample) / fs for b in beats)
    return np.asarray(out)


def delay_summary(d: npt.NDArray[np.float64]) -> dict[str, float]:
    """p50, p99 and max of beat delays (s); NaN when there is none."""
    if not d.size:
        return {"p50": math.nan, "p99": math.nan, "max": math.nan, "beats": 0}
    return {
        "p50": float(np.percentile(d, 50)),
        "p99": float(np.percentile(d, 99)),
        "max": float(d.max()),
        "beats": int(d.size),
    }


def wavelet_lag_samples() -> tuple[int, int]:
    """Smallest and largest lag (samples) of the denoiser's output behind its input, fed sample by sample."""
    st = ecg_wavelet_stream_v2_init()
    x = np.sin(np.arange(2048) / 9.0)
    lags = []
    for i in range(x.size):
        st, _, _, _ = ecg_wavelet_stream_v2(st, x[i : i + 1])
        if i > 512:
            lags.append(int(st.cnt[0] - st.cnt[5]))
    return min(lags), max(lags)


def stage_delays(fs: float) -> dict[str, Any]:
    """Fixed delays of the stages at ``fs`` (s), from the stages' parameters and a measured denoiser lag."""
    lo, hi = wavelet_lag_samples()
    p = ecg_rpeak_params(fs)
    post = math.ceil(2.0 * (1.5 * FIXED_POST_S * fs) / 3.0) + 1
    return {
        "fs": fs,
        "wavelet_lag_s": [lo / fs, hi / fs],
        "wavelet_lag_samples": [lo, hi],
        "wavelet_hop_samples": 4 * H2,
        "wavelet_right_context_samples": 4 * R2,
        "detector_lookahead_s": p.half_window / fs,
        "detector_r_search_s": p.r_back / fs,
        "searchback_max_age_s": p.sb_age / fs,
        "beat_window_after_r_s": post / fs,
        "note": "a beat leaves when the conditioned signal reaches R + window (wavelet lag + window after R) and "
        "its detection is final (R search + look-ahead, or search-back at most searchback_max_age_s after R), "
        "plus up to one input chunk",
    }


def _nrmse(y: npt.NDArray[np.float64], ref: npt.NDArray[np.float64]) -> float:
    d = y - ref
    s = float(np.std(ref))
    return float(np.sqrt(np.mean(d * d)) / s) if s > 0 else math.nan


def denoise_agreement(records: Sequence[tuple[str, npt.NDArray[np.float64], float]]) -> dict[str, Any]:
    """Normalised RMS difference of the streaming denoisers against the whole-record DWT shrinkage.

    Each record (offset removed) is denoised by (a) the bounded-delay streaming denoiser,
    (b) the former 4-s block version (``ecg_wavelet_stream``) and (c) nothing; each result
    and the offline reference (``ecg_wavelet_denoise`` over the whole record) go through
    the same causal 0.5-50 Hz band-pass, and ``rms(y - ref) / std(ref)`` is taken after the
    first 2 s. Returns the per-record values and their median / max.
    """
    per: dict[str, dict[str, float]] = {}
    for name, x_mv, fs in records:
        x = np.asarray(x_mv, dtype=np.float64) - float(x_mv[0])
        n = x.size - x.size % 32
        x = x[:n]
        sos = ecg_bandpass_sos(fs)
        ref = signal.sosfilt(sos, ecg_wavelet_denoise(x))
        st = ecg_wavelet_stream_v2_init()
        st, y2, _, _ = ecg_wavelet_stream_v2(st, np.concatenate((x, np.zeros(256))))
        y2 = y2[:n]
        v1_state = ecg_wavelet_stream_init()
        _, blocks = ecg_wavelet_stream(
            v1_state, np.concatenate((x, np.zeros(4096))).astype(np.float32), block=1440 if fs < 400 else 2048
        )
        y1 = np.concatenate([b.denoised_mv for b in blocks])[:n]
        k = round(2 * fs)
        per[name] = {
            "stream_v2": _nrmse(signal.sosfilt(sos, y2)[k:], ref[k:]),
            "block_v1": _nrmse(signal.sosfilt(sos, y1)[k:], ref[k:]),
            "no_denoising": _nrmse(signal.sosfilt(sos, x)[k:], ref[k:]),
        }
    keys = ("stream_v2", "block_v1", "no_denoising")
    summary = {
        key: {
            "median": float(np.median([v[key] for v in per.values()])),
            "max": float(np.max([v[key] for v in per.values()])),
        }
        for key in keys
    }
    return {
        "metric": "rms(y - offline) / std(offline) after the 0.5-50 Hz band-pass, from 2 s; offline = db4 level-5 "
        "soft universal-threshold shrinkage of the whole record",
        "pad_samples": PAD,
        "summary": summary,
        "records": per,
    }
