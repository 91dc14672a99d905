"""Beat timing of the synthetic ECG: which beat happens when.

A record's rhythm is a sequence of :class:`RhythmSegment` tiles. :func:`beat_times` walks
through them and emits one beat at a time (R-peak time, beat symbol, preceding RR):

* ``"sinus"`` — RR(t) = 60/rate · (1 + h(t) + ε) where h is heart-rate variability: three
  low-frequency (Mayer wave, ~0.1 Hz) and three high-frequency (respiratory sinus
  arrhythmia, at the respiration frequency) sinusoids with random phases, scaled so that
  their standard deviation is ``hrv_cv`` (default 3.5 %, shrunk at high rates), and ε is
  white jitter of 0.6 %. This is the bimodal LF/HF RR spectrum of McSharry et al. (2003)
  written as a sum of a few spectral lines. Isolated ectopic beats are inserted at
  ``pvc_per_min`` / ``pac_per_min``:

  - PVC (``"V"``): coupling 55–70 % of the sinus RR, followed by a *full compensatory pause*
    (the next sinus beat falls two sinus cycles after the last one);
  - PAC (``"A"``): coupling 60–78 %, *non-compensatory* (the sinus node is reset: the next
    beat comes one sinus RR after the PAC).

* ``"af"`` — RR drawn independently from a gamma distribution with mean 60/rate and CV 0.29,
  floored at 0.28 s (AV-node refractoriness): irregularly irregular, symbol ``"N"`` (the MIT-BIH
  convention for conducted beats in AF).
* ``"vt"`` — ventricular beats (``"V"``) at 60/rate · (1 + 2 % jitter).
* ``"pause"`` — no beat inside ``[start_s, end_s)``; the next beat falls at ``end_s`` (sinus
  arrest / block).

Not modelled: AV block patterns, atrial flutter, escape-rhythm morphology, couplets and
bigeminy, PVCs during AF, rate-dependent aberrancy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "SEGMENT_KINDS",
    "BeatTimeline",
    "RhythmSegment",
    "SegmentKind",
    "beat_times",
]

SegmentKind = Literal["sinus", "af", "vt", "pause"]
SEGMENT_KINDS: tuple[str, ...] = ("sinus", "af", "vt", "pause")

_AF_GAMMA_SHAPE = 12.0  # CV = 1/sqrt(12) ≈ 0.29
_AF_MIN_RR_S = 0.28
_SINUS_JITTER = 0.006
_FIRST_BEAT_S = 0.2
_LAST_BEAT_MARGIN_S = 0.1


@dataclass(frozen=True)
class RhythmSegment:
    """One rhythm tile ``[start_s, end_s)``.

    Parameters
    ----------
    kind : {"sinus", "af", "vt", "pause"}
        Rhythm generator used inside the tile.
    start_s, end_s : float
        Bounds (s).
    rate_bpm : float
        Mean rate (beats/min) of sinus, AF (ventricular response) or VT; unused for pauses.
    """

    kind: SegmentKind
    start_s: float
    end_s: float
    rate_bpm: float = 70.0

    def __post_init__(self) -> None:
        if self.kind not in SEGMENT_KINDS:
            raise ValueError(f"unknown rhythm kind {self.kind!r}; expected one of {SEGMENT_KINDS}")
        if not (np.isfinite(self.start_s) and np.isfinite(self.end_s)) or self.end_s <= self.start_s:
            raise ValueError(f"segment needs start_s < end_s, got {self.start_s!r}, {self.end_s!r}")
        if self.start_s < 0:
            raise ValueError("segment start_s must be >= 0")
        if not np.isfinite(self.rate_bpm) or not 20.0 <= self.rate_bpm <= 300.0:
            raise ValueError(f"rate_bpm must be in [20, 300], got {self.rate_bpm!r}")


@dataclass(frozen=True)
class BeatTimeline:
    """Beats emitted by :func:`beat_times` (all of them, visible or not).

    Attributes
    ----------
    t_s : numpy.ndarray
        R-peak times (s), strictly increasing.
    symbols : tuple of str
        MIT-BIH beat symbols (``"N"``, ``"V"``, ``"A"``).
    rr_prev_s : numpy.ndarray
        Interval (s) from the previous beat (the nominal RR for the first beat).
    segment : numpy.ndarray
        Index of the :class:`RhythmSegment` each beat belongs to.
    resp_hz : float
        Respiration frequency (Hz) used for RSA (shared with amplitude modulation and wander).
    resp_phase : float
        Respiration phase (rad) at t = 0.
    """

    t_s: npt.NDArray[np.float64]
    symbols: tuple[str, ...]
    rr_prev_s: npt.NDArray[np.float64]
    segment: npt.NDArray[np.int64]
    resp_hz: float
    resp_phase: float


class _Hrv:
    """Relative RR modulation h(t): LF + HF sinusoids with std ``cv``."""

    def __init__(self, rng: np.random.Generator, cv: float, resp_hz: float, resp_phase: float) -> None:
        lf_f = rng.normal(0.1, 0.015, 3).clip(0.04, 0.15)
        hf_f = np.array([resp_hz, *rng.normal(resp_hz, 0.01, 2).clip(0.15, 0.45)])
        lf_a = rng.rayleigh(1.0, 3)
        hf_a = rng.rayleigh(1.0, 3) * 1.2
        hf_a[0] += 1.0  # the respiration line dominates the HF band
        self.f = np.concatenate([lf_f, hf_f])
        self.a = np.concatenate([lf_a, hf_a])
        self.ph = np.concatenate([rng.uniform(0, 2 * np.pi, 3), [resp_phase], rng.uniform(0, 2 * np.pi, 2)])
        self.a *= cv / np.sqrt(np.sum(self.a**2) / 2.0)

    def __call__(self, t: float) -> float:
        return float(np.sum(self.a * np.sin(2 * np.pi * self.f * t + self.ph)))


def _segment_at(segments: tuple[RhythmSegment, ...], t: float) -> int:
    for i, seg in enumerate(segments):
        if seg.start_s <= t < seg.end_s:
            return i
    return len(segments) - 1


def beat_times(
    segments: tuple[RhythmSegment, ...],
    duration_s: float,
    rng: np.random.Generator,
    *,
    pvc_per_min: float = 0.0,
    pac_per_min: float = 0.0,
    hrv_cv: float = 0.035,
) -> BeatTimeline:
    """Generate the beat sequence of a record.

    Parameters
    ----------
    segments : tuple of RhythmSegment
        Sorted, non-overlapping tiles covering ``[0, duration_s)``.
    duration_s : float
        Record length (s). Beats are placed in ``[0.2, duration_s - 0.1]`` s.
    rng : numpy.random.Generator
        Source of randomness.
    pvc_per_min, pac_per_min : float
        Mean rates (per minute) of isolated PVCs and PACs inside sinus tiles.
    hrv_cv : float
        Standard deviation of the HRV modulation as a fraction of the RR at 70 bpm; it is
        scaled by min(1, 70/rate) at faster rates.

    Returns
    -------
    BeatTimeline
        All beats, including those that artefacts will later hide.
    """
    if not segments:
        raise ValueError("need at least one rhythm segment")
    resp_hz = float(rng.uniform(0.2, 0.33))
    resp_phase = float(rng.uniform(0, 2 * np.pi))
    hrv = _Hrv(rng, hrv_cv, resp_hz, resp_phase)

    def sinus_rr(seg: RhythmSegment, t: float) -> float:
        scale = min(1.0, 70.0 / seg.rate_bpm)
        mod = scale * hrv(t) + _SINUS_JITTER * float(rng.standard_normal())
        return 60.0 / seg.rate_bpm * max(0.5, 1.0 + mod)

    t_out: list[float] = []
    sym_out: list[str] = []
    rr_out: list[float] = []
    seg_out: list[int] = []
    last_t: float | None = None
    t_end = duration_s - _LAST_BEAT_MARGIN_S

    first_seg = segments[_segment_at(segments, _FIRST_BEAT_S)]
    t = _FIRST_BEAT_S + float(rng.uniform(0, 1)) * 60.0 / first_seg.rate_bpm
    max_beats = int(duration_s * 300.0 / 60.0) + 10  # a hard bound on the loop
    while t <= t_end and len(t_out) < max_beats:
        i = _segment_at(segments, t)
        seg = segments[i]
        if seg.kind == "pause":
            t = seg.end_s
            continue
        symbol = "V" if seg.kind == "vt" else "N"
        rr_prev = t - last_t if last_t is not None else 60.0 / seg.rate_bpm
        t_out.append(t)
        sym_out.append(symbol)
        rr_out.append(rr_prev)
        seg_out.append(i)
        last_t = t
        if seg.kind == "af":
            mean_rr = 60.0 / seg.rate_bpm
            rr = max(_AF_MIN_RR_S, mean_rr * float(rng.gamma(_AF_GAMMA_SHAPE, 1.0 / _AF_GAMMA_SHAPE)))
            t = t + rr
            continue
        if seg.kind == "vt":
            t = t + 60.0 / seg.rate_bpm * (1.0 + 0.02 * float(rng.standard_normal()))
            continue
        # sinus: maybe insert one isolated ectopic beat before the next sinus beat
        rr = sinus_rr(seg, t)
        u = float(rng.random())
        p_pvc = pvc_per_min * rr / 60.0
        p_pac = pac_per_min * rr / 60.0
        ectopic_ok = len(sym_out) >= 2 and sym_out[-2] == "N"
        if ectopic_ok and u < p_pvc:
            te = t + rr * float(rng.uniform(0.55, 0.70))
            if te <= t_end and _segment_at(segments, te) == i:
                t_out.append(te)
                sym_out.append("V")
                rr_out.append(te - t)
                seg_out.append(i)
                last_t = te
                t = t + 2.0 * rr  # full compensatory pause
                continue
        elif ectopic_ok and u < p_pvc + p_pac:
            te = t + rr * float(rng.uniform(0.60, 0.78))
            if te <= t_end and _segment_at(segments, te) == i:
                t_out.append(te)
                sym_out.append("A")
                rr_out.append(te - t)
                seg_out.append(i)
                last_t = te
                t = te + sinus_rr(seg, te)  # sinus node reset
                continue
        t = t + rr
    return BeatTimeline(
        t_s=np.asarray(t_out, dtype=np.float64),
        symbols=tuple(sym_out),
        rr_prev_s=np.asarray(rr_out, dtype=np.float64),
        segment=np.asarray(seg_out, dtype=np.int64),
        resp_hz=resp_hz,
        resp_phase=resp_phase,
    )
