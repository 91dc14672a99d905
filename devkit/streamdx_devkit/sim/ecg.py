"""Synthetic single-lead ECG with exact ground truth (pure core: numpy/scipy only).

:func:`ecg_synthesize` builds a record in four independent, seeded stages:

1. **Rhythm** (:mod:`streamdx_devkit.sim.ecg_rhythm`) — R-peak times and beat types from rhythm
   tiles: sinus with LF + respiratory HRV, isolated PVCs (full compensatory pause) and PACs
   (sinus reset), AF (independent gamma-distributed RR, CV ≈ 0.29), VT runs, pauses.
2. **Morphology** (:mod:`streamdx_devkit.sim.ecg_morphology`) — each beat is a sum of Gaussian
   P, Q, R, S, T waves (McSharry et al. 2003, ECGSYN) with RR-scaled timing; PVCs are wide,
   large and P-less; PACs have an inverted early P; AF has no P but 4–9 Hz f-waves.
3. **Noise** (:mod:`streamdx_devkit.sim.ecg_noise`) — baseline wander (0.1–0.5 Hz), band-limited
   EMG, white amplifier noise, optional powerline.
4. **Artefacts** — EMG/motion bursts and saturation (added, then everything is clipped at
   ±``full_scale_mv``), then flat-line (0 mV) and lead-off (pinned at the rail) episodes.

Each stage draws from its own child of ``numpy.random.SeedSequence(seed)``, so beat times do
not depend on ``fs`` or on the noise settings, and the same arguments always give the same
record.

Ground truth
------------
* ``r_samples`` — one per *visible* beat: the sample of the largest ``|amplitude|`` of the
  noise-free beat waveform within ±40 ms of the beat's R time (for normal beats this is the
  R-wave apex; for PVCs the apex of the main deflection, whatever its sign). On the
  noise-free signal (``noise=NoiseSpec.none()``, no artefacts) it is the local maximum of
  ``|signal|`` within ±1 sample even in AF (the f-waves shift it by < 1 ms); with noise,
  score a detector with the usual 150 ms window.
* A beat is **not annotated** when its QRS (R ± 60 ms) overlaps a flat/lead-off episode or
  touches the front-end rail (clipped by saturation). The heart keeps beating underneath, so
  the rhythm resumes in phase afterwards.
* ``beat_symbols`` use MIT-BIH codes (``N``, ``A``, ``V``); ``beat_aami`` the AAMI EC57
  classes (``N``, ``S``, ``V``, ``F``, ``Q``).
* ``rhythms`` — half-open sample intervals ``[start, end)``. Intervals labelled with
  :data:`TILE_LABELS` (``N``, ``AFIB``, ``VT``, ``BRADY``, ``TACHY``, ``PAUSE``, ``FLAT``) tile
  ``[0, n)`` without overlap. As in MIT-BIH, a rhythm starts at the R sample of its first
  beat; a sinus tile is ``BRADY`` below 60 bpm and ``TACHY`` above 100 bpm (its set rate); a
  ``PAUSE`` spans from the R peak before the pause to the R peak that ends it; ``FLAT`` covers a
  flat-line or lead-off episode exactly. ``NOISE`` intervals (:data:`OVERLAY_LABELS`) overlay
  the tiles: noise bursts, saturation and lead-off recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from streamdx.aami import AAMI_CLASSES, aami_class
from streamdx_devkit.sim.ecg_morphology import beat_waves, draw_morphology, render_fwaves, render_waves
from streamdx_devkit.sim.ecg_noise import Artefact, NoiseSpec, apply_artefacts, render_noise
from streamdx_devkit.sim.ecg_rhythm import RhythmSegment, beat_times
from streamdx_devkit.sim.ecg_scenarios import SCENARIO_NAMES, Scenario, named_scenario

__all__ = [
    "AAMI_CLASSES",
    "DEFAULT_GAIN",
    "FS_MAX",
    "FS_MIN",
    "OVERLAY_LABELS",
    "SCENARIO_NAMES",
    "TILE_LABELS",
    "Artefact",
    "NoiseSpec",
    "RhythmInterval",
    "RhythmSegment",
    "Scenario",
    "SyntheticEcg",
    "aami_class",
    "adc_to_mv",
    "ecg_synthesize",
    "mv_to_adc",
    "named_scenario",
]

FS_MIN = 125.0
FS_MAX = 1000.0
#: ADC counts per mV used by default (the MIT-BIH value).
DEFAULT_GAIN = 200.0
#: Labels of the intervals that tile a record.
TILE_LABELS: tuple[str, ...] = ("N", "AFIB", "VT", "BRADY", "TACHY", "PAUSE", "FLAT")
#: Labels of intervals that overlay the tiles.
OVERLAY_LABELS: tuple[str, ...] = ("NOISE",)

_R_SEARCH_S = 0.04
_QRS_HALF_S = 0.06
_MAX_DURATION_S = 24 * 3600.0


@dataclass(frozen=True)
class RhythmInterval:
    """A labelled half-open sample interval ``[start, end)``."""

    start: int
    end: int
    label: str

    @property
    def overlay(self) -> bool:
        """True for signal-quality overlays (``NOISE``), False for rhythm tiles."""
        return self.label in OVERLAY_LABELS

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"start", "end", "label"}``."""
        return {"start": self.start, "end": self.end, "label": self.label}


