"""Bounded-delay streaming wavelet shrinkage of ECG (db4, 5 levels, soft universal threshold).

The offline method (Donoho & Johnstone 1994, "Ideal spatial adaptation by wavelet
shrinkage", Biometrika 81(3):425-455; see :mod:`streamdx_dsp.core.wavelet_denoise`)
needs the whole support of a level-5 db4 atom, ``(8 - 1)(2**5 - 1) + 1 = 218`` samples,
on both sides of a sample: an exact streaming version delays every sample by about
250 samples (0.7 s at 360 Hz) plus its block, which is more than the 0.8 s budget of a
beat at 360 Hz. This module keeps the transform and the threshold rule and bounds the
delay instead:

1. **Levels 1-2 exactly, as a streaming filter bank.** ``cA1, cD1`` and ``cA2, cD2``
   are the linear (non-periodised) DWT of the stream, preceded by ``PAD`` zeros,
   ``c[k] = sum_j f[j] x[2k + 4 - j]`` (PyWavelets' filters and phase); each
   coefficient is computed once, when its 8 input samples are known.
2. **Levels 3-5 on cA2, in short windows.** cA2 (``fs/4``) is cut into hops of
   ``H2`` coefficients; each hop is transformed with ``L2`` coefficients of left
   context, ``R2`` of right context and a mirror extension of ``P2`` (whole window
   ``W2 = L2 + H2 + R2 + P2``, periodised 3-level DWT), its details shrunk, and only
   the hop kept. Only the mirror extension stands in for unknown future samples.
3. **Threshold.** ``sigma = median(|cD1|) / 0.6745`` per block of ``SIGMA_BLOCK``
   cD1 coefficients (0.7 s at 360 Hz); a coefficient at cD1 position ``q`` uses the
   block before the one containing ``q`` (no look-ahead), and
   ``lambda = sigma * sqrt(2 ln N_REF)`` with ``N_REF`` = 2048 (the universal threshold
   of a 2048-sample block, the size of the blocks the previous block-wise version used).
   Details of levels 1-5 are soft-thresholded, the level-5 approximation is kept.
4. **Synthesis** of levels 2 -> 0 from the shrunk coefficients (the transpose).

Delay: an output sample ``n`` needs ``cD1`` up to about ``n/2 + 2`` and the denoised
cA2 of its hop, i.e. the input up to about ``n + 24 + 4 (R2 + hop)``: 24-44 samples
(0.07-0.12 s at 360 Hz, measured by ``streamdx bench dsp``), independent of fs in
samples. Output is released in whole quality bins (8 samples) and only when ``LOOK``
further raw samples are known (flat-line run lengths).

Agreement with the offline transform is measured by ``streamdx bench dsp``
(``denoise_agreement``: normalised RMS difference after the 0.5-50 Hz band-pass against
the whole-record DWT shrinkage and against the former 4-s block version).

Every value depends only on the position in the stream, never on how the input is cut
into chunks; :func:`ecg_wavelet_reference` computes the same output from the whole signal
at once (the test oracle).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pywt

from streamdx_dsp.core._wavelet_kernels import N_ROWS, PIECE, RING, wavelet_stream_step
from streamdx_dsp.core.wavelet_denoise import DWT_WAVELET, dwt_filters

__all__ = [
    "H2",
    "L2",
    "LAM_FAC",
    "LOOK",
    "N_REF",
    "P2",
    "PAD",
    "R2",
    "SIGMA_BLOCK",
    "WaveletStream",
    "ecg_wavelet_reference",
    "ecg_wavelet_stream_v2",
    "ecg_wavelet_stream_v2_init",
    "hop_matrices",
]

PAD = 32
H2 = 4
L2 = 16
R2 = 1
P2 = 11
SIGMA_BLOCK = 128
N_REF = 2048
LOOK = 16
LAM_FAC = math.sqrt(2.0 * math.log(N_REF))
if (L2 + H2 + R2 + P2) & (L2 + H2 + R2 + P2 - 1):
    raise RuntimeError("the level-3-5 window length must be a power of two")
_QBIN = 8


@dataclass
class WaveletStream:
    """State of the bounded-delay denoiser (serialisable).

    Attributes
    ----------
    ring : ndarray of float64, shape (8, 256)
        Recent values of the padded stream's input, cA1, cD1, shrunk cD1, cA2, shrunk cD2,
        denoised cA2 and denoised cA1; value ``i`` of a sequence is at column ``i % 256``.
    cnt : ndarray of int64, shape (7,)
        Counts of input samples, cA1/cD1, cA2/cD2, denoised cA2, denoised cA1, output
        samples (padded index) and noise-scale blocks.
    sig : ndarray of float64, shape (16,)
        Noise scale of the recent cD1 blocks (block ``b`` at ``b % 16``).
    """

    ring: npt.NDArray[np.float64]
    cnt: npt.NDArray[np.int64]
    sig: npt.NDArray[np.float64]


#: Which counter of ``WaveletStream.cnt`` counts the values of each ring row.
_ROW_COUNTER = (0, 1, 1, 1, 2, 2, 3, 4)
#: Values of each row still read after a call returns: a call consumes its input in pieces of at most
#: ``PIECE`` samples so that no live value is overwritten, so nothing older than ``RING - PIECE`` is read.
RING_LIVE = RING - PIECE
_ROWS = np.arange(N_ROWS)[:, None]


def _live_columns(cnt: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Column of each row's last ``RING_LIVE`` values, oldest first, shape (N_ROWS, RING_LIVE)."""
    ends = np.asarray(cnt, dtype=np.int64)[list(_ROW_COUNTER)]
    return (ends[:, None] + np.arange(-RING_LIVE, 0)) & (RING - 1)


