"""Chunk-invariant streaming ECG pipeline: conditioning, R peaks, beats, features.

Per stream (one ECG lead at ``fs`` Hz, 125-1000 Hz)::

    raw chunk (mV) -> DC offset removal -> bounded-delay db4/level-5 wavelet shrinkage
    -> 0.5-50 Hz Butterworth band-pass (carried zi) -> Pan-Tompkins-family R-peak
    detector -> 300-sample beats + RR features + SQI

Every stage is a function of the sample position only (never of the chunk
boundaries): the same signal in any chunking gives the same beats. All state lives in
:class:`EcgStreamState`, a plain dataclass serialised by
:mod:`streamdx_dsp.core.state_codec`.

Latency, the time from a beat's R peak to its emission, in samples at any fs:

- wavelet shrinkage (:mod:`streamdx_dsp.core.wavelet_stream`): 29-44 samples
  (0.08-0.12 s at 360 Hz) between an input sample and its denoised value;
- detector: a candidate is decided ``w`` = 250 ms after its integrated peak, which
  lies at most 250 ms after R (the R search window); a beat missed at first can only be
  recovered by search-back at most 0.5 s after its R (``SEARCHBACK_AGE_S``);
- beat window: the fixed window (default) needs the conditioned signal up to
  R + 0.56 s, so a beat leaves at about R + 0.56 s + the wavelet delay, as soon as its
  window is complete and its detection is final. It carries ``rr_prev`` and RR features
  of the intervals up to it; its ``rr_next`` is unknown (``None``): the next beat's
  ``rr_prev`` is that interval. The RR-based window (seed 003, ``window="rr"``) waits for
  the next R peak instead (``R - RR_prev/3 .. R + 2 RR_next/3``).

``streamdx bench dsp`` measures the delays (``beat_delay_s``). State size
(``ecg_state_dumps``, noisy signal): 27 KB (fixed window) / 31 KB (RR window) at 360 Hz,
43 / 54 KB at 1000 Hz.

Implementation: the denoiser, the band-pass / quality / detector-feature stage and the
detector decisions are compiled numba kernels, called once per chunk (per 1024
conditioned samples for long chunks); Python builds the :class:`Beat` objects. The
kernels are compiled (or loaded from the on-disk cache) by the first
:func:`ecg_stream_init` of a process, so no data block waits for the compiler.

Beat rules:

- the first R peak of a stream is not emitted as a beat (it has no RR_prev); it is
  the RR_prev reference of the second;
- fixed window: a beat is emitted once the conditioned signal reaches the end of its
  window; at the end of a finite stream, R peaks whose window extends past the last
  sample are not emitted;
- RR window: a beat is emitted once the next R peak is known (RR_next); the last R
  peak of a finished stream is therefore not emitted either; the intervals of the
  window ``[R - RR_prev/3, R + 2 RR_next/3)`` are capped at ``RR_CAP_S`` = 2 s (pauses
  longer than 2 s give a window of -0.67 s..+1.33 s); the reported
  ``rr_prev_s``/``rr_next_s`` are never capped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from streamdx_dsp.core._kernels import beat_rows, beat_windows, condition_stream, fixed_window_emit, offset_input
from streamdx_dsp.core._stream_kernels import stream_step
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
from streamdx_dsp.core.wavelet_denoise import dwt_filters
from streamdx_dsp.core.wavelet_stream import (
    H2,
    L2,
    LAM_FAC,
    LOOK,
    PAD,
    R2,
    SIGMA_BLOCK,
    WaveletStream,
    ecg_wavelet_stream_v2,
    ecg_wavelet_stream_v2_init,
    hop_matrices,
)

__all__ = [
    "DEFAULT_WINDOW",
    "FS_MAX",
    "FS_MIN",
    "PENDING_MAX",
    "RR_CAP_S",
    "Beat",
    "EcgStreamState",
    "SignalHistory",
    "ecg_stream_flush",
    "ecg_stream_horizon",
    "ecg_stream_init",
    "ecg_stream_process",
    "ecg_stream_unemitted",
]

FS_MIN = 125.0
FS_MAX = 1000.0
RR_CAP_S = 2.0
#: Default beat window: the causal fixed span (beats leave ~0.6 s after their R peak).
DEFAULT_WINDOW: BeatWindow = "fixed"
#: Capacity of the fixed window's queue of R peaks waiting for their window (0.56 s after R):
#: R peaks lie a refractory period (0.2 s) apart, so at most about four wait at once.
PENDING_MAX = 16
#: Longest run of conditioned samples processed at once (long chunks are cut).
_SUB = 1024
#: Longest input piece of one fused step (its conditioned output stays below ``_SUB``).
_PIECE_IN = 960
#: dtype of the chunks the compiled step takes as they are (others are converted first).
_F64 = np.dtype(np.float64)
#: Input kept for the clipping test (s).
_RAIL_S = 1.0
#: History kept beyond 4/3 RR_CAP: detector look-back (R search 0.25 s + look-ahead 0.2 s)
#: and slack for search-back decisions.
_HISTORY_EXTRA_S = 1.2
#: History of a fixed-window stream beyond the last processed run (s).
_HISTORY_FIXED_S = 2.0


class Beat(NamedTuple):
    """One segmented beat: an immutable named tuple, compared by identity (``waveform`` is
    a read-only array; value equality of arrays is not a bool).

    A named tuple because a stream makes one per heartbeat and a tuple is the cheapest
    immutable record to create (a frozen dataclass cost about twice as much per beat).

    Attributes
    ----------
    r_sample : int
        Absolute sample index of the R peak since the stream start
        (``start_sample`` + index in the stream).
    waveform : ndarray of float32, shape (300,)
        Conditioned ECG (mV), R at index 100: fixed window, 100 samples over
        ``[R - 0.28 s, R)`` and 200 over ``[R, R + 0.56 s)``; RR window, over
        ``[R - RR_prev/3, R)`` and ``[R, R + 2 RR_next/3)``.
    rr_prev_s : float
        RR interval before the beat (s).
    rr_next_s : float or None
        RR interval after the beat (s); ``None`` for the fixed window (the beat leaves
        before the next R peak; the next beat's ``rr_prev_s`` is this interval).
    rr_local_mean_s : float
        Mean of the last 8 RR intervals ending with ``rr_next_s`` (RR window) or with
        ``rr_prev_s`` (fixed window) (s).
    rr_irregularity : float
        RMSSD / mean of those intervals (unitless).
    quality : BeatQuality
        Signal-quality index of the beat window.
    """

    r_sample: int
    waveform: npt.NDArray[np.float32]
    rr_prev_s: float
    rr_next_s: float | None
    rr_local_mean_s: float
    rr_irregularity: float
    quality: BeatQuality

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    def __hash__(self) -> int:
        return object.__hash__(self)


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
    n_in : int
        Number of samples received.
    finished : bool
        Set by :func:`ecg_stream_flush`; no more samples are accepted.
    offset, wavelet, bandpass, detector : stage states
    history : SignalHistory
        Recent conditioned signal.
    run : ndarray of float64, shape (2,)
        Value and length of the run of identical input samples ending at the last
        conditioned sample (flat-line and clipping tests).
    rail : ndarray of float32
        The input samples (offset removed) before the next conditioned one (clipping test).
    last_r : int
        RR window: last accepted R peak (absolute index in the stream, -1: none), not yet
        emitted. Fixed window: last R peak taken off ``pending`` (the RR_prev reference).
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
    pending : ndarray of int64, shape (PENDING_MAX,)
        Fixed window: accepted R peaks whose window is not complete yet, the first
        ``pending_n`` entries (a fixed-capacity buffer updated in place; the state codec
        stores only those).
    pending_n : int
        Number of valid ``pending`` entries.
    """

    fs: float
    start_sample: int
    n_in: int
    finished: bool
    offset: OffsetState
    wavelet: WaveletStream
    bandpass: BandpassState
    detector: RPeakState
    history: SignalHistory
    run: npt.NDArray[np.float64]
    rail: npt.NDArray[np.float32]
    last_r: int
    last_rr_prev: int
    frozen: bool
    frozen_wave: npt.NDArray[np.float32]
    frozen_stats: npt.NDArray[np.float64]
    rr: npt.NDArray[np.int64]
    rr_n: int
    fixed_pre: float = 0.0
    fixed_post: float = 0.0
    pending: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(PENDING_MAX, np.int64))
    pending_n: int = 0

    @property
    def window(self) -> BeatWindow:
        """The beat window of this stream."""
        return "fixed" if self.fixed_pre > 0.0 else "rr"


