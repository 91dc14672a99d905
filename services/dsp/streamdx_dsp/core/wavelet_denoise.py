"""Wavelet-shrinkage denoising of ECG, batch and chunk-invariant streaming.

Method (Donoho & Johnstone 1994, "Ideal spatial adaptation by wavelet shrinkage",
Biometrika 81(3):425-455; Donoho 1995, IEEE Trans Inf Theory 41(3):613-627):

1. Discrete wavelet transform, Daubechies-4 (``db4``), 5 levels, periodised.
2. Robust noise scale from the finest detail band:
   ``sigma = median(|cD1|) / 0.6745`` (the MAD of Gaussian noise is 0.6745 sigma).
3. Universal threshold ``lambda = sigma * sqrt(2 ln N)`` with ``N`` the number of
   samples transformed.
4. Soft thresholding of every detail band cD1..cD5 (approximation cA5 untouched),
   inverse transform.

Streaming. The signal is cut into fixed blocks of ``block`` samples on a grid
anchored at the stream start; each block is transformed together with
``overlap`` samples of context on both sides (``N = block + 2 * overlap``) and only
its centre is kept. The stream is preceded by ``overlap`` zeros (the input is
offset-removed, so it starts at 0 mV). Every output sample therefore depends only on
the signal, never on how it was cut into chunks.

Latency: an output block is produced when the input has reached ``overlap`` samples
past its end, so the added delay is between ``overlap`` and ``block + overlap - 1``
samples (``overlap`` = 256 samples: 0.71 s at 360 Hz, 0.26 s at 1000 Hz, plus up to
one block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pywt

from streamdx_dsp.core._kernels import dwt_denoise

__all__ = [
    "DWT_LEVEL",
    "DWT_OVERLAP",
    "DWT_WAVELET",
    "WaveletBlock",
    "WaveletStreamState",
    "dwt_filters",
    "ecg_wavelet_block_size",
    "ecg_wavelet_denoise",
    "ecg_wavelet_stream",
    "ecg_wavelet_stream_init",
]

DWT_WAVELET = "db4"
DWT_LEVEL = 5
#: Context on each side of a block (samples). A level-5 db4 atom spans
#: (8 - 1) * (2**5 - 1) + 1 = 218 samples, so 256 keeps block edges out of the kept centre.
DWT_OVERLAP = 256
_MAD_TO_SIGMA = 0.6745


@lru_cache(maxsize=8)
def _wavelet(name: str) -> pywt.Wavelet:
    return pywt.Wavelet(name)


def dwt_filters() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Decomposition low-/high-pass filters of ``DWT_WAVELET`` (cached, do not modify)."""
    filt = _dec_filters(DWT_WAVELET)
    assert filt is not None  # db4 is orthogonal
    return filt


