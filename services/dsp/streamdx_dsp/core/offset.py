"""Streaming DC-offset removal for ECG.

The first sample of a stream is taken as the DC offset and subtracted from every
later sample. This removes the electrode / ADC offset before the filters see the
signal, so the IIR band-pass and the wavelet stage start from rest (zero initial
conditions) without a start-up transient. Slow baseline wander is removed later by
the 0.5 Hz high-pass edge of :func:`streamdx_dsp.core.bandpass.ecg_bandpass`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["OffsetState", "ecg_offset_init", "ecg_remove_offset"]


@dataclass
class OffsetState:
    """State of the offset remover.

    Attributes
    ----------
    value_mv : float
        Offset subtracted from every sample (mV); the first sample of the stream.
    known : bool
        Whether the offset has been fixed (a first sample was seen).
    """

    value_mv: float = 0.0
    known: bool = False


def ecg_offset_init() -> OffsetState:
    """Return the state of an offset remover that has seen no sample yet."""
    return OffsetState()


def ecg_remove_offset(state: OffsetState, x_mv: npt.NDArray[np.float64]) -> tuple[OffsetState, npt.NDArray[np.float64]]:
    """Subtract the stream's DC offset (its first sample) from a chunk.

    Parameters
    ----------
    state : OffsetState
        State returned by the previous call (or :func:`ecg_offset_init`).
    x_mv : ndarray of float, shape (n,)
        Next chunk of the ECG in mV.

    Returns
    -------
    state : OffsetState
        Updated state (the same object, updated in place).
    y_mv : ndarray of float64, shape (n,)
        ``x_mv - offset`` in mV.
    """
    x = np.asarray(x_mv, dtype=np.float64)
    if not state.known and x.size:
        state.value_mv = float(x[0])
        state.known = True
    return state, x - state.value_mv