@dataclass(frozen=True, eq=False)
class SyntheticEcg:
    """A synthetic record and its ground truth.

    Attributes
    ----------
    fs : float
        Sampling frequency (Hz).
    signal_mv : numpy.ndarray
        float64 signal (mV), read-only.
    r_samples : numpy.ndarray
        int64 sample index of each visible beat's R peak, strictly increasing, read-only.
    beat_symbols : tuple of str
        MIT-BIH symbol of each annotated beat.
    beat_aami : tuple of str
        AAMI class of each annotated beat.
    rhythms : tuple of RhythmInterval
        Rhythm tiles and overlays, sorted by start sample.
    scenario : str
        Name of the scenario that produced the record.
    seed : int
        Seed that produced the record.
    lead : str
        Lead name (the morphology is MLII-like).
    """

    fs: float
    signal_mv: npt.NDArray[np.float64]
    r_samples: npt.NDArray[np.int64]
    beat_symbols: tuple[str, ...]
    beat_aami: tuple[str, ...]
    rhythms: tuple[RhythmInterval, ...]
    scenario: str = ""
    seed: int = 0
    lead: str = "MLII"

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.signal_mv.size)

    @property
    def duration_s(self) -> float:
        """Record length (s)."""
        return self.n_samples / self.fs

    def to_adc(self, gain: float = DEFAULT_GAIN, baseline: int = 0) -> npt.NDArray[np.int16]:
        """The signal as int16 ADC counts (see :func:`mv_to_adc`)."""
        return mv_to_adc(self.signal_mv, gain=gain, baseline=baseline)

    def truth_dict(self) -> dict[str, Any]:
        """JSON-ready ground truth (sample indices are relative to the first sample)."""
        return {
            "fs": self.fs,
            "n_samples": self.n_samples,
            "scenario": self.scenario,
            "seed": self.seed,
            "lead": self.lead,
            "r_samples": [int(r) for r in self.r_samples],
            "symbols": list(self.beat_symbols),
            "aami": list(self.beat_aami),
            "rhythms": [r.as_dict() for r in self.rhythms],
        }


def mv_to_adc(signal_mv: npt.ArrayLike, gain: float = DEFAULT_GAIN, baseline: int = 0) -> npt.NDArray[np.int16]:
    """Convert mV to int16 ADC counts: ``round(mV · gain) + baseline``, clipped to int16.

    Parameters
    ----------
    signal_mv : array_like
        Signal (mV).
    gain : float
        ADC counts per mV (> 0).
    baseline : int
        ADC count of 0 mV.

    Returns
    -------
    numpy.ndarray
        int16 counts; values beyond the int16 range saturate at -32768 / 32767.
    """
    if not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    x = np.asarray(signal_mv, dtype=np.float64)
    counts = np.round(x * gain) + baseline
    return np.clip(counts, -32768, 32767).astype(np.int16)


def adc_to_mv(adc: npt.ArrayLike, gain: float = DEFAULT_GAIN, baseline: int = 0) -> npt.NDArray[np.float64]:
    """Convert ADC counts to mV: ``(adc - baseline) / gain``.

    Parameters
    ----------
    adc : array_like of int
        ADC counts.
    gain : float
        ADC counts per mV (> 0).
    baseline : int
        ADC count of 0 mV.
    """
    if not np.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain!r}")
    return (np.asarray(adc, dtype=np.float64) - baseline) / gain


def _fill_segments(
    segments: tuple[RhythmSegment, ...], duration_s: float, heart_rate_bpm: float
) -> tuple[RhythmSegment, ...]:
    """Clip tiles to ``[0, duration_s)`` and fill gaps with sinus rhythm."""
    out: list[RhythmSegment] = []
    t = 0.0
    for seg in segments:
        s, e = max(seg.start_s, t), min(seg.end_s, duration_s)
        if e <= s:
            continue
        if s > t:
            out.append(RhythmSegment("sinus", t, s, heart_rate_bpm))
        out.append(replace(seg, start_s=s, end_s=e))
        t = e
    if t < duration_s:
        out.append(RhythmSegment("sinus", t, duration_s, heart_rate_bpm))
    return tuple(out)