@lru_cache(maxsize=8)
def _dec_filters(name: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """Decomposition filters of an orthogonal 8-tap wavelet such as db4 (None: use PyWavelets)."""
    w = _wavelet(name)
    if not w.orthogonal or w.dec_len != 8:
        return None
    return np.array(w.dec_lo, dtype=np.float64), np.array(w.dec_hi, dtype=np.float64)


def ecg_wavelet_block_size(fs: float, block_s: float) -> int:
    """Block length in samples: ``block_s`` seconds rounded up to a multiple of 32 (= 2**5)."""
    return int(32 * math.ceil(block_s * fs / 32.0))


def ecg_wavelet_denoise(
    x_mv: npt.NDArray[np.float64], wavelet: str = DWT_WAVELET, level: int = DWT_LEVEL
) -> npt.NDArray[np.float64]:
    """Denoise one block by soft universal-threshold wavelet shrinkage.

    Parameters
    ----------
    x_mv : ndarray of float, shape (N,)
        Signal (mV); ``N`` should be a multiple of ``2**level``.
    wavelet : str
        PyWavelets wavelet name (default ``db4``).
    level : int
        Decomposition depth (default 5).

    Returns
    -------
    y_mv : ndarray of float64, shape (N,)
        Denoised signal (mV).

    Notes
    -----
    ``sigma = median(|cD1|)/0.6745``, ``lambda = sigma*sqrt(2 ln N)`` (Donoho &
    Johnstone 1994); soft thresholding ``sign(c) max(|c| - lambda, 0)`` of cD1..cD5.
    """
    x = np.asarray(x_mv, dtype=np.float64)
    n = x.shape[-1]
    filt = _dec_filters(wavelet)
    if filt is not None and x.ndim == 1 and level >= 1 and n % (1 << level) == 0:
        # compiled periodised DWT + shrinkage + inverse (same arithmetic as below)
        out: npt.NDArray[np.float64] = dwt_denoise(np.ascontiguousarray(x), filt[0], filt[1], level, 0, n)
        return out
    w = _wavelet(wavelet)
    coeffs = pywt.wavedec(x, w, mode="periodization", level=level)
    sigma = float(np.median(np.abs(coeffs[-1]))) / _MAD_TO_SIGMA
    lam = sigma * math.sqrt(2.0 * math.log(n))
    if lam > 0.0:
        # soft-threshold all detail bands at once
        d = np.concatenate(coeffs[1:])
        mag = np.abs(d)
        mag -= lam
        np.maximum(mag, 0.0, out=mag)
        d = np.copysign(mag, d)
        pos = 0
        for k in range(1, len(coeffs)):
            m = coeffs[k].size
            coeffs[k] = d[pos : pos + m]
            pos += m
    y: npt.NDArray[np.float64] = pywt.waverec(coeffs, w, mode="periodization")
    return y[:n]


@dataclass
class WaveletStreamState:
    """Input buffer of the streaming denoiser.

    Attributes
    ----------
    buffer : ndarray of float32
        Offset-removed input (mV) not yet consumed, starting at absolute sample
        ``buffer_start`` (negative indices are the leading zero padding).
    buffer_start : int
        Absolute sample index of ``buffer[0]``.
    """

    buffer: npt.NDArray[np.float32]
    buffer_start: int


@dataclass(frozen=True)
class WaveletBlock:
    """One denoised block.

    Attributes
    ----------
    start : int
        Absolute sample index of the first sample of the block centre.
    context_mv : ndarray of float64, shape (block + 2 * overlap,)
        The input with its context (``context_mv[overlap:-overlap]`` is the centre).
    denoised_mv : ndarray of float64, shape (block,)
        Denoised centre (mV).
    """

    start: int
    context_mv: npt.NDArray[np.float64]
    denoised_mv: npt.NDArray[np.float64]


def ecg_wavelet_stream_init(overlap: int = DWT_OVERLAP) -> WaveletStreamState:
    """State of a stream that has received no sample (``overlap`` leading zeros)."""
    return WaveletStreamState(buffer=np.zeros(overlap, dtype=np.float32), buffer_start=-overlap)


def ecg_wavelet_stream(
    state: WaveletStreamState,
    x_mv: npt.NDArray[np.float32],
    block: int,
    overlap: int = DWT_OVERLAP,
) -> tuple[WaveletStreamState, list[WaveletBlock]]:
    """Append a chunk and denoise every block that has its full right context.

    Parameters
    ----------
    state : WaveletStreamState
        State from the previous call or :func:`ecg_wavelet_stream_init`.
    x_mv : ndarray of float32, shape (n,)
        Next chunk of the offset-removed input (mV).
    block : int
        Block length in samples (see :func:`ecg_wavelet_block_size`).
    overlap : int
        Context on each side in samples.

    Returns
    -------
    state : WaveletStreamState
        Updated state (same object).
    blocks : list of WaveletBlock
        Completed blocks in time order (possibly empty).
    """
    buf = state.buffer if x_mv.size == 0 else np.concatenate((state.buffer, x_mv.astype(np.float32)))
    span = block + 2 * overlap
    out: list[WaveletBlock] = []
    pos = 0
    lo, hi = dwt_filters()
    while buf.size - pos >= span:
        ctx = buf[pos : pos + span].astype(np.float64)
        if span % (1 << DWT_LEVEL) == 0:
            den = dwt_denoise(ctx, lo, hi, DWT_LEVEL, overlap, block)
        else:
            den = ecg_wavelet_denoise(ctx)[overlap : overlap + block]
        out.append(WaveletBlock(start=state.buffer_start + pos + overlap, context_mv=ctx, denoised_mv=den))
        pos += block
    if pos:
        buf = buf[pos:].copy()
        state.buffer_start += pos
    state.buffer = buf
    return state, out
