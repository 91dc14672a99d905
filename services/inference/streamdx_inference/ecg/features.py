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
    update it four times more slowly.
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

__all__ = [
    "AMP_ALPHA",
    "BEAT_SAMPLES",
    "CAUSAL_SCALARS",
    "N_SCALARS",
    "RR_ALPHA",
    "RR_CONTEXT",
    "SCALAR_NAMES",
    "SCALAR_RR_NEXT",
    "TEMPLATE_ALPHA",
    "EcgContext",
    "EcgFeatures",
    "ecg_beat_features",
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
_DEV_MAX = 10.0
#: QRS deviation (log1p of the relative RMS difference) above which a beat updates the
#: template at a quarter of the rate.
_DEV_GATE = math.log1p(0.5)
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

    Attributes
    ----------
    rr : list of float
        Last RR_prev intervals (s), oldest first, at most ``RR_CONTEXT``.
    rr_mean_s : float
        Running mean RR (s), 0 before the first beat.
    amp_mv : float
        Running R amplitude (mV), 0 before the first beat.
    template : ndarray of float32, shape (300,) or (0,)
        Running template of the normalised beats (empty before the first beat).
    dev : list of float
        QRS deviations of the last beats (aligned with ``rr``).
    """

    rr: list[float] = field(default_factory=list)
    rr_mean_s: float = 0.0
    amp_mv: float = 0.0
    template: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    dev: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rr": [float(v) for v in self.rr], "rr_mean_s": self.rr_mean_s, "amp_mv": self.amp_mv,
                "template": base64.b64encode(self.template.astype("<f4").tobytes()).decode(),
                "dev": [float(v) for v in self.dev]}  # fmt: skip

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
        return cls(rr=rr, rr_mean_s=mean, amp_mv=amp, template=tpl.astype(np.float32), dev=dev)


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


def _checked(
    waves: npt.ArrayLike, rr_prev_s: npt.ArrayLike, rr_next_s: npt.ArrayLike, quality: npt.ArrayLike,
    reset: npt.ArrayLike | None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float32],
           npt.NDArray[np.bool_]]:  # fmt: skip
    w = np.asarray(waves, dtype=np.float32)
    rp = np.asarray(rr_prev_s, dtype=np.float64).reshape(-1)
    rn = np.asarray(rr_next_s, dtype=np.float64).reshape(-1)
    q = np.asarray(quality, dtype=np.float32)
    n = rp.size
    if w.ndim != 2 or w.shape != (n, BEAT_SAMPLES) or rn.size != n or q.shape != (n, 5):
        raise ValueError(f"expected waves (n, 300), rr (n,), quality (n, 5); got {w.shape}, {rp.shape}, {q.shape}")
    # rr_next is NaN when unknown (fixed beat window: the beat left before the next R)
    if not (np.isfinite(w).all() and np.isfinite(q).all() and np.isfinite(rp).all() and not np.isinf(rn).any()):
        raise ValueError("beat features must be finite")
    if n and (rp.min() <= 0 or (rn <= 0).any()):
        raise ValueError("RR intervals must be positive")
    r = np.zeros(n, dtype=bool) if reset is None else np.asarray(reset, dtype=bool).reshape(-1)
    if r.size != n:
        raise ValueError("reset must have one flag per beat")
    return w, rp, rn, q, r


def _features_many(items: Sequence[_Item]) -> tuple[list[EcgContext], list[EcgFeatures]]:
    """The feature function over several streams at once (vectorised over all their beats).

    The sequential part (running averages, template, RR history) is a short loop per beat;
    everything else is one numpy expression over the beats of every stream.
    """
    checked = [_checked(*it[1:]) for it in items]
    sizes = [c[1].size for c in checked]
    total = sum(sizes)
    if total == 0:
        return [it[0] for it in items], [EcgFeatures(np.zeros((0, 2, BEAT_SAMPLES), np.float32),
                                                     np.zeros((0, 3, RR_CONTEXT), np.float32),
                                                     np.zeros((0, N_SCALARS), np.float32)) for _ in items]  # fmt: skip
    w = np.concatenate([c[0] for c in checked]) if len(checked) > 1 else checked[0][0].copy()
    rp = np.clip(np.concatenate([c[1] for c in checked]), _RR_MIN_S, _RR_MAX_S)
    rn = np.clip(np.concatenate([c[2] for c in checked]), _RR_MIN_S, _RR_MAX_S)
    q = np.concatenate([c[3] for c in checked]).astype(np.float64)
    w -= np.median(w, axis=1, keepdims=True)
    amp = np.maximum(np.abs(w[:, 95:106]).max(axis=1).astype(np.float64), 1e-3)
    amp_l, rp_l = amp.tolist(), rp.tolist()

    # sequential per stream: running amplitude and RR mean (values *before* each beat), RR windows
    scale = np.empty(total)
    mean_prev = np.empty(total)
    win = np.full((total, RR_CONTEXT), np.nan)
    ctxs: list[EcgContext] = []
    g = 0
    for (ctx, *_), c in zip(items, checked, strict=True):
        a_run, m_run, hist = ctx.amp_mv, ctx.rr_mean_s, list(ctx.rr)
        resets = c[4].tolist()
        for i in range(c[1].size):
            if resets[i]:
                a_run, m_run, hist = 0.0, 0.0, []
            av, rv = amp_l[g], rp_l[g]
            scale[g] = a_run if a_run > 0 else av
            mean_prev[g] = m_run if m_run > 0 else rv
            a_run = av if a_run <= 0 else a_run + AMP_ALPHA * (av - a_run)
            m_run = rv if m_run <= 0 else m_run + RR_ALPHA * (rv - m_run)
            hist.append(rv)
            if len(hist) > RR_CONTEXT:
                del hist[0]
            win[g, RR_CONTEXT - len(hist) :] = hist
            g += 1
        ctxs.append(EcgContext(rr=hist, rr_mean_s=m_run, amp_mv=a_run, template=ctx.template, dev=list(ctx.dev)))
    w /= scale[:, None].astype(np.float32)
    np.clip(w, -_WAVE_CLIP, _WAVE_CLIP, out=w)
    tpl = np.empty_like(w)
    dwin = np.zeros((total, RR_CONTEXT))
    a = np.float32(TEMPLATE_ALPHA)
    a_slow = np.float32(TEMPLATE_ALPHA / 4.0)
    qrs = slice(*_QRS_SPAN)
    g = 0
    for k, c in enumerate(checked):
        t = ctxs[k].template.astype(np.float32) if ctxs[k].template.size else None
        dh = ctxs[k].dev
        resets = c[4].tolist()
        for i in range(c[1].size):
            if t is None or resets[i]:
                if resets[i]:
                    dh = []
                t = w[g].copy()
            tq = t[qrs]
            diff = w[g, qrs] - tq
            dev = math.log1p(min(_DEV_MAX, math.sqrt(float(np.dot(diff, diff)) / (float(np.dot(tq, tq)) + 1e-6))))
            dh.append(dev)
            if len(dh) > RR_CONTEXT:
                del dh[0]
            dwin[g, RR_CONTEXT - len(dh) :] = dh
            # a beat unlike the template (an ectopic beat) moves it only slowly, so frequent PVCs do not
            # turn the template into a PVC and make the normal beats look ectopic
            t = t + (a if dev < _DEV_GATE else a_slow) * (w[g] - t)
            tpl[g] = t
            g += 1
        if t is not None:
            ctxs[k].template = t.copy()
        ctxs[k].dev = dh

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
    allf = EcgFeatures(np.stack((w, tpl), axis=1), np.stack((seq, valid, dwin), axis=1).astype(np.float32),
                       sc.astype(np.float32))  # fmt: skip
    if len(items) == 1:
        return ctxs, [allf]
    bounds = np.cumsum([0, *sizes])
    return ctxs, [allf.take(slice(int(bounds[i]), int(bounds[i + 1]))) for i in range(len(items))]


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
    return _features_many(items)


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
    ctxs, feats = _features_many([(ctx, waves, rr_prev_s, rr_next_s, quality, reset)])
    return ctxs[0], feats[0]
