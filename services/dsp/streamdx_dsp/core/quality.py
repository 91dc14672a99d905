"""Per-beat ECG signal-quality index (SQI).

Four measurements over the beat window ``[R - RR_prev/3, R + 2 RR_next/3)``:

- **flat**: at least half of the window lies in runs of identical raw samples lasting
  >= 100 ms (a disconnected lead or a railed amplifier).
- **saturated**: the window contains a run of identical raw samples lasting >= 20 ms
  (at least 3 samples) sitting at the maximum or minimum of the surrounding
  ``block + 2 * overlap`` samples, while that stretch is not flat (peak-to-peak
  > 0.05 mV): clipping of the QRS at the ADC or amplifier rail.
- **hf_noise**: share of the window energy removed by the wavelet denoiser,
  ``E_hf / (E_hf + E_ecg)`` with ``E_hf = sum (raw - denoised)^2`` and
  ``E_ecg = sum filtered^2`` (0 = clean, -> 1 = dominated by broadband noise).
- **baseline_excursion_mv**: peak-to-peak (mV) of the baseline wander
  ``denoised - highpassed`` (the content removed by the 0.5 Hz high-pass) over the window.

``score`` in [0, 1] is 0 for a flat or saturated window, otherwise
``clip(1 - hf_noise / 0.5, 0, 1) * clip(1 - max(excursion - 1 mV, 0) / 2 mV, 0, 1)``.
The thresholds are engineering choices in the spirit of Clifford et al. 2012
(Physiol Meas 33(9):1419-1433, "Signal quality indices and data fusion for
determining clinical acceptability of electrocardiograms"); they are not fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamdx_dsp.core._kernels import quality_bins, quality_score

__all__ = [
    "FLAG_CLIPPED",
    "FLAG_FLATRUN",
    "MIN_PTP_MV",
    "QUALITY_BIN",
    "BeatQuality",
    "ecg_quality_bins",
    "ecg_quality_flags",
    "ecg_quality_score",
    "ecg_quality_windows",
    "quality_run_lengths",
]

FLAG_CLIPPED = np.uint8(1)
FLAG_FLATRUN = np.uint8(2)
_FLAT_RUN_S = 0.100
_CLIP_RUN_S = 0.020
_MIN_PTP_MV = 0.05
#: Smallest peak-to-peak (mV) of a context block for clipping to be considered.
MIN_PTP_MV = _MIN_PTP_MV
#: Samples per statistics bin (windows are resolved to whole bins).
QUALITY_BIN = 8
_PAD_COLUMN = np.array([[0.0], [0.0], [np.inf], [-np.inf], [0.0], [0.0]], dtype=np.float32)


class BeatQuality(NamedTuple):
    """Signal quality of one beat window (an immutable named tuple, compared by value).

    Attributes
    ----------
    flat : bool
        Flat-line (identical samples for >= 100 ms over at least half the window).
    saturated : bool
        Clipping at a rail detected in the window.
    hf_noise : float
        High-frequency noise ratio in [0, 1] (energy share removed by the denoiser).
    baseline_excursion_mv : float
        Peak-to-peak baseline wander over the window (mV).
    score : float
        Overall quality in [0, 1] (1 = clean).
    """

    flat: bool
    saturated: bool
    hf_noise: float
    baseline_excursion_mv: float
    score: float


def _run_lengths(x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp]]:
    """Length of the run of identical values each sample belongs to, and run ids."""
    change = np.empty(x.size, dtype=bool)
    change[0] = True
    np.not_equal(x[1:], x[:-1], out=change[1:])
    run_id = np.cumsum(change) - 1
    lengths = np.bincount(run_id)
    return lengths[run_id], run_id


def quality_run_lengths(fs: float) -> tuple[int, int]:
    """Minimal run lengths (samples) of a flat run (100 ms) and of a clipping plateau (20 ms)."""
    return max(3, round(_FLAT_RUN_S * fs)), max(3, round(_CLIP_RUN_S * fs))


def ecg_quality_flags(context_mv: npt.NDArray[np.float64], overlap: int, fs: float) -> npt.NDArray[np.uint8]:
    """Per-sample flat/clipping flags for the centre of a context block.

    Parameters
    ----------
    context_mv : ndarray of float64, shape (block + 2 * overlap,)
        Offset-removed raw signal (mV) with ``overlap`` samples of context each side.
    overlap : int
        Context length (samples).
    fs : float
        Sampling frequency (Hz).

    Returns
    -------
    flags : ndarray of uint8, shape (block,)
        Bit ``FLAG_CLIPPED`` (clipping plateau) and bit ``FLAG_FLATRUN`` (long run of
        identical samples) per centre sample.
    """
    n = context_mv.size
    flags = np.zeros(n - 2 * overlap, dtype=np.uint8)
    flat_min, clip_min = quality_run_lengths(fs)
    # fast path: boundaries of runs of identical samples; nothing to flag without a long run
    change = np.flatnonzero(context_mv[1:] != context_mv[:-1])
    if (
        change.size
        and change[0] + 1 < clip_min
        and n - 1 - change[-1] < clip_min
        and (change.size < 2 or int(np.diff(change).max()) < clip_min)
    ):
        return flags
    lengths, _ = _run_lengths(context_mv)
    centre = slice(overlap, n - overlap)
    lc = lengths[centre]
    flags[lc >= flat_min] |= FLAG_FLATRUN
    hi = float(context_mv.max())
    lo = float(context_mv.min())
    if hi - lo > _MIN_PTP_MV:
        xc = context_mv[centre]
        at_rail = (xc >= hi) | (xc <= lo)
        flags[(lc >= clip_min) & at_rail] |= FLAG_CLIPPED
    return flags


def ecg_quality_bins(
    context_mv: npt.NDArray[np.float64],
    denoised_mv: npt.NDArray[np.float64],
    ecg_mv: npt.NDArray[np.float64],
    highpassed_mv: npt.NDArray[np.float64],
    overlap: int,
    fs: float,
) -> npt.NDArray[np.float32]:
    """Per-bin sufficient statistics of one processed block.

    Parameters
    ----------
    context_mv : ndarray, shape (block + 2 * overlap,)
        Offset-removed raw signal with context (mV).
    denoised_mv : ndarray, shape (block,)
        Wavelet-denoised centre (mV).
    ecg_mv : ndarray, shape (block,)
        Band-passed conditioned ECG (mV).
    highpassed_mv : ndarray, shape (block,)
        Denoised signal after the 0.5 Hz high-pass only (mV).
    overlap : int
        Context length (samples).
    fs : float
        Sampling frequency (Hz).

    Returns
    -------
    bins : ndarray of float32, shape (6, block // QUALITY_BIN)
        Rows: sum (raw - denoised)^2, sum ecg^2, min and max of the baseline
        ``denoised - highpassed``, number of flat-run samples, number of clipped samples.
    """
    flat_min, clip_min = quality_run_lengths(fs)
    if (context_mv.size - 2 * overlap) % QUALITY_BIN == 0:
        # compiled: same statistics as the numpy formulation below, in one pass
        out: npt.NDArray[np.float32] = quality_bins(
            np.ascontiguousarray(context_mv, dtype=np.float64),
            np.ascontiguousarray(denoised_mv, dtype=np.float64),
            np.ascontiguousarray(ecg_mv, dtype=np.float64),
            np.ascontiguousarray(highpassed_mv, dtype=np.float64),
            overlap,
            flat_min,
            clip_min,
            _MIN_PTP_MV,
            QUALITY_BIN,
        )
        return out
    raw = context_mv[overlap : context_mv.size - overlap]
    flags = ecg_quality_flags(context_mv, overlap, fs)
    starts = np.arange(0, raw.size, QUALITY_BIN)
    hf = raw - denoised_mv
    out = np.empty((6, starts.size), dtype=np.float32)
    out[0] = np.add.reduceat(hf * hf, starts)
    out[1] = np.add.reduceat(ecg_mv * ecg_mv, starts)
    base = denoised_mv - highpassed_mv
    out[2] = np.minimum.reduceat(base, starts)
    out[3] = np.maximum.reduceat(base, starts)
    if flags.any():
        out[4] = np.add.reduceat((flags & FLAG_FLATRUN) != 0, starts, dtype=np.float64)
        out[5] = np.add.reduceat((flags & FLAG_CLIPPED) != 0, starts, dtype=np.float64)
    else:
        out[4:] = 0.0
    return out


def ecg_quality_windows(
    bins: npt.NDArray[np.float32], a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Statistics of bin windows ``[a_k, b_k)`` (vectorised over windows).

    Returns
    -------
    stats : ndarray of float64, shape (k, 7)
        ``[E_hf, E_ecg, base min, base max, n flat, n samples, n clipped]`` per window.
    """
    nb = bins.shape[1]
    a = np.minimum(np.maximum(a, 0), nb - 1)
    b = np.minimum(np.maximum(b, a + 1), nb)
    ext = np.concatenate((bins, _PAD_COLUMN), axis=1)  # makes index nb valid for reduceat
    idx = np.empty(2 * a.size, dtype=np.int64)
    idx[0::2] = a
    idx[1::2] = b
    sums = np.add.reduceat(ext, idx, axis=1)[:, 0::2]
    sums[2] = np.minimum.reduceat(ext[2], idx)[0::2]
    sums[3] = np.maximum.reduceat(ext[3], idx)[0::2]
    stats = np.empty((a.size, 7))
    stats[:, [0, 1, 2, 3, 4, 6]] = sums.T
    stats[:, 5] = (b - a) * QUALITY_BIN
    return stats


def ecg_quality_score(stats: Sequence[float]) -> BeatQuality:
    """Turn one row of window statistics (see :func:`ecg_quality_windows`) into a BeatQuality."""
    flat, saturated, hf_noise, excursion, score = quality_score(*(float(v) for v in stats))
    return BeatQuality(
        flat=bool(flat),
        saturated=bool(saturated),
        hf_noise=float(hf_noise),
        baseline_excursion_mv=float(excursion),
        score=float(score),
    )