def _segment_label(seg: RhythmSegment) -> str:
    if seg.kind == "af":
        return "AFIB"
    if seg.kind == "vt":
        return "VT"
    if seg.kind == "pause":
        return "PAUSE"
    if seg.rate_bpm < 60.0:
        return "BRADY"
    if seg.rate_bpm > 100.0:
        return "TACHY"
    return "N"


def _merge(tiles: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for s, e, lab in sorted(t for t in tiles if t[1] > t[0]):
        if out and out[-1][2] == lab and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e), lab)
        else:
            out.append((s, e, lab))
    return out


def _cut(tiles: list[tuple[int, int, str]], s: int, e: int, label: str) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for a, b, lab in tiles:
        if b <= s or a >= e:
            out.append((a, b, lab))
            continue
        if a < s:
            out.append((a, s, lab))
        if b > e:
            out.append((e, b, lab))
    out.append((s, e, label))
    return _merge(out)


def _tiles(
    n: int,
    segments: tuple[RhythmSegment, ...],
    t_s: npt.NDArray[np.float64],
    r_all: npt.NDArray[np.int64],
    seg_idx: npt.NDArray[np.int64],
) -> list[tuple[int, int, str]]:
    """Rhythm tiles from the beats (MIT-BIH convention: a rhythm starts at its first beat)."""
    if t_s.size == 0:
        return [(0, n, _segment_label(segments[0]))]
    pauses = [seg for seg in segments if seg.kind == "pause"]
    marks: list[tuple[int, str]] = [(0, _segment_label(segments[int(seg_idx[0])]))]

    def mark(sample: int, label: str) -> None:
        if marks[-1][0] == sample:
            marks[-1] = (sample, label)
        elif marks[-1][1] != label:
            marks.append((sample, label))

    for i in range(1, t_s.size):
        label = _segment_label(segments[int(seg_idx[i])])
        if any(t_s[i - 1] < p.start_s and t_s[i] >= p.end_s for p in pauses):
            mark(int(r_all[i - 1]), "PAUSE")
        mark(int(r_all[i]), label)
    bounds = [m[0] for m in marks[1:]] + [n]
    return _merge([(m[0], b, m[1]) for m, b in zip(marks, bounds, strict=True)])


