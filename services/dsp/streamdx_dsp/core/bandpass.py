"""Streaming Butterworth band-pass filtering of ECG (second-order sections).

The monitoring band 0.5-50 Hz removes baseline wander (< 0.5 Hz) and
mains / EMG content above 50 Hz. The filter is a causal IIR Butterworth in
second-order sections whose delay line (``zi``) is carried from chunk to chunk, so
filtering a signal in pieces gives the same output as filtering it in one go.

The same machinery builds the 5-10 Hz QRS-emphasis filter of the Pan-Tompkins
detector (Pan & Tompkins 1985, IEEE Trans Biomed Eng 32(3):230-236).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import signal

from streamdx_dsp.core._kernels import sos_filter_tapped

__all__ = ["BandpassState", "ecg_bandpass", "ecg_bandpass_init", "ecg_bandpass_sos", "ecg_bandpass_tapped"]


@lru_cache(maxsize=64)
def _design(fs: float, low_hz: float, high_hz: float, order: int) -> npt.NDArray[np.float64]:
    nyq = fs / 2.0
    high = min(high_hz, 0.9 * nyq)
    hp = signal.butter(order, low_hz, btype="highpass", fs=fs, output="sos")
    lp = signal.butter(order, high, btype="lowpass", fs=fs, output="sos")
    sos: npt.NDArray[np.float64] = np.vstack((hp, lp))
    return sos


def ecg_bandpass_sos(fs: float, low_hz: float = 0.5, high_hz: float = 50.0, order: int = 2) -> npt.NDArray[np.float64]:
    """Design a Butterworth band-pass as second-order sections.

    The band-pass is the cascade of a Butterworth high-pass at ``low_hz`` and a
    Butterworth low-pass at ``high_hz`` (each of ``order``); the high-pass sections come
    first, so the signal after them (the input minus its baseline wander) is available
    to the quality index.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz).
    low_hz, high_hz : float
        -3 dB edges (Hz). ``high_hz`` is clipped to 0.9 x Nyquist for low ``fs``.
    order : int
        Order of the high-pass and of the low-pass (``2 * order`` poles in total).

    Returns
    -------
    sos : ndarray, shape (order, 6)
        ``order // 2`` (rounded up) high-pass sections, then the low-pass sections.
        SOS matrix (cached per parameter set; do not modify).
    """
    return _design(float(fs), float(low_hz), float(high_hz), int(order))


@dataclass
class BandpassState:
    """Delay-line state of an SOS filter.

    Attributes
    ----------
    zi : ndarray of float64, shape (n_sections, 2)
        Direct-form II transposed state of every section (``scipy.signal.sosfilt``).
    """

    zi: npt.NDArray[np.float64]


def ecg_bandpass_init(sos: npt.NDArray[np.float64]) -> BandpassState:
    """Filter state at rest (zero input history), for a signal starting at 0 mV."""
    return BandpassState(zi=np.zeros((sos.shape[0], 2), dtype=np.float64))


def ecg_bandpass(
    state: BandpassState, x_mv: npt.NDArray[np.float64], sos: npt.NDArray[np.float64]
) -> tuple[BandpassState, npt.NDArray[np.float64]]:
    """Filter the next chunk, carrying the filter state.

    Parameters
    ----------
    state : BandpassState
        State returned by the previous call (or :func:`ecg_bandpass_init`).
    x_mv : ndarray of float, shape (n,)
        Next chunk (mV).
    sos : ndarray, shape (n_sections, 6)
        Filter from :func:`ecg_bandpass_sos`.

    Returns
    -------
    state : BandpassState
        Updated state (the same object, its ``zi`` replaced).
    y_mv : ndarray of float64, shape (n,)
        Filtered chunk (mV).
    """
    state, y, _ = ecg_bandpass_tapped(state, x_mv, sos, 0)
    return state, y


def ecg_bandpass_tapped(
    state: BandpassState, x_mv: npt.NDArray[np.float64], sos: npt.NDArray[np.float64], n_tap: int
) -> tuple[BandpassState, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Like :func:`ecg_bandpass`, also returning the signal after the first ``n_tap`` sections.

    With the SOS of :func:`ecg_bandpass_sos` and ``n_tap`` = number of high-pass
    sections, the tap is the high-passed signal, so ``x - tap`` is the baseline wander.
    """
    # compiled cascade of biquads (transposed direct form II, as scipy.signal.sosfilt)
    zi = state.zi.copy()
    y, tap = sos_filter_tapped(sos, np.ascontiguousarray(x_mv, dtype=np.float64), zi, n_tap)
    state.zi = zi
    return state, y, tap
