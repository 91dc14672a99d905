"""Chunk-invariant streaming ECG pipeline: conditioning, R peaks, beats, features.

Per stream (one ECG lead at ``fs`` Hz, 125-1000 Hz)::

    raw chunk (mV) -> DC offset removal -> db4/level-5 wavelet shrinkage (fixed
    overlapping blocks) -> 0.5-50 Hz Butterworth band-pass (carried zi)
    -> Pan-Tompkins-family R-peak detector -> 300-sample beats + RR features + SQI

Every stage works on fixed blocks of ``block`` samples on a grid anchored at the
stream start, so the output (R samples, waveforms, features) does not depend on how
the input is cut into chunks. All state lives in :class:`EcgStreamState`, a plain
dataclass serialised by :mod:`streamdx_dsp.core.state_codec`.

Latency (input sample -> earliest decision on it): the wavelet stage holds a sample
until the block containing it and ``overlap`` = 256 samples of right context have
arrived, i.e. between ``overlap`` and ``block + overlap - 1`` samples; the detector
adds ``w`` = 200 ms of look-ahead; a beat is emitted when the *next* R peak is
accepted (so after its RR_next interval plus those delays). Default
``block_s = 4.0`` (capped at 2048 samples):

=======  =============  ============================
fs (Hz)  block          wavelet delay
=======  =============  ============================
125      512 (4.10 s)   256-767 samples, 2.05-6.14 s
250      1024 (4.10 s)  1.02-5.12 s
360      1440 (4.00 s)  256-1695 samples, 0.71-4.71 s
500      2016 (4.03 s)  0.51-4.54 s
1000     2048 (2.05 s)  0.26-2.30 s
=======  =============  ============================

A smaller ``block_s`` lowers the delay at the cost of throughput (per-block numpy
overhead). State size (``ecg_state_dumps``): about 26 KB at 360 Hz, 51 KB at 1000 Hz.

Beat rules:

- the first R peak of a stream is not emitted as a beat (it has no RR_prev); it is
  the RR_prev reference of the second;
- a beat is emitted once the next R peak is known (RR_next); the last R peak of a
  finished stream is therefore not emitted either;
- for the window ``[R - RR_prev/3, R + 2 RR_next/3)`` the intervals are capped at
  ``RR_CAP_S`` = 2 s (pauses longer than 2 s give a window of -0.67 s..+1.33 s); the
  reported ``rr_prev_s``/``rr_next_s`` are never capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamdx_dsp.core.bandpass import BandpassState, ecg_bandpass_init, ecg_bandpass_sos, ecg_bandpass_tapped
from streamdx_dsp.core.offset import OffsetState, ecg_offset_init, ecg_remove_offset
from streamdx_dsp.core.quality import (
    QUALITY_BIN,
    BeatQuality,
    ecg_quality_bins,
    ecg_quality_score,
    ecg_quality_windows,
)
from streamdx_dsp.core.rpeaks import RPeakState, ecg_rpeak_params, ecg_rpeaks, ecg_rpeaks_init
from streamdx_dsp.core.rr_features import RR_LOCAL_N, ecg_rr_features
from streamdx_dsp.core.segmentation import BEAT_LENGTH, ecg_segment_beats
from streamdx_dsp.core.wavelet_denoise import (
    DWT_OVERLAP,
    WaveletBlock,
    WaveletStreamState,
    ecg_wavelet_block_size,
    ecg_wavelet_stream,
    ecg_wavelet_stream_init,
)

__all__ = [
    "DEFAULT_BLOCK_S",
    "FS_MAX",
    "FS_MIN",
    "RR_CAP_S",
    "Beat",
    "EcgStreamState",
    "SignalHistory",
    "ecg_stream_flush",
    "ecg_stream_init",
    "ecg_stream_process",
]

FS_MIN = 125.0
FS_MAX = 1000.0
RR_CAP_S = 2.0
#: Default processing block (s); see the module docstring for the latency it implies.
DEFAULT_BLOCK_S = 4.0
_BLOCK_MAX_SAMPLES = 2048
#: History kept beyond 4/3 RR_CAP: detector look-back (R search 0.25 s + look-ahead 0.2 s)
#: and slack for search-back decisions.
_HISTORY_EXTRA_S = 1.2


@dataclass(frozen=True, eq=False)
class Beat:
    """One segmented beat (immutable; ``waveform`` is a read-only array; compared by identity).

    Attributes
    ----------
    r_sample : int
        Absolute sample index of the R peak since the stream start
        (``start_sample`` + index in the stream).
    waveform : ndarray of float32, shape (300,)
        Conditioned ECG (mV): 100 samples over ``[R - RR_prev/3, R)``, 200 over
        ``[R, R + 2 RR_next/3)``; R at index 100.
    rr_prev_s, rr_next_s : float
        RR intervals before and after the beat (s).
    rr_local_mean_s : float
        Mean of the last 8 RR intervals ending with ``rr_next_s`` (s).
    rr_irregularity : float
        RMSSD / mean of those intervals (unitless).
    quality : BeatQuality
        Signal-quality index of the beat window.
    """

    r_sample: int
    waveform: npt.NDArray[np.float32]
    rr_prev_s: float
    rr_next_s: float
    rr_local_mean_s: float
    rr_irregularity: float
    quality: BeatQuality


@dataclass
class SignalHistory:
    """Recent conditioned ECG and quality statistics, aligned, from absolute index ``start``.

    Attributes
    ----------
    start : int
        Absolute index of the first stored sample (a multiple of ``QUALITY_BIN``).
    ecg : ndarray of float32
        Conditioned ECG (denoised and band-passed), mV.
    bins : ndarray of float32, shape (6, len(ecg) // QUALITY_BIN)
        Quality statistics per bin (see :func:`streamdx_dsp.core.quality.ecg_quality_bins`).
    """

    start: int
    ecg: npt.NDArray[np.float32]
    bins: npt.NDArray[np.float32]


@dataclass
class EcgStreamState:
    """Complete, serialisable state of one ECG stream.

    Attributes
    ----------
    fs : float
        Sampling frequency (Hz).
    start_sample : int
        Absolute index of the stream's first sample (added to ``Beat.r_sample``).
    block : int
        Processing block (samples).
    overlap : int
        Wavelet context on each side of a block (samples).
    n_in : int
        Number of samples received.
    finished : bool
        Set by :func:`ecg_stream_flush`; no more samples are accepted.
    offset, wavelet, bandpass, detector : stage states
    history : SignalHistory
        Recent conditioned signal.
    last_r : int
        Last accepted R peak (absolute index in the stream, -1: none), not yet emitted.
    last_rr_prev : int
        Its RR_prev in samples (-1 for the first R peak of the stream).
    frozen : bool
        Whether ``frozen_wave``/``frozen_stats`` hold the beat of ``last_r`` for an
        RR_next longer than ``RR_CAP_S`` (stored before the history forgets it).
    frozen_wave : ndarray of float32, shape (300,)
    frozen_stats : ndarray of float64, shape (7,)
    rr : ndarray of int64, shape (8,)
        Last RR intervals (samples), oldest first.
    rr_n : int
        Number of valid ``rr`` entries.
    """

    fs: float
    start_sample: int
    block: int
    overlap: int
    n_in: int
    finished: bool
    offset: OffsetState
    wavelet: WaveletStreamState
    bandpass: BandpassState
    detector: RPeakState
    history: SignalHistory
    last_r: int
    last_rr_prev: int
    frozen: bool
    frozen_wave: npt.NDArray[np.float32]
    frozen_stats: npt.NDArray[np.float64]
    rr: npt.NDArray[np.int64]
    rr_n: int


def _block_size(fs: float, block_s: float) -> int:
    return ecg_wavelet_block_size(fs, min(block_s, _BLOCK_MAX_SAMPLES / fs))


def _history_len(fs: float, block: int) -> int:
    n = math.ceil((4.0 * RR_CAP_S / 3.0 + _HISTORY_EXTRA_S) * fs) + block
    return QUALITY_BIN * math.ceil(n / QUALITY_BIN)


def ecg_stream_init(fs: float, start_sample: int = 0, block_s: float = DEFAULT_BLOCK_S) -> EcgStreamState:
    """Create the state of a new stream.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz), 125 to 1000.
    start_sample : int
        Absolute index of the first sample the stream will receive.
    block_s : float
        Processing block length (s); rounded up to a multiple of 32 samples and
        limited to 2048 samples. Larger blocks raise throughput and latency.

    Returns
    -------
    EcgStreamState
    """
    if not math.isfinite(fs) or not (FS_MIN <= fs <= FS_MAX):
        raise ValueError(f"fs must be within {FS_MIN:g}-{FS_MAX:g} Hz, got {fs!r}")
    if not 0.1 <= block_s <= 10.0:
        raise ValueError("block_s must be within 0.1-10 s")
    fs = float(fs)
    block = _block_size(fs, block_s)
    hlen = _history_len(fs, block)
    return EcgStreamState(
        fs=fs,
        start_sample=int(start_sample),
        block=block,
        overlap=DWT_OVERLAP,
        n_in=0,
        finished=False,
        offset=ecg_offset_init(),
        wavelet=ecg_wavelet_stream_init(DWT_OVERLAP),
        bandpass=ecg_bandpass_init(ecg_bandpass_sos(fs)),
        detector=ecg_rpeaks_init(ecg_rpeak_params(fs)),
        history=SignalHistory(
            start=-hlen,
            ecg=np.zeros(hlen, np.float32),
            bins=np.zeros((6, hlen // QUALITY_BIN), np.float32),
        ),
        last_r=-1,
        last_rr_prev=-1,
        frozen=False,
        frozen_wave=np.zeros(BEAT_LENGTH, np.float32),
        frozen_stats=np.zeros(7),
        rr=np.zeros(RR_LOCAL_N, np.int64),
        rr_n=0,
    )


def _windows(
    h: SignalHistory, r: npt.NDArray[np.int64], pre: npt.NDArray[np.float64], post: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Waveforms and quality statistics of beats at ``r`` with (capped) intervals ``pre``/``post``."""
    waves = ecg_segment_beats(h.ecg, h.start, r, pre, post)
    a = (np.floor(r - pre / 3.0).astype(np.int64) - h.start) // QUALITY_BIN
    b = -((-(np.ceil(r + 2.0 * post / 3.0).astype(np.int64) - h.start)) // QUALITY_BIN)
    stats = ecg_quality_windows(h.bins, a, b)
    return waves, stats


def _emit(state: EcgStreamState, rs: list[int], beats: list[Beat]) -> None:
    """Turn newly accepted R peaks into beats (vectorised over the beats of a block)."""
    if not rs:
        return
    fs = state.fs
    cap = RR_CAP_S * fs
    chain = ([state.last_r] if state.last_r >= 0 else []) + rs
    if len(chain) >= 2:
        n = len(chain) - 1
        rr_next = [chain[k + 1] - chain[k] for k in range(n)]
        rr_prev = [state.last_rr_prev if state.last_r >= 0 else -1, *rr_next[:-1]]
        frozen0 = state.last_r >= 0 and state.frozen and rr_next[0] > cap
        calc = [k for k in range(n) if rr_prev[k] > 0 and not (k == 0 and frozen0)]
        rows: dict[int, tuple[npt.NDArray[np.float32], list[float]]] = {}
        if calc:
            waves, stats = _windows(
                state.history,
                np.array([chain[k] for k in calc], dtype=np.int64),
                np.array([min(rr_prev[k], cap) for k in calc], dtype=np.float64),
                np.array([min(rr_next[k], cap) for k in calc], dtype=np.float64),
            )
            waves.setflags(write=False)
            stats_l = stats.tolist()
            for j, k in enumerate(calc):
                rows[k] = (waves[j], stats_l[j])
        if frozen0:
            fw = state.frozen_wave.copy()
            fw.setflags(write=False)
            rows[0] = (fw, state.frozen_stats.tolist())
        rr_hist = state.rr[state.rr.size - state.rr_n :].tolist() if state.rr_n else []
        s0 = state.start_sample
        for k in range(n):
            rr_hist.append(rr_next[k])
            if len(rr_hist) > RR_LOCAL_N:
                del rr_hist[0]
            if k not in rows:
                continue
            wave, st = rows[k]
            mean_rr, irr = ecg_rr_features(rr_hist, fs)
            beats.append(
                Beat(
                    r_sample=s0 + chain[k],
                    waveform=wave,
                    rr_prev_s=rr_prev[k] / fs,
                    rr_next_s=rr_next[k] / fs,
                    rr_local_mean_s=mean_rr,
                    rr_irregularity=irr,
                    quality=ecg_quality_score(st),
                )
            )
        rr = np.zeros(RR_LOCAL_N, np.int64)
        rr[RR_LOCAL_N - len(rr_hist) :] = rr_hist
        state.rr = rr
        state.rr_n = len(rr_hist)
        state.last_rr_prev = rr_next[-1]
    state.last_r = chain[-1]
    state.frozen = False


def _freeze(state: EcgStreamState) -> None:
    """Store the beat of ``last_r`` for RR_next > RR_CAP_S before the history forgets it."""
    if state.last_r < 0 or state.last_rr_prev <= 0 or state.frozen:
        return
    cap = RR_CAP_S * state.fs
    h = state.history
    if h.start + h.ecg.size >= state.last_r + math.ceil(2.0 * cap / 3.0) + 1:
        w, st = _windows(
            h,
            np.array([state.last_r], dtype=np.int64),
            np.array([min(state.last_rr_prev, cap)], dtype=np.float64),
            np.array([cap]),
        )
        state.frozen_wave = w[0].copy()
        state.frozen_stats = st[0]
        state.frozen = True


def _process_blocks(state: EcgStreamState, blocks: list[WaveletBlock], beats: list[Beat], final: bool) -> None:
    fs = state.fs
    sos = ecg_bandpass_sos(fs)
    params = ecg_rpeak_params(fs)
    ov = state.overlap
    h = state.history
    for blk in blocks:
        state.bandpass, y, hp = ecg_bandpass_tapped(state.bandpass, blk.denoised_mv, sos, 1)
        qb = ecg_quality_bins(blk.context_mv, blk.denoised_mv, y, hp, ov, fs)
        n = y.size
        h.ecg = np.concatenate((h.ecg[n:], y.astype(np.float32)))
        h.bins = np.concatenate((h.bins[:, n // QUALITY_BIN :], qb), axis=1)
        h.start += n
        state.detector, rs = ecg_rpeaks(state.detector, y, h.ecg, h.start, params)
        _emit(state, rs, beats)
        _freeze(state)
    if final:
        state.detector, rs = ecg_rpeaks(state.detector, np.zeros(0), h.ecg, h.start, params, final=True)
        _emit(state, [r for r in rs if r < state.n_in], beats)


def ecg_stream_process(state: EcgStreamState, chunk_mv: npt.ArrayLike) -> tuple[EcgStreamState, list[Beat]]:
    """Feed the next chunk of a stream.

    Parameters
    ----------
    state : EcgStreamState
        State from :func:`ecg_stream_init`, a previous call, or
        :func:`streamdx_dsp.core.state_codec.ecg_state_loads`. It is updated in
        place and returned; keep using the returned object.
    chunk_mv : array_like of float, shape (n,)
        Next samples (mV), any length (0 allowed).

    Returns
    -------
    state : EcgStreamState
        Updated state.
    beats : list of Beat
        Beats completed by this chunk, in time order.

    Raises
    ------
    ValueError
        If the chunk is not 1-D or contains NaN/inf, or the stream was flushed.
    """
    if state.finished:
        raise ValueError("stream already flushed")
    x = np.asarray(chunk_mv, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("chunk must be one-dimensional")
    if x.size == 0:
        return state, []
    if not np.isfinite(x).all():
        raise ValueError("chunk contains NaN or inf")
    state.offset, xo = ecg_remove_offset(state.offset, x)
    state.n_in += x.size
    state.wavelet, blocks = ecg_wavelet_stream(state.wavelet, xo.astype(np.float32), state.block, state.overlap)
    beats: list[Beat] = []
    if blocks:
        _process_blocks(state, blocks, beats, final=False)
    return state, beats


def ecg_stream_flush(state: EcgStreamState) -> tuple[EcgStreamState, list[Beat]]:
    """End a finite stream: process the buffered samples and emit the last beats.

    The signal is continued with zeros (0 mV after offset removal) until every
    received sample has passed the wavelet stage; the detector then decides its
    remaining candidates; R peaks found in the padding are discarded. Beats whose
    next R peak is known are emitted. The state is marked finished.

    Returns
    -------
    state : EcgStreamState
        Finished state.
    beats : list of Beat
        Remaining beats.
    """
    if state.finished:
        return state, []
    beats: list[Beat] = []
    if state.n_in > 0:
        first_pending = state.wavelet.buffer_start + state.overlap
        nblocks = max(0, math.ceil((state.n_in - first_pending) / state.block))
        total = max(0, nblocks * state.block + 2 * state.overlap - state.wavelet.buffer.size)
        state.wavelet, blocks = ecg_wavelet_stream(
            state.wavelet, np.zeros(total, np.float32), state.block, state.overlap
        )
        _process_blocks(state, blocks, beats, final=True)
    state.finished = True
    return state, beats