def _history_len(fs: float, window: BeatWindow) -> int:
    if window == "fixed":  # 0.28 s before R, decisions at most ~0.9 s after it
        n = math.ceil(_HISTORY_FIXED_S * fs) + _SUB
    else:
        n = math.ceil((4.0 * RR_CAP_S / 3.0 + _HISTORY_EXTRA_S) * fs) + _SUB
    return QUALITY_BIN * math.ceil(n / QUALITY_BIN)


_WARM = False


def _warm_up() -> None:
    """Compile (or load from the numba cache) every kernel of the stream path, once per process.

    Done by the first :func:`ecg_stream_init` of a process so that the first data block of
    a stream does not stall on just-in-time compilation (seconds without a warm cache).
    """
    global _WARM
    if _WARM:
        return
    _WARM = True
    fs = 360.0
    t = np.arange(round(12 * fs)) / fs
    x = 1.5 * np.exp(-0.5 * (((t + 0.4) % 0.8 - 0.4) / 0.012) ** 2)
    x[2000:2100] = x[2000]  # a flat run and a plateau exercise the quality kernels
    step = round(fs)
    for window in ("fixed", "rr"):
        state = ecg_stream_init(fs, window=window)
        # 1-s chunks: the learning path first, then the fused step of a learned detector
        for a in range(0, x.size, step):
            state, _ = ecg_stream_process(state, x[a : a + step])
        ecg_stream_flush(state)


