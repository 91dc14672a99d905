"""Scenarios of the synthetic ECG: rhythm tiles, ectopy rates, artefacts and noise.

A :class:`Scenario` fixes everything about a record except its length, sampling rate and
seed. :func:`named_scenario` lays out the built-in scenarios for a given duration (episode
positions are fractions of the duration, so every name works for any length; episodes
shorter than a few seconds are what you get for very short records).

=========  =================================================================================
name       content
=========  =================================================================================
sinus      sinus rhythm at ``heart_rate_bpm`` throughout
af         atrial fibrillation throughout, mean ventricular rate ``heart_rate_bpm``
mixed      sinus 0–30 % → AF 30–70 % (rate 1.25 × HR) → sinus; 2 PVC/min and 2 PAC/min in sinus
ectopy     sinus with 6 PVC/min and 6 PAC/min (isolated)
brady      sinus → sinus bradycardia at 40 bpm over 25–75 % → sinus
tachy      sinus → sinus tachycardia at 140 bpm over 25–75 % → sinus
vt         sinus with 1 PVC/min and a VT run at 170 bpm from 40 % lasting 10 % (3–30 s)
pause      sinus with 3.0 s pauses at 1/3 and 2/3 of the record (one at 1/2 below 20 s)
asystole   sinus, then no QRS (and no P wave) for 6 s from 50 %, then sinus resumes; the
           baseline keeps its noise (it is not a flat line of identical samples); the truth
           labels it ``PAUSE`` from the last R before to the first R after it
noisy      sinus, strong wander/EMG/50 Hz, three EMG + motion bursts and one saturation
flat       sinus with a flat line (0 mV) over 40 % … 40 % + min(20 %, 20 s)
leadoff    sinus with lead-off (signal at the rail) at 30 % (10 %, ≤ 10 s) and 70 % (5 %, ≤ 5 s)
=========  =================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamdx_devkit.sim.ecg_noise import Artefact, NoiseSpec
from streamdx_devkit.sim.ecg_rhythm import RhythmSegment

__all__ = ["ASYSTOLE_S", "SCENARIO_NAMES", "Scenario", "named_scenario"]

#: Length of the QRS-free stretch of the ``asystole`` scenario (s).
ASYSTOLE_S = 6.0

SCENARIO_NAMES: tuple[str, ...] = (
    "sinus",
    "af",
    "mixed",
    "ectopy",
    "brady",
    "tachy",
    "vt",
    "pause",
    "asystole",
    "noisy",
    "flat",
    "leadoff",
)


@dataclass(frozen=True)
class Scenario:
    """Everything about a synthetic record except its length, fs and seed.

    Parameters
    ----------
    name : str
        Free-form name (reported in the ground truth).
    segments : tuple of RhythmSegment
        Sorted, non-overlapping rhythm tiles (s). Time not covered by any tile is sinus
        rhythm at the ``heart_rate_bpm`` given to the synthesizer.
    artefacts : tuple of Artefact
        Noise bursts, saturation, flat-line and lead-off episodes (s).
    pvc_per_min, pac_per_min : float
        Mean rates (1/min) of isolated PVCs and PACs inside sinus tiles.
    noise : NoiseSpec
        Continuous noise over the whole record (used unless the caller passes its own).
    """

    name: str
    segments: tuple[RhythmSegment, ...] = ()
    artefacts: tuple[Artefact, ...] = ()
    pvc_per_min: float = 0.0
    pac_per_min: float = 0.0
    noise: NoiseSpec = field(default_factory=NoiseSpec)

    def __post_init__(self) -> None:
        for a, b in zip(self.segments, self.segments[1:], strict=False):
            if b.start_s < a.end_s:
                raise ValueError("scenario segments must be sorted and must not overlap")
        if self.pvc_per_min < 0 or self.pac_per_min < 0:
            raise ValueError("ectopy rates must be >= 0")


def named_scenario(name: str, duration_s: float, heart_rate_bpm: float = 70.0) -> Scenario:
    """Build a built-in scenario for a record of ``duration_s`` seconds.

    Parameters
    ----------
    name : str
        One of :data:`SCENARIO_NAMES`.
    duration_s : float
        Record length (s).
    heart_rate_bpm : float
        Baseline rate (beats/min) of the sinus parts (and of AF in ``"af"``).

    Returns
    -------
    Scenario
    """
    D = float(duration_s)
    hr = float(heart_rate_bpm)

    def sinus(a: float, b: float, rate: float = hr) -> RhythmSegment:
        return RhythmSegment("sinus", a, b, rate)

    if name == "sinus":
        return Scenario(name, (sinus(0, D),))
    if name == "af":
        return Scenario(name, (RhythmSegment("af", 0, D, hr),))
    if name == "mixed":
        af_rate = min(300.0, 1.25 * hr)
        tiles = (sinus(0, 0.3 * D), RhythmSegment("af", 0.3 * D, 0.7 * D, af_rate), sinus(0.7 * D, D))
        return Scenario(name, tiles, pvc_per_min=2.0, pac_per_min=2.0)
    if name == "ectopy":
        return Scenario(name, (sinus(0, D),), pvc_per_min=6.0, pac_per_min=6.0)
    if name in ("brady", "tachy"):
        rate = 40.0 if name == "brady" else 140.0
        return Scenario(name, (sinus(0, 0.25 * D), sinus(0.25 * D, 0.75 * D, rate), sinus(0.75 * D, D)))
    if name == "vt":
        a = 0.4 * D
        b = min(D, a + min(30.0, max(3.0, 0.1 * D)))
        vt_tiles = [sinus(0, a), RhythmSegment("vt", a, b, 170.0)]
        if b < D:
            vt_tiles.append(sinus(b, D))
        return Scenario(name, tuple(vt_tiles), pvc_per_min=1.0)
    if name == "pause":
        starts = [D / 3.0, 2.0 * D / 3.0] if D >= 20.0 else [D / 2.0]
        pause_tiles: list[RhythmSegment] = []
        t = 0.0
        for s in starts:
            pause_tiles += [sinus(t, s), RhythmSegment("pause", s, min(D, s + 3.0))]
            t = min(D, s + 3.0)
        if t < D:
            pause_tiles.append(sinus(t, D))
        return Scenario(name, tuple(pause_tiles))
    if name == "asystole":
        a = 0.5 * D
        b = min(D, a + ASYSTOLE_S)
        asy_tiles = [sinus(0, a), RhythmSegment("pause", a, b)]
        if b < D:
            asy_tiles.append(sinus(b, D))
        return Scenario(name, tuple(asy_tiles))
    if name == "noisy":
        w = min(4.0, 0.1 * D)
        noisy_arts = (
            Artefact("noise", 0.15 * D, 0.15 * D + w, 0.3),
            Artefact("noise", 0.45 * D, 0.45 * D + w, 0.5),
            Artefact("saturation", 0.6 * D, 0.6 * D + min(2.0, 0.05 * D)),
            Artefact("noise", 0.8 * D, 0.8 * D + w, 0.2),
        )
        spec = NoiseSpec(baseline_wander_mv=0.4, emg_mv=0.05, white_mv=0.01, powerline_mv=0.05)
        return Scenario(name, (sinus(0, D),), noisy_arts, noise=spec)
    if name == "flat":
        a = 0.4 * D
        return Scenario(name, (sinus(0, D),), (Artefact("flat", a, a + min(0.2 * D, 20.0)),))
    if name == "leadoff":
        a1, a2 = 0.3 * D, 0.7 * D
        arts = (Artefact("leadoff", a1, a1 + min(0.1 * D, 10.0)), Artefact("leadoff", a2, a2 + min(0.05 * D, 5.0)))
        return Scenario(name, (sinus(0, D),), arts)
    raise ValueError(f"unknown scenario {name!r}; expected one of {SCENARIO_NAMES}")
