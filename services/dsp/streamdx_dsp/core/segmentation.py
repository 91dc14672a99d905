"""Fixed-size beat segmentation around the R peak.

Two windows (:data:`BeatWindow`), both resampled to 300 samples with R at index 100:

- ``"rr"`` (seed 003): from ``R_i - RR_prev/3`` to ``R_i + 2 RR_next/3``; adapts to
  the heart rate but needs the *next* R peak;
- ``"fixed"``: a causal fixed span, ``FIXED_PRE_S`` = 0.28 s before and
  ``FIXED_POST_S`` = 0.56 s after R, known 0.56 s after the R peak.

The pre-R part is resampled (linear interpolation) to 100 samples and the post-R
part to 200 samples, giving a 300-sample float32 waveform in mV whatever ``fs``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

__all__ = [
    "BEAT_LENGTH",
    "BEAT_WINDOWS",
    "FIXED_POST_S",
    "FIXED_PRE_S",
    "POST_R_SAMPLES",
    "PRE_R_SAMPLES",
    "BeatWindow",
    "beat_window_span",
    "ecg_segment_beats",
]

#: Beat window: ``"rr"`` (RR-based, waits for the next R) or ``"fixed"`` (causal fixed span).
BeatWindow = Literal["rr", "fixed"]
BEAT_WINDOWS: tuple[str, ...] = get_args(BeatWindow)
FIXED_PRE_S = 0.28
FIXED_POST_S = 0.56

PRE_R_SAMPLES = 100
POST_R_SAMPLES = 200
BEAT_LENGTH = PRE_R_SAMPLES + POST_R_SAMPLES

# position of output sample j: r + rr_prev/3 * _U[j] + 2 rr_next/3 * _V[j]
SEGMENT_U = np.concatenate((np.arange(PRE_R_SAMPLES) / PRE_R_SAMPLES - 1.0, np.zeros(POST_R_SAMPLES)))
SEGMENT_V = np.concatenate((np.zeros(PRE_R_SAMPLES), np.arange(POST_R_SAMPLES) / POST_R_SAMPLES))
SEGMENT_U.setflags(write=False)
SEGMENT_V.setflags(write=False)
_U = SEGMENT_U
_V = SEGMENT_V


def ecg_segment_beats(
    x_mv: npt.NDArray[np.float32],
    x_start: int,
    r: npt.NDArray[np.int64],
    rr_prev: npt.NDArray[np.float64],
    rr_next: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """Cut and resample beats (vectorised over beats).

    Parameters
    ----------
    x_mv : ndarray, shape (m,)
        Conditioned ECG (mV); ``x_mv[0]`` is absolute sample ``x_start``.
    x_start : int
        Absolute index of ``x_mv[0]``.
    r : ndarray of int, shape (k,)
        Absolute R-peak indices.
    rr_prev, rr_next : ndarray of float, shape (k,)
        Intervals (samples) used for the window ``[r - rr_prev/3, r + 2 rr_next/3)``.

    Returns
    -------
    beats : ndarray of float32, shape (k, 300)
        Linear interpolation of ``x_mv``: 100 samples evenly spaced on
        ``[r - rr_prev/3, r)`` then 200 on ``[r, r + 2 rr_next/3)``; R at index 100.
        Positions outside ``x_mv`` take its edge values.
    """
    rel = (np.asarray(r, dtype=np.float64) - x_start)[:, None]
    pos = rel + (np.asarray(rr_prev, dtype=np.float64)[:, None] / 3.0) * _U
    pos += (2.0 * np.asarray(rr_next, dtype=np.float64)[:, None] / 3.0) * _V
    np.maximum(pos, 0.0, out=pos)
    np.minimum(pos, x_mv.size - 1.000001, out=pos)
    i0 = pos.astype(np.int64)
    frac = pos - i0
    x0 = x_mv[i0]
    out = x0 + frac * (x_mv[i0 + 1] - x0)
    return out.astype(np.float32)


def beat_window_span(window: str, fs: float) -> tuple[float, float]:
    """Interval arguments of the window formula for a fixed-span window.

    The window formula is ``[R - pre/3, R + 2 post/3)``; a fixed span of
    ``FIXED_PRE_S`` before and ``FIXED_POST_S`` after R is ``pre = 3 FIXED_PRE_S fs``,
    ``post = 1.5 FIXED_POST_S fs``.

    Parameters
    ----------
    window : {"rr", "fixed"}
        Beat window.
    fs : float
        Sampling frequency (Hz).

    Returns
    -------
    pre, post : float
        Samples to use instead of the RR intervals; ``(0.0, 0.0)`` for ``"rr"``
        (use the RR intervals).
    """
    if window == "rr":
        return 0.0, 0.0
    if window == "fixed":
        return 3.0 * FIXED_PRE_S * fs, 1.5 * FIXED_POST_S * fs
    raise ValueError(f"beat window must be one of {BEAT_WINDOWS}, got {window!r}")