def ecg_synthesize(
    duration_s: float,
    fs: float,
    *,
    seed: int,
    scenario: Scenario | str = "sinus",
    heart_rate_bpm: float = 70.0,
    noise: NoiseSpec | None = None,
    full_scale_mv: float = 5.0,
) -> SyntheticEcg:
    """Synthesize a single-lead ECG record with its ground truth.

    Parameters
    ----------
    duration_s : float
        Record length (s), 1 s … 24 h.
    fs : float
        Sampling frequency (Hz), 125 … 1000.
    seed : int
        Seed of every random draw (``numpy.random.SeedSequence``).
    scenario : Scenario or str
        A :class:`Scenario` or one of :data:`SCENARIO_NAMES` (see
        :mod:`streamdx_devkit.sim.ecg_scenarios`).
    heart_rate_bpm : float
        Mean sinus rate (beats/min), 30 … 200; for ``"af"`` the mean ventricular rate.
    noise : NoiseSpec or None
        Continuous noise; ``None`` uses the scenario's (mild by default, strong for
        ``"noisy"``); ``NoiseSpec.none()`` gives a noise-free signal (artefact episodes of the
        scenario still apply).
    full_scale_mv : float
        Front-end input range (mV): the signal is clipped to ±``full_scale_mv`` (default 5 mV,
        the range of the MIT-BIH recorders).

    Returns
    -------
    SyntheticEcg
        Signal (mV) and ground truth.

    Examples
    --------
    >>> ecg = ecg_synthesize(30.0, 250.0, seed=1, scenario="ectopy")
    >>> ecg.signal_mv.shape
    (7500,)
    """
    if not np.isfinite(duration_s) or not 1.0 <= duration_s <= _MAX_DURATION_S:
        raise ValueError(f"duration_s must be in [1, {_MAX_DURATION_S:.0f}] s, got {duration_s!r}")
    if not np.isfinite(fs) or not FS_MIN <= fs <= FS_MAX:
        raise ValueError(f"fs must be in [{FS_MIN:.0f}, {FS_MAX:.0f}] Hz, got {fs!r}")
    if not np.isfinite(heart_rate_bpm) or not 30.0 <= heart_rate_bpm <= 200.0:
        raise ValueError(f"heart_rate_bpm must be in [30, 200], got {heart_rate_bpm!r}")
    if not np.isfinite(full_scale_mv) or full_scale_mv <= 0:
        raise ValueError("full_scale_mv must be > 0")
    scen = named_scenario(scenario, duration_s, heart_rate_bpm) if isinstance(scenario, str) else scenario
    spec = scen.noise if noise is None else noise
    fs = float(fs)
    n = round(duration_s * fs)
    segments = _fill_segments(scen.segments, duration_s, heart_rate_bpm)

    ss = np.random.SeedSequence(seed)
    rng_rhythm, rng_morph, rng_noise, rng_art = (np.random.default_rng(s) for s in ss.spawn(4))

    # 1. rhythm
    tl = beat_times(segments, duration_s, rng_rhythm, pvc_per_min=scen.pvc_per_min, pac_per_min=scen.pac_per_min)
    # 2. morphology
    morph = draw_morphology(rng_morph)
    kinds = np.array([segments[int(i)].kind for i in tl.segment], dtype=object)
    has_p = np.asarray(kinds != "af", dtype=bool)
    qrs_scale = (1.0 + 0.06 * np.sin(2 * np.pi * tl.resp_hz * tl.t_s + tl.resp_phase)) * (
        1.0 + 0.03 * rng_morph.standard_normal(tl.t_s.size)
    )
    amp, centre, sigma, _ = beat_waves(morph, tl.t_s, tl.symbols, tl.rr_prev_s, has_p, qrs_scale)
    beats_mv = render_waves(n, fs, amp, centre, sigma)
    af_spans = [(round(s.start_s * fs), round(s.end_s * fs)) for s in segments if s.kind == "af"]
    fwaves = render_fwaves(n, fs, af_spans, rng_morph)

    # R peak = largest |beat waveform| near the nominal R time
    w = max(1, round(_R_SEARCH_S * fs))
    nominal = np.round(tl.t_s * fs).astype(np.int64)
    if nominal.size:
        win = np.clip(nominal[:, None] + np.arange(-w, w + 1)[None, :], 0, n - 1)
        r_all = win[np.arange(nominal.size), np.argmax(np.abs(beats_mv[win]), axis=1)]
    else:
        r_all = np.zeros(0, dtype=np.int64)

    # 3. noise, 4. artefacts
    x = beats_mv + fwaves + render_noise(n, fs, spec, rng_noise, resp_hz=tl.resp_hz)
    y, noisy_spans = apply_artefacts(x, fs, scen.artefacts, rng_art, full_scale_mv=full_scale_mv)

    # visibility of each beat
    q = round(_QRS_HALF_S * fs)
    dead = [
        (min(n, round(a.start_s * fs)), min(n, round(a.end_s * fs)))
        for a in scen.artefacts
        if a.kind in ("flat", "leadoff")
    ]
    dead = [(s, e) for s, e in dead if e > s]
    if r_all.size:
        qwin = np.clip(r_all[:, None] + np.arange(-q, q + 1)[None, :], 0, n - 1)
        visible = np.abs(y[qwin]).max(axis=1) < full_scale_mv * (1.0 - 1e-9)  # QRS not clipped
    else:
        visible = np.zeros(0, dtype=bool)
    lo, hi = np.clip(r_all - q, 0, n), np.clip(r_all + q + 1, 0, n)
    for s, e in dead:
        visible &= ~((hi > s) & (lo < e))

    # rhythm tiles and overlays
    tiles = _tiles(n, segments, tl.t_s, r_all, tl.segment)
    for s, e in dead:
        tiles = _cut(tiles, s, e, "FLAT")
    overlays = [(s, e, "NOISE") for s, e, _ in _merge([(s, e, "NOISE") for s, e in noisy_spans])]
    rhythms = tuple(
        RhythmInterval(int(s), int(e), lab) for s, e, lab in sorted(tiles + overlays, key=lambda t: (t[0], t[1]))
    )

    r_vis = np.ascontiguousarray(r_all[visible], dtype=np.int64)
    symbols = tuple(s for s, v in zip(tl.symbols, visible.tolist(), strict=True) if v)
    y.setflags(write=False)
    r_vis.setflags(write=False)
    return SyntheticEcg(
        fs=fs,
        signal_mv=y,
        r_samples=r_vis,
        beat_symbols=symbols,
        beat_aami=tuple(AAMI_CLASSES[s] for s in symbols),
        rhythms=rhythms,
        scenario=scen.name,
        seed=int(seed),
        lead="MLII",
    )
