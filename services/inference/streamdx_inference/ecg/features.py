"""The one feature function of the ECG models, shared by training and serving.

Training (``streamdx train af|beats|quality``) and the inference worker both call
:func:`ecg_beat_features` on the DSP's beats of one stream in time order, carrying an
:class:`EcgContext` from call to call, so there is no train/serve skew: the same beat
window (the DSP's, recorded in the beat message and in each model's metadata), the same
scaling and the same RR features. The function is causal: a beat's features use only
that beat and the ones before it, except ``rr_next`` (scalar column
``SCALAR_RR_NEXT``), which only the beat-class model reads (see its model card for the
delay this implies).

Inputs of the models (float32):

``wave`` (n, 2, 300)
    Channel 0: the beat waveform minus its median, divided by the stream's running R
    amplitude (exponential average over ~20 beats), clipped to ±8. Channel 1: the
    stream's running template, the exponential average (~8 beats) of channel 0 up to and
    including this beat, in which the P waves of sinus rhythm add up and the
    uncorrelated f waves of AF do not; beats whose QRS deviates from it (ectopic beats)
    update it four times more slowly, and ``RESEED_AFTER`` = 4 deviating beats in a row
    replace it (the stream's shape changed, or the first beat was atypical: without this, a
    short recording whose first beat was odd kept a template unlike all its other beats and
    read as all ectopic beats).
``rr`` (n, 3, ``RR_CONTEXT``)
    The last ``RR_CONTEXT`` = 32 beats ending with this one (oldest first): channel 0
    ``log(RR_prev / median of the valid ones)``, channel 1 a validity mask (1 = known),
    channel 2 each beat's QRS deviation from the running template before it
    (``log1p`` of the RMS difference over samples 70-160 relative to the template's RMS).
    Irregularly irregular intervals of narrow, template-like beats (AF) are told apart from
    irregularity caused by ectopic beats (PVCs deviate from the template) and from regular
    patterns with premature beats (bigeminy, trigeminy).
``scalars`` (n, ``N_SCALARS``)
    See :data:`SCALAR_NAMES`.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx_inference.ecg._feature_kernels import beat_context_pass, center_beats

__all__ = [
    "AMP_ALPHA",
    "BEAT_SAMPLES",
    "CAUSAL_SCALARS",
    "N_SCALARS",
    "RESEED_AFTER",
    "RR_ALPHA",
    "RR_CONTEXT",
    "SCALAR_NAMES",
    "SCALAR_RR_NEXT",
    "TEMPLATE_ALPHA",
    "EcgBeatBatch",
    "EcgContext",
    "EcgFeatures",
    "ecg_beat_features",
    "ecg_beat_features_batch",
    "ecg_beat_features_many",
    "ecg_context_init",
]

RR_CONTEXT = 32
#: Smoothing of the stream's running mean RR (about 64 beats) and R amplitude (about 20 beats).
RR_ALPHA = 1.0 / 64.0
AMP_ALPHA = 1.0 / 20.0
TEMPLATE_ALPHA = 1.0 / 8.0
BEAT_SAMPLES = 300
_WAVE_CLIP = 8.0
#: Samples of the beat window compared with the template (around the QRS; R at 100).
_QRS_SPAN = (70, 160)
#: Samples of the beat window searched for the R amplitude (R at 100).
_R_SPAN = (95, 106)
_DEV_MAX = 10.0
#: QRS deviation (log1p of the relative RMS difference) above which a beat updates the
#: template at a quarter of the rate.
_DEV_GATE = math.log1p(0.5)
#: Consecutive beats at or above the deviation gate after which the template is replaced by the
#: current beat (a run of this many "ectopic" beats is the stream's morphology, or VT).
RESEED_AFTER = 4
_RR_MIN_S = 0.1
_RR_MAX_S = 10.0
SCALAR_NAMES = (
    "log_rr_prev_over_mean",
    "log_rr_prev_over_local8",
    "log_mean_rr_s",
    "rmssd_over_mean",
    "log_amp_over_stream",
    "context_fill",
    "q_flat",
    "q_saturated",
    "q_hf_noise",
    "q_log1p_baseline_mv",
    "q_score",
    "log_rr_next_over_mean",
    "log_rr_next_over_prev",
)
N_SCALARS = len(SCALAR_NAMES)
#: Columns that use the next RR interval (only the beat-class model reads them).
SCALAR_RR_NEXT = (11, 12)
#: Columns that depend only on this beat and earlier ones.
CAUSAL_SCALARS = tuple(i for i in range(N_SCALARS) if i not in SCALAR_RR_NEXT)


@dataclass
class EcgContext:
    """Per-stream context of the feature function (JSON-serialisable via :meth:`to_dict`).

    Treated as immutable: the feature function returns new contexts and never writes into
    the arrays of the ones it is given.

    Attributes
    ----------
    rr : ndarray of float64
        Last RR_prev intervals (s), oldest first, at most ``RR_CONTEXT``.
    rr_mean_s : float
        Running mean RR (s), 0 before the first beat.
    amp_mv : float
        Running R amplitude (mV), 0 before the first beat.
    template : ndarray of float32, shape (300,) or (0,)
        Running template of the normalised beats (empty before the first beat).
    dev : ndarray of float64
        QRS deviations of the last beats (aligned with ``rr``).
    odd : int
        Consecutive beats, up to the last one, whose QRS deviated from the template.
    """

    rr: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    rr_mean_s: float = 0.0
    amp_mv: float = 0.0
    template: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    dev: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(0))
    odd: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"rr": self.rr.tolist(), "rr_mean_s": float(self.rr_mean_s), "amp_mv": float(self.amp_mv),
                "template": base64.b64encode(self.template.astype("<f4").tobytes()).decode(),
                "dev": self.dev.tolist(), "odd": int(self.odd)}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EcgContext:
        """Validate and build a context from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            On a malformed or non-finite value.
        """
        rr = [float(v) for v in d.get("rr", [])][-RR_CONTEXT:]
        mean, amp = float(d.get("rr_mean_s", 0.0)), float(d.get("amp_mv", 0.0))
        if not all(math.isfinite(v) and v >= 0 for v in [*rr, mean, amp]):
            raise ValueError("ECG feature context holds a negative or non-finite value")
        try:
            tpl = np.frombuffer(base64.b64decode(str(d.get("template", "")), validate=True), dtype="<f4")
        except (ValueError, binascii.Error) as exc:
            raise ValueError(f"ECG feature context: bad template ({exc})") from exc
        if tpl.size not in (0, BEAT_SAMPLES) or not np.isfinite(tpl).all():
            raise ValueError("ECG feature context: template must be 300 finite values")
        dev = [float(v) for v in d.get("dev", [])][-RR_CONTEXT:]
        if not all(math.isfinite(v) and v >= 0 for v in dev):
            raise ValueError("ECG feature context: bad QRS deviation history")
        odd = d.get("odd", 0)
        if not isinstance(odd, int) or isinstance(odd, bool) or not 0 <= odd < RESEED_AFTER:
            raise ValueError(f"ECG feature context: odd must be an integer in [0, {RESEED_AFTER})")
        return cls(rr=np.array(rr, np.float64), rr_mean_s=mean, amp_mv=amp, template=tpl.astype(np.float32),
                   dev=np.array(dev, np.float64), odd=odd)  # fmt: skip


@dataclass(frozen=True)
class EcgFeatures:
    """Model inputs of a batch of beats (see the module docstring)."""

    wave: npt.NDArray[np.float32]
    rr: npt.NDArray[np.float32]
    scalars: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.wave.shape[0])

    def as_inputs(self) -> dict[str, npt.NDArray[np.float32]]:
        """The ONNX input feed (``wave``, ``rr``, ``scalars``)."""
        return {"wave": self.wave, "rr": self.rr, "scalars": self.scalars}

    def take(self, idx: npt.NDArray[np.intp] | npt.NDArray[np.int64] | slice) -> EcgFeatures:
        """The features of the beats ``idx``."""
        return EcgFeatures(self.wave[idx], self.rr[idx], self.scalars[idx])

    @staticmethod
    def concat(parts: list[EcgFeatures]) -> EcgFeatures:
        return EcgFeatures(
            np.concatenate([p.wave for p in parts]),
            np.concatenate([p.rr for p in parts]),
            np.concatenate([p.scalars for p in parts]),
        )


def ecg_context_init() -> EcgContext:
    """The context of a new stream (or after a gap / detector reset)."""
    return EcgContext()


_Item = tuple[EcgContext, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, "npt.ArrayLike | None"]


@dataclass(frozen=True)
class EcgBeatBatch:
    """The beats of several streams, concatenated stream after stream (the feature function's input).

    Attributes
    ----------
    counts : ndarray of int64, shape (s,)
        Beats of each stream, in order.
    waves : ndarray of float32, shape (n, 300)
        Beat waveforms (mV) as emitted by the DSP (R at index 100).
    rr_prev_s, rr_next_s : ndarray of float64, shape (n,)
        RR intervals before and after each beat (s); ``rr_next_s`` is NaN when unknown.
    quality : ndarray of float32, shape (n, 5)
        The DSP's ``flat, saturated, hf_noise, baseline_excursion_mv, score``.
    reset : ndarray of bool, shape (n,)
        Beats after which their stream restarted (the context is cleared before them).
    """

    counts: npt.NDArray[np.int64]
    waves: npt.NDArray[np.float32]
    rr_prev_s: npt.NDArray[np.float64]
    rr_next_s: npt.NDArray[np.float64]
    quality: npt.NDArray[np.float32]
    reset: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.rr_prev_s.size)

    @classmethod
    def of(
        cls, counts: npt.ArrayLike, waves: npt.ArrayLike, rr_prev_s: npt.ArrayLike, rr_next_s: npt.ArrayLike,
        quality: npt.ArrayLike, reset: npt.ArrayLike | None = None,
    ) -> EcgBeatBatch:  # fmt: skip
        """Validate and convert; raises ``ValueError`` on shapes that do not match, a non-finite
        value or a non-positive RR interval (``rr_next_s`` may be NaN: unknown)."""
        c = np.asarray(counts, dtype=np.int64).reshape(-1)
        w = np.asarray(waves, dtype=np.float32)
        rp = np.asarray(rr_prev_s, dtype=np.float64).reshape(-1)
        rn = np.asarray(rr_next_s, dtype=np.float64).reshape(-1)
        q = np.asarray(quality, dtype=np.float32)
        n = rp.size
        if w.ndim != 2 or w.shape != (n, BEAT_SAMPLES) or rn.size != n or q.shape != (n, 5):
            raise ValueError(f"expected waves (n, 300), rr (n,), quality (n, 5); got {w.shape}, {rp.shape}, {q.shape}")
        if (c < 0).any() or int(c.sum()) != n:
            raise ValueError(f"stream beat counts {c.tolist()[:8]} do not add up to {n} beats")
        # rr_next is NaN when unknown (fixed beat window: the beat left before the next R)
        if not (np.isfinite(w).all() and np.isfinite(q).all() and np.isfinite(rp).all() and not np.isinf(rn).any()):
            raise ValueError("beat features must be finite")
        if n and (rp.min() <= 0 or (rn <= 0).any()):
            raise ValueError("RR intervals must be positive")
        r = np.zeros(n, dtype=bool) if reset is None else np.asarray(reset, dtype=bool).reshape(-1)
        if r.size != n:
            raise ValueError("reset must have one flag per beat")
        return cls(c, w, rp, rn, q, r)

    @classmethod
    def concat(cls, items: Sequence[tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike, npt.ArrayLike,
                                          npt.ArrayLike | None]]) -> EcgBeatBatch:  # fmt: skip
        """The batch of several streams' ``(waves, rr_prev_s, rr_next_s, quality, reset)``."""
        parts = []
        for waves, rp, rn, q, reset in items:
            w = np.asarray(waves, dtype=np.float32)
            p = np.asarray(rp, dtype=np.float64).reshape(-1)
            parts.append((w, p, np.asarray(rn, dtype=np.float64).reshape(-1), np.asarray(q, dtype=np.float32),
                          np.zeros(p.size, bool) if reset is None else np.asarray(reset, dtype=bool).reshape(-1)))
        counts = [p[1].size for p in parts]
        for (w, p, rn, q, r) in parts:  # per stream: a mismatch is reported before concatenating
            if w.ndim != 2 or w.shape != (p.size, BEAT_SAMPLES) or rn.size != p.size or q.shape != (p.size, 5):
                raise ValueError(f"expected waves (n, 300), rr (n,), quality (n, 5); got {w.shape}, {p.shape}, "
                                 f"{q.shape}")  # fmt: skip
            if r.size != p.size:
                raise ValueError("reset must have one flag per beat")
        if not parts:
            return cls.of([], np.zeros((0, BEAT_SAMPLES)), [], [], np.zeros((0, 5)))
        return cls.of(counts, *(np.concatenate([p[k] for p in parts]) for k in range(5)))


def _empty_features(n: int = 0) -> EcgFeatures:
    return EcgFeatures(np.zeros((n, 2, BEAT_SAMPLES), np.float32), np.zeros((n, 3, RR_CONTEXT), np.float32),
                       np.zeros((n, N_SCALARS), np.float32))  # fmt: skip


def ecg_beat_features_batch(ctxs: Sequence[EcgContext], batch: EcgBeatBatch) -> tuple[list[EcgContext], EcgFeatures]:
    """The feature function over the beats of several streams at once.

    The beats' centring and the sequential part (running averages, RR and QRS-deviation
    histories, template) run as compiled loops (:mod:`._feature_kernels`, the same
    arithmetic as the numpy formulation they replaced, bit for bit); the rest is vectorised
    over the whole batch.

    Parameters
    ----------
    ctxs : sequence of EcgContext
        Each stream's context (one per entry of ``batch.counts``); not modified.
    batch : EcgBeatBatch
        The streams' beats, concatenated in the order of ``ctxs``.

    Returns
    -------
    ctxs : list of EcgContext
        Each stream's context after its last beat.
    features : EcgFeatures
        Model inputs, one row per beat of ``batch``, in its order.
    """
    counts = batch.counts
    n_streams = counts.size
    if n_streams != len(ctxs):
        raise ValueError(f"{len(ctxs)} contexts for {n_streams} streams")
    total = len(batch)
    if total == 0:
        return list(ctxs), _empty_features()
    rp = np.clip(batch.rr_prev_s, _RR_MIN_S, _RR_MAX_S)
    rn = np.clip(batch.rr_next_s, _RR_MIN_S, _RR_MAX_S)
    q = batch.quality.astype(np.float64)
    reset = batch.reset
    # the model input, written in place: channel 0 the normalised beat, channel 1 the template
    wave_in = np.empty((total, 2, BEAT_SAMPLES), np.float32)
    w = wave_in[:, 0]
    # w = beat - its median; amp = its largest |value| around R (samples 95-105), at least 1 µV
    amp = np.empty(total)
    center_beats(batch.waves, w, amp, _R_SPAN[0], _R_SPAN[1])

    # the streams' contexts as arrays: histories right-aligned (oldest first), NaN / 0 where unknown
    a_run = np.fromiter((c.amp_mv for c in ctxs), np.float64, n_streams)
    m_run = np.fromiter((c.rr_mean_s for c in ctxs), np.float64, n_streams)
    hist = np.full((n_streams, RR_CONTEXT), np.nan)
    devh = np.zeros((n_streams, RR_CONTEXT))
    n_rr = np.zeros(n_streams, np.int64)
    n_dev = np.zeros(n_streams, np.int64)
    tpl_run = np.zeros((n_streams, BEAT_SAMPLES), np.float32)
    has_tpl = np.zeros(n_streams, bool)
    n_odd = np.fromiter((c.odd for c in ctxs), np.int64, n_streams)
    for s, c in enumerate(ctxs):
        k = n_rr[s] = c.rr.size
        if k:
            hist[s, RR_CONTEXT - k :] = c.rr
        k = n_dev[s] = c.dev.size
        if k:
            devh[s, RR_CONTEXT - k :] = c.dev
        if c.template.size:
            tpl_run[s] = c.template
            has_tpl[s] = True

    scale = np.empty(total)
    mean_prev = np.empty(total)
    win = np.empty((total, RR_CONTEXT))
    dwin = np.empty((total, RR_CONTEXT))
    tpl = wave_in[:, 1]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # per stream, beat by beat: this beat normalised by the running amplitude before it, its QRS
    # compared with the template (QRS deviation), then the template updated; a beat unlike the
    # template (an ectopic beat) moves it only slowly, so frequent PVCs do not turn the template
    # into a PVC and make the normal beats look ectopic
    beat_context_pass(counts, starts, w, rp, amp, reset, a_run, m_run, hist, devh, n_rr, n_dev, tpl_run, has_tpl,
                      n_odd, tpl, scale, mean_prev, win, dwin, AMP_ALPHA, RR_ALPHA, TEMPLATE_ALPHA, _WAVE_CLIP,
                      _QRS_SPAN[0], _QRS_SPAN[1], _DEV_MAX, _DEV_GATE, RESEED_AFTER)  # fmt: skip

    # copies of the rows: a view would keep the whole batch's arrays alive as long as the context
    # of any of its streams (an idle stream's, for instance)
    m_list, a_list, nr_list, nd_list = m_run.tolist(), a_run.tolist(), n_rr.tolist(), n_dev.tolist()
    odd_list = n_odd.tolist()
    out_ctxs = [
        c if counts[s] == 0 else EcgContext(
            rr=hist[s, RR_CONTEXT - nr_list[s]:].copy(), rr_mean_s=m_list[s], amp_mv=a_list[s],
            template=tpl_run[s].copy(), dev=devh[s, RR_CONTEXT - nd_list[s]:].copy(), odd=odd_list[s])
        for s, c in enumerate(ctxs)
    ]  # fmt: skip

    valid = ~np.isnan(win)
    cnt = valid.sum(axis=1)
    srt = np.sort(win, axis=1)  # NaN sort last
    rows = np.arange(total)
    med = 0.5 * (srt[rows, (cnt - 1) // 2] + srt[rows, cnt // 2])
    seq = np.log(np.where(valid, win, med[:, None]) / med[:, None])
    zero = np.where(valid, win, 0.0)
    local8 = zero[:, -8:].sum(axis=1) / cnt.clip(max=8)
    d = np.diff(zero, axis=1)
    dv = valid[:, 1:] & valid[:, :-1]
    rmssd = np.sqrt(np.where(dv, d * d, 0.0).sum(axis=1) / np.maximum(dv.sum(axis=1), 1))
    rr_in = np.empty((total, 3, RR_CONTEXT), np.float32)
    rr_in[:, 0] = seq
    rr_in[:, 1] = valid
    rr_in[:, 2] = dwin
    sc = np.empty((total, N_SCALARS), dtype=np.float64)
    sc[:, 0] = np.log(rp / mean_prev)
    sc[:, 1] = np.log(rp / local8)
    sc[:, 2] = np.log(mean_prev)
    sc[:, 3] = rmssd / (zero.sum(axis=1) / cnt)
    sc[:, 4] = np.log(amp / scale)
    sc[:, 5] = cnt / RR_CONTEXT
    sc[:, 6] = q[:, 0]
    sc[:, 7] = q[:, 1]
    sc[:, 8] = np.clip(q[:, 2], 0.0, 1.0)
    sc[:, 9] = np.log1p(np.clip(q[:, 3], 0.0, 100.0))
    sc[:, 10] = np.clip(q[:, 4], 0.0, 1.0)
    known = np.isfinite(rn)
    sc[:, 11] = np.where(known, np.log(np.where(known, rn, 1.0) / mean_prev), 0.0)
    sc[:, 12] = np.where(known, np.log(np.where(known, rn, 1.0) / rp), 0.0)
    feats = EcgFeatures(wave_in, rr_in, sc.astype(np.float32))
    return out_ctxs, feats


def ecg_beat_features_many(items: Sequence[_Item]) -> tuple[list[EcgContext], list[EcgFeatures]]:
    """:func:`ecg_beat_features` for several streams in one vectorised pass.

    Parameters
    ----------
    items : sequence of tuple
        ``(ctx, waves, rr_prev_s, rr_next_s, quality, reset)`` per stream, as the
        arguments of :func:`ecg_beat_features`.

    Returns
    -------
    ctxs : list of EcgContext
        Each stream's context after its last beat.
    features : list of EcgFeatures
        Each stream's features, identical to calling :func:`ecg_beat_features` per stream.
    """
    batch = EcgBeatBatch.concat([it[1:] for it in items])
    ctxs, allf = ecg_beat_features_batch([it[0] for it in items], batch)
    if len(items) == 1:
        return ctxs, [allf]
    bounds = np.concatenate(([0], np.cumsum(batch.counts)))
    return ctxs, [allf.take(slice(int(bounds[i]), int(bounds[i + 1]))) for i in range(len(items))]


def ecg_beat_features(
    ctx: EcgContext,
    waves: npt.ArrayLike,
    rr_prev_s: npt.ArrayLike,
    rr_next_s: npt.ArrayLike,
    quality: npt.ArrayLike,
    reset: npt.ArrayLike | None = None,
) -> tuple[EcgContext, EcgFeatures]:
    """Model inputs of consecutive beats of one stream.

    Parameters
    ----------
    ctx : EcgContext
        Context after the previous beats of the stream (:func:`ecg_context_init` for a
        new stream); not modified.
    waves : array_like of float, shape (n, 300)
        Beat waveforms (mV) as emitted by the DSP (R at index 100).
    rr_prev_s, rr_next_s : array_like of float, shape (n,)
        RR intervals before and after each beat (s).
    quality : array_like of float, shape (n, 5)
        The DSP's quality statistics ``flat, saturated, hf_noise,
        baseline_excursion_mv, score``.
    reset : array_like of bool, shape (n,), optional
        Beats after which the stream restarted (sequence gap, detector reset): the context
        is cleared before them.

    Returns
    -------
    ctx : EcgContext
        Context after the last beat.
    features : EcgFeatures
        Model inputs, one row per beat, in order.

    Raises
    ------
    ValueError
        On shapes that do not match or non-finite / non-positive values.
    """
    ctxs, feats = ecg_beat_features_batch([ctx], EcgBeatBatch.concat([(waves, rr_prev_s, rr_next_s, quality, reset)]))
    return ctxs[0], feats
