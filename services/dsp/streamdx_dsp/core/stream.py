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

A smaller ``block_s`` lowers the delay at the cost of throughput (fixed per-block
overhead of roughly 0.1 ms). State size (``ecg_state_dumps``): about 26 KB at 360 Hz,
51 KB at 1000 Hz.

Implementation: each block runs through compiled numba kernels
(:mod:`streamdx_dsp.core._kernels`; wavelet shrinkage, filters, quality statistics,
detector features, candidates and decisions in one call, then the beats of the block
at once); Python only builds the :class:`Beat` objects. The kernels are compiled (or
loaded from the on-disk cache) by the first :func:`ecg_stream_init` of a process, so
no data block waits for the compiler.

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
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from streamdx_dsp.core._kernels import beat_rows, beat_windows, condition_block, ingest, stream_block
from streamdx_dsp.core.bandpass import BandpassState, ecg_bandpass_init, ecg_bandpass_sos
from streamdx_dsp.core.offset import OffsetState, ecg_offset_init
from streamdx_dsp.core.quality import MIN_PTP_MV, QUALITY_BIN, BeatQuality, quality_run_lengths
from streamdx_dsp.core.rpeaks import (
    SEARCHBACK_POOL_MAX,
    RPeakState,
    ecg_rpeak_params,
    ecg_rpeaks,
    ecg_rpeaks_advance,
    ecg_rpeaks_init,
    qrs_filter_ba,
)
from streamdx_dsp.core.rr_features import RR_LOCAL_N
from streamdx_dsp.core.segmentation import BEAT_LENGTH, SEGMENT_U, SEGMENT_V, BeatWindow, beat_window_span
from streamdx_dsp.core.wavelet_denoise import (
    DWT_LEVEL,
    DWT_OVERLAP,
    WaveletStreamState,
    dwt_filters,
    ecg_wavelet_block_size,
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
    "ecg_stream_horizon",
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
    fixed_pre, fixed_post : float
        Window formula arguments of a fixed-span beat window (samples), 0 for the
        RR-based window (see :func:`~streamdx_dsp.core.segmentation.beat_window_span`).
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
    fixed_pre: float = 0.0
    fixed_post: float = 0.0

    @property
    def window(self) -> BeatWindow:
        """The beat window of this stream."""
        return "fixed" if self.fixed_pre > 0.0 else "rr"


def _block_size(fs: float, block_s: float) -> int:
    return ecg_wavelet_block_size(fs, min(block_s, _BLOCK_MAX_SAMPLES / fs))


def _history_len(fs: float, block: int) -> int:
    n = math.ceil((4.0 * RR_CAP_S / 3.0 + _HISTORY_EXTRA_S) * fs) + block
    return QUALITY_BIN * math.ceil(n / QUALITY_BIN)


_WARM = False


def _warm_up() -> None:
    """Compile (or load from the numba cache) every kernel of the stream path, once per process.

    Done by the first :func:`ecg_stream_init` so that the first data block of a stream
    does not stall on just-in-time compilation (seconds without a warm cache).
    """
    global _WARM
    if _WARM:
        return
    _WARM = True
    fs = 360.0
    t = np.arange(round(12 * fs)) / fs
    x = 1.5 * np.exp(-0.5 * (((t + 0.4) % 0.8 - 0.4) / 0.012) ** 2)
    state = ecg_stream_init(fs, block_s=1.0)
    state, _ = ecg_stream_process(state, x)
    ecg_stream_flush(state)


def ecg_stream_init(
    fs: float, start_sample: int = 0, block_s: float = DEFAULT_BLOCK_S, window: BeatWindow = "rr"
) -> EcgStreamState:
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
    window : {"rr", "fixed"}
        Beat window (:mod:`streamdx_dsp.core.segmentation`): RR-based (seed 003) or
        the causal fixed span of 0.28 s before / 0.56 s after R.

    Returns
    -------
    EcgStreamState
    """
    if not math.isfinite(fs) or not (FS_MIN <= fs <= FS_MAX):
        raise ValueError(f"fs must be within {FS_MIN:g}-{FS_MAX:g} Hz, got {fs!r}")
    if not 0.1 <= block_s <= 10.0:
        raise ValueError("block_s must be within 0.1-10 s")
    fs = float(fs)
    fixed_pre, fixed_post = beat_window_span(window, fs)
    _warm_up()
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
        fixed_pre=fixed_pre,
        fixed_post=fixed_post,
    )


def _windows(
    h: SignalHistory, r: npt.NDArray[np.int64], pre: npt.NDArray[np.float64], post: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64]]:
    """Waveforms and quality statistics of beats at ``r`` with (capped) intervals ``pre``/``post``.

    Compiled equivalent of :func:`~streamdx_dsp.core.segmentation.ecg_segment_beats`
    plus :func:`~streamdx_dsp.core.quality.ecg_quality_windows` over whole bins.
    """
    waves: npt.NDArray[np.float32]
    stats: npt.NDArray[np.float64]
    waves, stats = beat_windows(h.ecg, h.start, h.bins, QUALITY_BIN, r, pre, post, SEGMENT_U, SEGMENT_V)
    return waves, stats


_BEAT_FIELDS = ("r_sample", "waveform", "rr_prev_s", "rr_next_s", "rr_local_mean_s", "rr_irregularity", "quality")
_QUALITY_FIELDS = ("flat", "saturated", "hf_noise", "baseline_excursion_mv", "score")
if tuple(f.name for f in fields(Beat)) != _BEAT_FIELDS or tuple(f.name for f in fields(BeatQuality)) != _QUALITY_FIELDS:
    raise RuntimeError("Beat/BeatQuality fields changed: update _new_beat/_new_quality")


def _new_beat(
    r_sample: int,
    waveform: npt.NDArray[np.float32],
    rr_prev_s: float,
    rr_next_s: float,
    rr_local_mean_s: float,
    rr_irregularity: float,
    quality: BeatQuality,
) -> Beat:
    """``Beat(...)`` without the frozen-dataclass ``__init__`` (one ``object.__setattr__`` per field).

    Equivalent because :class:`Beat` has neither ``__post_init__`` nor slots (the
    field lists are checked at import); faster, which matters at a few beats per block.
    """
    b = object.__new__(Beat)
    b.__dict__.update(
        r_sample=r_sample,
        waveform=waveform,
        rr_prev_s=rr_prev_s,
        rr_next_s=rr_next_s,
        rr_local_mean_s=rr_local_mean_s,
        rr_irregularity=rr_irregularity,
        quality=quality,
    )
    return b


def _new_quality(
    flat: bool, saturated: bool, hf_noise: float, baseline_excursion_mv: float, score: float
) -> BeatQuality:
    """``BeatQuality(...)``, fast path as :func:`_new_beat`."""
    q = object.__new__(BeatQuality)
    q.__dict__.update(
        flat=flat, saturated=saturated, hf_noise=hf_noise, baseline_excursion_mv=baseline_excursion_mv, score=score
    )
    return q


def _emit(state: EcgStreamState, rs: list[int], beats: list[Beat]) -> None:
    """Turn newly accepted R peaks into beats (numeric work compiled, vectorised over the beats)."""
    if not rs:
        return
    has_last = state.last_r >= 0
    chain = [state.last_r, *rs] if has_last else rs
    if len(chain) >= 2:
        fs = state.fs
        cap = RR_CAP_S * fs
        h = state.history
        frozen0 = has_last and state.frozen and chain[1] - chain[0] > cap
        emit, waves, values, rr_n = beat_rows(
            np.array(chain, dtype=np.int64),
            state.last_rr_prev if has_last else -1,
            frozen0,
            state.frozen_wave,
            state.frozen_stats,
            state.rr,
            state.rr_n,
            h.ecg,
            h.start,
            h.bins,
            QUALITY_BIN,
            SEGMENT_U,
            SEGMENT_V,
            cap,
            fs,
            state.fixed_pre,
            state.fixed_post,
        )
        state.rr_n = rr_n
        state.last_rr_prev = chain[-1] - chain[-2]
        waves.setflags(write=False)
        s0 = state.start_sample
        for k, (ok, row) in enumerate(zip(emit.tolist(), values.tolist(), strict=True)):
            if ok:
                beats.append(
                    _new_beat(
                        s0 + chain[k],
                        waves[k],
                        row[0],
                        row[1],
                        row[2],
                        row[3],
                        _new_quality(row[4] != 0.0, row[5] != 0.0, row[6], row[7], row[8]),
                    )
                )
    state.last_r = chain[-1]
    state.frozen = False


def _freeze(state: EcgStreamState) -> None:
    """Store the beat of ``last_r`` for RR_next > RR_CAP_S before the history forgets it."""
    if state.last_r < 0 or state.last_rr_prev <= 0 or state.frozen:
        return
    cap = RR_CAP_S * state.fs
    pre, post = (state.fixed_pre, state.fixed_post) if state.fixed_pre > 0.0 else (min(state.last_rr_prev, cap), cap)
    h = state.history
    if h.start + h.ecg.size >= state.last_r + math.ceil(2.0 * post / 3.0) + 1:
        w, st = _windows(
            h,
            np.array([state.last_r], dtype=np.int64),
            np.array([pre], dtype=np.float64),
            np.array([post], dtype=np.float64),
        )
        state.frozen_wave = w[0].copy()
        state.frozen_stats = st[0]
        state.frozen = True


def _process_blocks(state: EcgStreamState, buf: npt.NDArray[np.float32], beats: list[Beat], final: bool) -> None:
    """Process every complete block of the wavelet input ``buf`` and keep the remainder."""
    fs = state.fs
    sos = ecg_bandpass_sos(fs)
    params = ecg_rpeak_params(fs)
    lo, hi = dwt_filters()
    qb, qa = qrs_filter_ba(fs)
    ov = state.overlap
    block = state.block
    h = state.history
    det = state.detector
    span = block + 2 * ov
    flat_min, clip_min = quality_run_lengths(fs)
    pos = 0
    while buf.size - pos >= span:
        if det.learned:
            # common path: conditioning, features, candidates and decisions in one compiled call
            (
                det.feat,
                det.feat_start,
                det.cand_next,
                r_peaks,
                det.spk,
                det.npk,
                det.last_r,
                det.last_slope,
                det.rr_n,
                det.sb,
            ) = stream_block(
                buf, pos, block, ov, lo, hi, DWT_LEVEL, sos, state.bandpass.zi, 1, flat_min, clip_min,
                MIN_PTP_MV, QUALITY_BIN, h.ecg, h.bins, h.start + block, qb, qa, det.zi, det.f_tail,
                det.sq_tail, fs, det.feat, det.feat_start, det.cand_next, params.half_window, params.mwi,
                params.r_back, False, det.spk, det.npk, det.last_r, det.last_slope, det.rr, det.rr_n, det.sb,
                params.threshold_coef, params.refractory, params.twave, params.min_qrs_mv,
                params.searchback_rr, params.twave_slope, params.twave_height, params.decay, SEARCHBACK_POOL_MAX,
            )  # fmt: skip
            rs = r_peaks.tolist()
            h.start += block
        else:
            mwi, adv = condition_block(
                buf, pos, block, ov, lo, hi, DWT_LEVEL, sos, state.bandpass.zi, 1, flat_min, clip_min,
                MIN_PTP_MV, QUALITY_BIN, h.ecg, h.bins, qb, qa, det.zi, det.f_tail, det.sq_tail, fs,
            )  # fmt: skip
            h.start += block
            state.detector, rs = ecg_rpeaks_advance(det, mwi, adv, h.ecg, h.start, params)
        pos += block
        _emit(state, rs, beats)
        _freeze(state)
    if pos:
        buf = buf[pos:].copy()
        state.wavelet.buffer_start += pos
    state.wavelet.buffer = buf
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
    x = np.ascontiguousarray(x)  # one compiled specialisation for every input layout
    off = state.offset
    w = state.wavelet
    # finiteness check, offset removal and append to the wavelet input in one compiled pass
    buf, finite = ingest(w.buffer, x, off.value_mv if off.known else float(x[0]))
    if not finite:
        raise ValueError("chunk contains NaN or inf")
    if not off.known:
        off.value_mv = float(x[0])
        off.known = True
    state.n_in += x.size
    beats: list[Beat] = []
    if buf.size >= state.block + 2 * state.overlap:
        _process_blocks(state, buf, beats, final=False)
    else:
        w.buffer = buf
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
        buf = np.concatenate((state.wavelet.buffer, np.zeros(total, np.float32)))
        _process_blocks(state, buf, beats, final=True)
    state.finished = True
    return state, beats


def ecg_stream_horizon(state: EcgStreamState) -> int:
    """Absolute sample index before which the stream's R-peak decisions are final.

    No R peak before the returned index will ever be reported after this call (by
    :func:`ecg_stream_process` or :func:`ecg_stream_flush`): so when the last accepted R
    (``state.last_r``) lies ``d`` samples before it, the detector has *decided* that
    there was no QRS for ``d`` samples, which is what an asystole alarm needs while no
    beat arrives.

    The detector tests integrated-signal samples as QRS candidates up to
    ``detector.cand_next`` and locates a candidate's R within the ``r_back`` = 250 ms
    before it, so a future R lies at or after ``cand_next - r_back``. Two kinds of
    earlier candidates may still become R peaks and hold the horizon back: those queued
    during the learning period, and rejected candidates in the search-back pool that
    search-back could still pick (QRS-sized, outside the refractory period, not
    T-wave-like). Small deflections (< 0.05 mV peak-to-peak: noise on an isoelectric
    line) never become R peaks and do not hold it back. A finished stream is final
    everywhere.

    The delay behind the samples received (``start_sample + n_in``) is the wavelet
    stage's (``overlap`` .. ``block + overlap - 1`` samples, see the module docstring)
    plus the detector's look-ahead ``w`` (200 ms) plus ``r_back`` (250 ms), e.g.
    1.47-5.56 s at 250 Hz and 1.16-5.16 s at 360 Hz with the default block; it advances
    once per processed block.

    Parameters
    ----------
    state : EcgStreamState
        Current state (not modified).

    Returns
    -------
    int
        Absolute sample index in ``[start_sample, start_sample + n_in]``.
    """
    if state.finished:
        return state.start_sample + state.n_in
    det = state.detector
    p = ecg_rpeak_params(state.fs)
    h = det.cand_next - p.r_back
    if det.learned:
        pool = det.sb
        if pool.shape[0]:
            r = pool[:, 2]
            d = r - det.last_r
            live = (pool[:, 4] >= p.min_qrs_mv) & (d > p.refractory)
            if det.last_r >= 0:
                live &= (d > p.twave) | (pool[:, 3] >= p.twave_slope * det.last_slope)
            if live.any():
                h = min(h, int(r[live].min()))
    elif det.queue.shape[0]:
        live = det.queue[:, 4] >= p.min_qrs_mv
        if live.any():
            h = min(h, int(det.queue[live, 2].min()))
    return state.start_sample + min(max(h, 0), state.n_in)