def ecg_stream_init(fs: float, start_sample: int = 0, window: BeatWindow = DEFAULT_WINDOW) -> EcgStreamState:
    """Create the state of a new stream.

    Parameters
    ----------
    fs : float
        Sampling frequency (Hz), 125 to 1000.
    start_sample : int
        Absolute index of the first sample the stream will receive.
    window : {"fixed", "rr"}
        Beat window (:mod:`streamdx_dsp.core.segmentation`): the causal fixed span of
        0.28 s before / 0.56 s after R (default; beats leave without waiting for the next
        R) or the RR-based window of seed 003 (waits for the next R peak).

    Returns
    -------
    EcgStreamState
    """
    if not math.isfinite(fs) or not (FS_MIN <= fs <= FS_MAX):
        raise ValueError(f"fs must be within {FS_MIN:g}-{FS_MAX:g} Hz, got {fs!r}")
    fs = float(fs)
    fixed_pre, fixed_post = beat_window_span(window, fs)
    _warm_up()
    hlen = _history_len(fs, window)
    return EcgStreamState(
        fs=fs,
        start_sample=int(start_sample),
        n_in=0,
        finished=False,
        offset=ecg_offset_init(),
        wavelet=ecg_wavelet_stream_v2_init(),
        bandpass=ecg_bandpass_init(ecg_bandpass_sos(fs)),
        detector=ecg_rpeaks_init(ecg_rpeak_params(fs)),
        history=SignalHistory(
            start=-hlen,
            ecg=np.zeros(hlen, np.float32),
            bins=np.zeros((6, hlen // QUALITY_BIN), np.float32),
        ),
        run=np.zeros(2),
        rail=np.zeros(max(1, round(_RAIL_S * fs)), np.float32),
        last_r=-1,
        last_rr_prev=-1,
        frozen=False,
        frozen_wave=np.zeros(BEAT_LENGTH, np.float32),
        frozen_stats=np.zeros(7),
        rr=np.zeros(RR_LOCAL_N, np.int64),
        rr_n=0,
        fixed_pre=fixed_pre,
        fixed_post=fixed_post,
        pending=np.zeros(PENDING_MAX, np.int64),
        pending_n=0,
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


# The beats are built with ``tuple.__new__`` (positional, without the keyword-parsing
# ``__new__`` of the named tuples): the field order is checked here.
if Beat._fields != ("r_sample", "waveform", "rr_prev_s", "rr_next_s", "rr_local_mean_s", "rr_irregularity",
                    "quality") or BeatQuality._fields != ("flat", "saturated", "hf_noise", "baseline_excursion_mv",
                                                          "score"):  # fmt: skip
    raise RuntimeError("Beat/BeatQuality fields changed: update the tuple.__new__ calls of this module")
_new = tuple.__new__


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
        for k, (ok, (rr_prev, rr_next, rr_mean, rr_irr, flat, sat, hf, base, score)) in enumerate(
            zip(emit.tolist(), values.tolist(), strict=True)
        ):
            if ok:
                q = _new(BeatQuality, (flat != 0.0, sat != 0.0, hf, base, score))
                beats.append(_new(Beat, (s0 + chain[k], waves[k], rr_prev, rr_next, rr_mean, rr_irr, q)))
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


def _fixed_beats(
    state: EcgStreamState, waves: npt.NDArray[np.float32], rows: npt.NDArray[np.float64], beats: list[Beat]
) -> None:
    """Fixed-window :class:`Beat` objects from the rows of ``beat_rows_fixed`` (``rr_next_s`` unknown)."""
    waves.setflags(write=False)
    s0 = state.start_sample
    new = _new
    for k, (r, rr_prev, rr_mean, rr_irr, flat, sat, hf, base, score) in enumerate(rows.tolist()):
        q = new(BeatQuality, (flat != 0.0, sat != 0.0, hf, base, score))
        beats.append(new(Beat, (s0 + int(r), waves[k], rr_prev, None, rr_mean, rr_irr, q)))


def _emit_fixed(state: EcgStreamState, rs: list[int], beats: list[Beat]) -> None:
    """Fixed window: queue newly accepted R peaks and emit those whose window is complete."""
    h = state.history
    pending_n, prev_r, state.rr_n, waves, rows = fixed_window_emit(
        state.pending, state.pending_n, np.asarray(rs, dtype=np.int64), state.last_r, state.rr, state.rr_n, h.ecg,
        h.start, h.bins, QUALITY_BIN, SEGMENT_U, SEGMENT_V, state.fixed_pre, state.fixed_post, state.fs,
    )  # fmt: skip
    if pending_n < 0:
        raise RuntimeError(f"more than {PENDING_MAX} R peaks waiting for their beat window")
    state.pending_n = int(pending_n)
    state.last_r = int(prev_r)
    if rows.shape[0]:
        _fixed_beats(state, waves, rows, beats)


def _process(
    state: EcgStreamState,
    den: npt.NDArray[np.float64],
    raw: npt.NDArray[np.float64],
    ahead: npt.NDArray[np.float64],
    beats: list[Beat],
) -> None:
    """Condition, detect and segment newly denoised samples (in runs of at most ``_SUB``)."""
    fs = state.fs
    sos = ecg_bandpass_sos(fs)
    params = ecg_rpeak_params(fs)
    qb, qa = qrs_filter_ba(fs)
    h = state.history
    flat_min, clip_min = quality_run_lengths(fs)
    fixed = state.fixed_pre > 0.0
    n = den.size
    for a in range(0, n, _SUB):
        e = min(a + _SUB, n)
        ah = ahead if e == n else np.concatenate((raw[e : e + LOOK], ahead))[:LOOK]
        det = state.detector
        mwi, adv = condition_stream(
            den[a:e], raw[a:e], ah, state.run, state.rail, sos, state.bandpass.zi, qb, qa,
            det.zi, det.f_tail, det.sq_tail, fs, flat_min, clip_min, MIN_PTP_MV, QUALITY_BIN, h.ecg, h.bins,
        )  # fmt: skip
        h.start += e - a
        state.detector, rs = ecg_rpeaks_advance(det, mwi, adv, h.ecg, h.start, params)
        if fixed:
            _emit_fixed(state, rs, beats)
        else:
            _emit(state, rs, beats)
            _freeze(state)


@lru_cache(maxsize=32)
def _fused_params(fs: float, pre: float, post: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Constant arguments of :func:`stream_step` at ``fs`` with the window ``pre``/``post``
    (cached, read-only): ``(ipar, fpar)``, see its docstring for the layout."""
    p = ecg_rpeak_params(fs)
    flat_min, clip_min = quality_run_lengths(fs)
    lo, hi = dwt_filters()
    qb, qa = qrs_filter_ba(fs)
    sos = ecg_bandpass_sos(fs)
    hop_m, hop_s = hop_matrices()
    if lo.size != 8 or qb.size != 5 or qa.size != 5 or sos.shape != (2, 6) or hop_s.shape[1] != H2:
        raise RuntimeError("stream_step expects 8-tap wavelet filters, a 4th-order QRS filter and 2 band-pass sections")
    ipar = np.array(
        [H2, L2, R2, SIGMA_BLOCK, LOOK, QUALITY_BIN, PAD, flat_min, clip_min,
         p.half_window, p.mwi, p.r_back, p.refractory, p.twave, p.sb_extra, p.sb_step, p.sb_age, SEARCHBACK_POOL_MAX,
         SEGMENT_U.size, hop_m.shape[0], hop_m.shape[1], hop_s.shape[0], p.sb_cap],
        np.int64,
    )  # fmt: skip
    fpar = np.concatenate((
        [p.threshold_coef, p.min_qrs_mv, p.searchback_rr, p.twave_slope, p.twave_height, p.decay,
         LAM_FAC, fs, MIN_PTP_MV, pre, post],
        lo, hi, qb, qa, sos.ravel(), SEGMENT_U, SEGMENT_V, hop_m.ravel(), hop_s.ravel(),
    )).astype(np.float64)  # fmt: skip
    ipar.setflags(write=False)
    fpar.setflags(write=False)
    return ipar, fpar


def _step_general(state: EcgStreamState, x: npt.NDArray[np.float64], offset: float, beats: list[Beat]) -> bool:
    """The stages one by one for a piece of input (``x - offset``); False, changing nothing, on NaN or inf."""
    x, finite = offset_input(x, offset)
    if not finite:
        return False
    state.wavelet, den, raw, ahead = ecg_wavelet_stream_v2(state.wavelet, x)
    if den.size:
        _process(state, den, raw, ahead, beats)
    return True


def _step_fused(state: EcgStreamState, x: npt.NDArray[np.float64], offset: float, beats: list[Beat]) -> bool:
    """One compiled call for a piece of input once the detector has learned (see ``_stream_kernels``).

    Processes ``x - offset``; returns False, changing nothing, if ``x`` holds NaN or inf.
    The few pieces the fused step does not take (a detector feature buffer off its steady
    length) go through :func:`_step_general`, which gives the same output.
    """
    w = state.wavelet
    h = state.history
    det = state.detector
    fixed = state.fixed_pre > 0.0
    n_new, pending_n, prev_r, rr_bn, rows, waves = stream_step(
        x, offset, w.ring, w.cnt, w.sig, state.run, state.rail, state.bandpass.zi, h.ecg, h.bins, h.start, det.buf,
        det.feat, det.rr, det.sb, fixed, state.pending, state.pending_n, state.last_r, state.rr, state.rr_n,
        *_fused_params(state.fs, state.fixed_pre, state.fixed_post),
    )  # fmt: skip
    if n_new < 0:
        return n_new == -2 and _step_general(state, x, offset, beats)
    h.start += n_new
    if not fixed:
        _emit(state, [int(r) for r in rows[:, 0].tolist()], beats)
        _freeze(state)
        return True
    if pending_n < 0:
        raise RuntimeError(f"more than {PENDING_MAX} R peaks waiting for their beat window")
    state.pending_n = pending_n
    state.last_r = prev_r
    state.rr_n = rr_bn
    if rows.shape[0]:
        _fixed_beats(state, waves, rows, beats)
    return True


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
    x = chunk_mv
    if type(x) is not np.ndarray or x.dtype is not _F64:  # (cheap checks first)
        x = np.asarray(chunk_mv, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError("chunk must be one-dimensional")
    if x.size == 0:
        return state, []
    if not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    beats: list[Beat] = []
    if state.detector.learned and x.size <= _PIECE_IN:
        # one compiled call: finiteness check, offset removal and the whole pipeline
        if not _step_fused(state, x, state.offset.value_mv, beats):
            raise ValueError("chunk contains NaN or inf")
        state.n_in += x.size
        return state, beats
    off = state.offset
    offset = off.value_mv if off.known else float(x[0])
    # finiteness check and offset removal (rounded to float32) in one compiled pass
    x, finite = offset_input(x, offset)
    if not finite:
        raise ValueError("chunk contains NaN or inf")
    if not off.known:
        off.value_mv = offset
        off.known = True
    state.n_in += x.size
    if state.detector.learned:
        for a in range(0, x.size, _PIECE_IN):
            _step_fused(state, x[a : a + _PIECE_IN], 0.0, beats)
    else:
        _step_general(state, x, 0.0, beats)
    return state, beats


def ecg_stream_flush(state: EcgStreamState) -> tuple[EcgStreamState, list[Beat]]:
    """End a finite stream: process the buffered samples and emit the last beats.

    The signal is continued with zeros (0 mV after offset removal) until every received
    sample has been conditioned; the detector then decides its remaining candidates; R
    peaks found in the padding are discarded. Beats whose window lies within the received
    samples (fixed window) or whose next R peak is known (RR window) are emitted. The
    state is marked finished.

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
    n_in = state.n_in
    if n_in > 0:
        zeros = np.zeros(128)
        while int(state.wavelet.cnt[5]) - PAD < n_in:
            state.wavelet, den, raw, ahead = ecg_wavelet_stream_v2(state.wavelet, zeros)
            if den.size:
                _process(state, den, raw, ahead, beats)
        h = state.history
        params = ecg_rpeak_params(state.fs)
        state.detector, rs = ecg_rpeaks(state.detector, np.zeros(0), h.ecg, h.start, params, final=True)
        rs = [r for r in rs if r < n_in]
        if state.fixed_pre > 0.0:
            _emit_fixed(state, rs, beats)
            # windows are complete over the zero padding: keep only those within the signal
            need = math.ceil(2.0 * state.fixed_post / 3.0) + 1
            s0 = state.start_sample
            late = [b.r_sample - s0 for b in beats if b.r_sample - s0 + need > n_in]
            beats = [b for b in beats if b.r_sample - s0 + need <= n_in]
            left = sorted(late + [int(r) for r in state.pending[: state.pending_n] if r < n_in])
            state.pending = np.zeros(max(PENDING_MAX, len(left)), np.int64)
            state.pending[: len(left)] = left
            state.pending_n = len(left)
        else:
            _emit(state, rs, beats)
    state.finished = True
    return state, beats


def ecg_stream_unemitted(state: EcgStreamState) -> list[int]:
    """Accepted R peaks of a stream that did not (yet) become beats, absolute sample indices.

    The first R peak of the stream (it has no RR_prev) once it was taken as reference,
    R peaks waiting for their window (fixed window; after :func:`ecg_stream_flush`, those
    whose window would extend past the last sample) or for the next R peak (RR window).
    """
    s0 = state.start_sample
    out = [s0 + int(r) for r in state.pending[: state.pending_n]]
    if state.window == "rr":
        if state.last_r >= 0:
            out.append(s0 + state.last_r)
    elif state.rr_n == 0 and state.last_r >= 0:
        out.append(s0 + state.last_r)
    return sorted(out)


def ecg_stream_horizon(state: EcgStreamState) -> int:
    """Absolute sample index before which the stream's R-peak decisions are final.

    No R peak before the returned index will ever be reported after this call (by
    :func:`ecg_stream_process` or :func:`ecg_stream_flush`): so when the last accepted R
    (``state.detector.last_r``) lies ``d`` samples before it, the detector has *decided*
    that there was no QRS for ``d`` samples, which is what an asystole alarm needs while
    no beat arrives.

    The detector tests integrated-signal samples as QRS candidates up to
    ``detector.cand_next`` and locates a candidate's R within the ``r_back`` = 250 ms
    before it, so a future R lies at or after ``cand_next - r_back``. Two kinds of
    earlier candidates may still become R peaks and hold the horizon back: those queued
    during the learning period, and rejected candidates in the search-back pool that
    search-back could still pick (QRS-sized, outside the refractory period, not
    T-wave-like, R at most ``SEARCHBACK_AGE_S`` before ``cand_next``). Small deflections
    (< 0.05 mV peak-to-peak: noise on an isoelectric line) never become R peaks and do not
    hold it back. A finished stream is final everywhere.

    The horizon trails the samples received (``start_sample + n_in``) by the wavelet
    delay (29-44 samples) plus the detector's look-ahead ``w`` (250 ms) plus ``r_back``
    (250 ms): 0.58-0.62 s at 360 Hz; it advances with every chunk.

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
        pool = det.sb_live
        if pool.shape[0]:
            r = pool[:, 2]
            d = r - det.last_r
            live = (pool[:, 4] >= p.min_qrs_mv) & (d > p.refractory) & (det.cand_next - r <= p.sb_age)
            if det.last_r >= 0:
                live &= (d > p.twave) | (pool[:, 3] >= p.twave_slope * det.last_slope)
            if live.any():
                h = min(h, int(r[live].min()))
    elif det.queue.shape[0]:
        live = det.queue[:, 4] >= p.min_qrs_mv
        if live.any():
            h = min(h, int(det.queue[live, 2].min()))
    return state.start_sample + min(max(h, 0), state.n_in)