def wavelet_ring_pack(ring: npt.NDArray[np.float64], cnt: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """The live part of the ring (serialisation): row ``r``'s last ``RING_LIVE`` values, oldest first.

    Shape (N_ROWS, RING_LIVE). :func:`wavelet_ring_unpack` restores a ring that continues the
    stream bit-identically (the other columns are never read again).
    """
    out: npt.NDArray[np.float64] = ring[_ROWS, _live_columns(cnt)]
    return out


def wavelet_ring_unpack(tail: npt.NDArray[np.float64], cnt: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """Inverse of :func:`wavelet_ring_pack`; the columns not kept are zero."""
    if tail.shape != (N_ROWS, RING_LIVE):
        raise ValueError(f"wavelet ring tail of shape {tail.shape}, expected {(N_ROWS, RING_LIVE)}")
    ring = np.zeros((N_ROWS, RING))
    ring[_ROWS, _live_columns(cnt)] = tail
    return ring


def ecg_wavelet_stream_v2_init() -> WaveletStream:
    """State of a stream that has received no sample (``PAD`` leading zeros queued)."""
    cnt = np.zeros(7, np.int64)
    cnt[5] = PAD  # output starts after the padding
    st = WaveletStream(ring=np.zeros((N_ROWS, RING)), cnt=cnt, sig=np.zeros(16))
    st, _, _, _ = ecg_wavelet_stream_v2(st, np.zeros(PAD))
    return st


def ecg_wavelet_stream_v2(
    st: WaveletStream, x_mv: npt.NDArray[np.float64]
) -> tuple[WaveletStream, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Append input and return the newly final denoised samples.

    Parameters
    ----------
    st : WaveletStream
        State (updated in place and returned).
    x_mv : ndarray of float64
        Next offset-removed samples (mV).

    Returns
    -------
    st : WaveletStream
    den_mv : ndarray of float64
        Denoised samples, a multiple of 8, following the previous ones.
    raw_mv : ndarray of float64
        The input samples aligned with ``den_mv``.
    ahead_mv : ndarray of float64, shape (LOOK,)
        The ``LOOK`` input samples after the last output sample.
    """
    lo, hi = dwt_filters()
    hop_m, hop_s = hop_matrices()
    den, raw, ahead = wavelet_stream_step(
        np.ascontiguousarray(x_mv, dtype=np.float64), st.ring, st.cnt, st.sig, lo, hi, hop_m, hop_s,
        H2, L2, R2, LAM_FAC, SIGMA_BLOCK, LOOK, _QBIN, PAD,
    )  # fmt: skip
    return st, den, raw, ahead


@lru_cache(maxsize=1)
def hop_matrices() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Levels 3-5 of one hop as matrices (read-only): ``(hop_m, hop_s)``.

    The window of a hop is its ``L2 + H2 + R2`` cA2 values ``c`` followed by their last
    ``P2`` mirrored; its periodised 3-level db4 DWT is linear in ``c``, and the kept ``H2``
    samples depend on the level-5 approximation and on 17 of the 28 detail coefficients
    (all of level 5, those of levels 3-4 whose synthesis atoms reach the hop). So

    ``y = hop_m @ c`` gives, first, the hop synthesised from the approximation alone,
    then those detail coefficients; the denoised hop is
    ``y[:H2] + soft(y[H2:], lambda) @ hop_s``. Built from PyWavelets' transform by unit
    impulses (exact: structurally absent terms are exact zeros). One dense product per
    hop replaces the cascade of three analysis and synthesis levels.
    """
    w = pywt.Wavelet(DWT_WAVELET)
    n_core = L2 + H2 + R2
    keep = slice(L2, L2 + H2)

    def window(c: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.concatenate((c, c[::-1][:P2]))

    eye = np.eye(n_core)
    with warnings.catch_warnings():  # "level 3 is too high" for 32 samples: the boundary is the point here
        warnings.simplefilter("ignore", UserWarning)
        coeffs = [pywt.wavedec(window(e), w, mode="periodization", level=3) for e in eye]
    shapes = [c.size for c in coeffs[0]]
    # synthesis of the hop from each detail coefficient alone (levels 5, 4, 3 in pywt's order)
    s_rows, sel = [], []
    flat_off = shapes[0]
    for lev, size in enumerate(shapes[1:], start=1):
        for i in range(size):
            cs = [np.zeros(n) for n in shapes]
            cs[lev][i] = 1.0
            row = pywt.waverec(cs, w, mode="periodization")[keep]
            if np.any(row != 0.0):
                s_rows.append(row)
                sel.append(flat_off + i)
        flat_off += size
    flat = np.array([np.concatenate(c) for c in coeffs])  # (n_core, all coefficients)
    approx = np.array(
        [pywt.waverec([c[0]] + [np.zeros(n) for n in shapes[1:]], w, mode="periodization")[keep] for c in coeffs]
    )
    hop_m = np.ascontiguousarray(np.concatenate((approx, flat[:, sel]), axis=1).T)
    hop_s = np.ascontiguousarray(np.array(s_rows))
    hop_m.setflags(write=False)
    hop_s.setflags(write=False)
    return hop_m, hop_s


def _soft(c: npt.NDArray[np.float64], lam: npt.NDArray[np.float64] | float) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = np.sign(c) * np.maximum(np.abs(c) - lam, 0.0)
    return out


def ecg_wavelet_reference(x_mv: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Offline computation of the bounded-delay denoiser's output over a whole signal (test oracle).

    Returns the samples the stream would have released after receiving all of
    ``x_mv`` (a prefix of the signal; the stream's flush releases the rest).
    """
    x = np.asarray(x_mv, dtype=np.float64)
    lo, hi = dwt_filters()
    xp = np.concatenate((np.zeros(PAD), x))
    nx = xp.size

    def analysis(v: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        k = max((v.size - 5) // 2 + 1, 0)
        return np.convolve(v, lo)[4 : 4 + 2 * k : 2], np.convolve(v, hi)[4 : 4 + 2 * k : 2]

    a1, d1 = analysis(xp)
    a2, d2 = analysis(a1)
    sig = np.array([np.median(np.abs(d1[b * SIGMA_BLOCK : (b + 1) * SIGMA_BLOCK])) / 0.6745
                    for b in range(d1.size // SIGMA_BLOCK)])  # fmt: skip

    def lam(q: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        sb = np.asarray(q) // SIGMA_BLOCK - 1
        out = np.zeros(sb.shape)
        ok = sb >= 0
        out[ok] = sig[sb[ok]] * LAM_FAC
        return out

    w = pywt.Wavelet(DWT_WAVELET)
    n_b = ((a2.size - R2) // H2) * H2
    a2d = np.zeros(max(n_b, 0))
    a2p = np.concatenate((np.zeros(L2), a2))
    for s in range(0, n_b, H2):
        core = a2p[s : s + L2 + H2 + R2]
        win = np.concatenate((core, core[::-1][:P2]))
        cs = pywt.wavedec(win, w, mode="periodization", level=3)
        lm = float(lam(np.array([2 * s]))[0])
        cs = [cs[0]] + [_soft(c, lm) for c in cs[1:]]
        a2d[s : s + H2] = pywt.waverec(cs, w, mode="periodization")[L2 : L2 + H2]

    def synth(a: npt.NDArray[np.float64], d: npt.NDArray[np.float64], lim: int) -> npt.NDArray[np.float64]:
        m_end = max(2 * (lim - 2) + 1, 0)
        ap = np.concatenate((np.zeros(2), a[:lim], np.zeros(2)))
        dp = np.concatenate((np.zeros(2), d[:lim], np.zeros(2)))
        out = np.zeros(m_end)
        for m in range(m_end):
            i = m // 2
            if m % 2 == 0:
                idx = np.arange(i - 2, i + 2)
                taps = np.arange(0, 8, 2)
            else:
                idx = np.arange(i - 1, i + 3)
                taps = np.arange(1, 8, 2)
            out[m] = np.sum(lo[taps] * ap[idx + 2] + hi[taps] * dp[idx + 2])
        return out

    lim2 = min(n_b, a2.size)
    d2s = _soft(d2, lam(2 * np.arange(d2.size)))
    a1d = synth(a2d, d2s, lim2)
    lim1 = min(a1d.size, a1.size)
    d1s = _soft(d1, lam(np.arange(d1.size)))
    y = synth(a1d, d1s, lim1)
    n_end = min(y.size, nx - LOOK)
    n_end = PAD + ((n_end - PAD) // _QBIN) * _QBIN
    return y[PAD:n_end]
