"""Alert rules as configuration: YAML profiles, validated by pydantic, assigned to streams.

A profile holds every rule's thresholds, durations and severities. A file names profiles
and assigns them to streams by glob pattern (first match wins; a tenant is a stream-id
prefix such as ``"clinic-a:*"``); streams that match nothing get ``default``::

    profiles:
      default: {}                      # every rule at its built-in default
      icu:
        tachycardia: {bpm: 130, extreme_bpm: 160}
        pause: {rr_s: 2.0, severity: critical}
        af: {severity: critical}
    assign:
      - {match: "icu-*", profile: icu}

Unknown keys, wrong types and out-of-range values are errors that name the offending
key (:class:`RulesError`), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "AfRule",
    "AlertRules",
    "AsystoleRule",
    "DataGapRule",
    "EsrRule",
    "LeadOffRule",
    "PauseRule",
    "Profiles",
    "RateRule",
    "RulesError",
    "UnreadableRule",
    "VtRule",
    "load_profiles",
]

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity = "warning"
    suppress_s: float = Field(
        default=0.0, ge=0, le=86_400,
        description="After an alert of this kind resolves, new ones within this many seconds are not raised "
        "(counted in the next alert's details instead)",
    )
    escalate_after_s: float | None = Field(
        default=None, gt=0, le=86_400, description="Raise the severity to critical when still open after this"
    )


class AfRule(_Rule):
    """AF episode: raised once AF has lasted ``min_duration_s`` (clinical minimum 30 s)."""

    min_duration_s: float = Field(default=30.0, ge=5, le=3600, description="Sustained AF before raising (s)")
    offset_s: float = Field(default=15.0, ge=1, le=600,
                            description="Non-AF rhythm lasting this long ends the episode (hysteresis, s)")
    min_af_fraction: float = Field(default=0.7, gt=0, le=1,
                                   description="Share of readable beats labelled AF inside a raised episode's onset")
    burden_window_s: float = Field(default=3600.0, ge=60, le=7 * 86_400, description="Rolling AF-burden window (s)")


class RateRule(_Rule):
    """Bradycardia or tachycardia on the heart rate averaged over ``average_beats``."""

    bpm: float = Field(gt=10, lt=400, description="Threshold (beats/min)")
    extreme_bpm: float = Field(gt=10, lt=400, description="Extreme threshold: severity becomes critical")
    min_duration_s: float = Field(default=10.0, ge=0, le=3600, description="Condition held this long before raising")
    resolve_s: float = Field(default=10.0, ge=0, le=3600, description="Condition absent this long before resolving")
    hysteresis_bpm: float = Field(default=5.0, ge=0, le=50, description="Resolve only this far past the threshold")


class PauseRule(_Rule):
    """A pause: one RR interval longer than ``rr_s`` with readable signal throughout (not a data gap)."""

    rr_s: float = Field(default=2.5, gt=1.0, le=20.0, description="Shortest pause (s)")


class AsystoleRule(_Rule):
    """Asystole: no beat for ``no_beat_s`` with good signal (from the dsp's signal status)."""

    severity: Severity = "critical"
    no_beat_s: float = Field(default=4.0, ge=2.0, le=30.0, description="Longest time without a beat (s)")
    max_lost_fraction: float = Field(default=0.1, ge=0, le=1,
                                     description="Largest share of lost signal allowed inside the beat-less span")


class VtRule(_Rule):
    """Ventricular tachycardia: ``min_beats`` consecutive V beats faster than ``min_rate_bpm``."""

    severity: Severity = "critical"
    min_beats: int = Field(default=3, ge=3, le=100)
    min_rate_bpm: float = Field(default=100.0, gt=40, lt=400)
    sustained_s: float = Field(default=30.0, ge=5, le=600, description="A run this long is sustained VT")


class LeadOffRule(_Rule):
    """Lead off / flat line: lost signal lasting ``min_s`` (a technical alarm)."""

    min_s: float = Field(default=1.0, ge=0.1, le=60.0)
    resolve_s: float = Field(default=2.0, ge=0, le=60.0, description="Readable signal this long resolves it")


class UnreadableRule(_Rule):
    """Unreadable signal: beats failing the quality gate for ``min_s`` (a technical alarm)."""

    min_s: float = Field(default=10.0, ge=1, le=600)
    resolve_beats: int = Field(default=5, ge=1, le=100, description="Readable beats in a row that resolve it")


class DataGapRule(_Rule):
    """A data gap: chunks missing from a device (a technical event, raised and resolved at once)."""

    severity: Severity = "info"
    min_s: float = Field(default=1.0, ge=0, le=3600, description="Smallest gap reported (s)")


class EsrRule(_Rule):
    """ESR: the 60-minute forecast of the normalised red-cell column height at or below ``max_h60``.

    The height-to-ESR relation depends on the tube and the camera rig: calibrate ``max_h60`` per
    rig. The default 0.60 is where the simulated rig (``streamdx_devkit.sim.esr``: a 1 mL syringe)
    crosses a Westergren-equivalent ESR of about 30 mm/h (cohort medians: h60 0.73 at
    10–20 mm/h, 0.60 at 20–30, 0.53 at 30–40).
    """

    max_h60: float = Field(default=0.60, gt=0, lt=1.5,
                           description="Alert when the forecast height at 60 min is at or below this")
    use: Literal["h60", "h60_high"] = Field(
        default="h60", description="h60: the point forecast; h60_high: only when the whole interval is below")


class AlertRules(BaseModel):
    """One profile: every rule of the engines."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    average_beats: int = Field(default=8, ge=2, le=64, description="Beats in the averaged heart rate")
    af: AfRule = AfRule()
    bradycardia: RateRule = RateRule(bpm=50.0, extreme_bpm=40.0)
    tachycardia: RateRule = RateRule(bpm=120.0, extreme_bpm=150.0)
    pause: PauseRule = PauseRule()
    asystole: AsystoleRule = AsystoleRule()
    vt: VtRule = VtRule()
    lead_off: LeadOffRule = LeadOffRule(severity="warning")
    unreadable: UnreadableRule = UnreadableRule()
    data_gap: DataGapRule = DataGapRule()
    esr: EsrRule = EsrRule()

    @model_validator(mode="after")
    def _consistent(self) -> AlertRules:
        if self.bradycardia.extreme_bpm > self.bradycardia.bpm:
            raise ValueError("bradycardia.extreme_bpm must be <= bradycardia.bpm")
        if self.tachycardia.extreme_bpm < self.tachycardia.bpm:
            raise ValueError("tachycardia.extreme_bpm must be >= tachycardia.bpm")
        if self.bradycardia.bpm >= self.tachycardia.bpm:
            raise ValueError("bradycardia.bpm must be below tachycardia.bpm")
        if self.pause.rr_s >= self.asystole.no_beat_s:
            raise ValueError("pause.rr_s must be below asystole.no_beat_s (longer gaps are asystole)")
        return self


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str = Field(min_length=1, max_length=100, description="Glob over stream / tube ids")
    profile: str = Field(min_length=1, max_length=64)


class Profiles(BaseModel):
    """Named profiles and their assignment to streams."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profiles: dict[str, AlertRules] = Field(default_factory=lambda: {"default": AlertRules()})
    assign: list[Assignment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> Profiles:
        if "default" not in self.profiles:
            raise ValueError("profiles must define 'default' (used by streams no pattern matches)")
        for a in self.assign:
            if a.profile not in self.profiles:
                raise ValueError(f"assign: unknown profile {a.profile!r} (defined: {sorted(self.profiles)})")
        return self

    def for_stream(self, stream_id: str) -> tuple[str, AlertRules]:
        """The (name, rules) of the profile assigned to ``stream_id``."""
        for a in self.assign:
            if fnmatch.fnmatchcase(stream_id, a.match):
                return a.profile, self.profiles[a.profile]
        return "default", self.profiles["default"]


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file and the offending keys."""


def load_profiles(path: Path | None) -> Profiles:
    """Read and validate a YAML profiles file (``None``: the built-in default profile).

    Raises
    ------
    RulesError
        When the file is missing, not YAML, or fails validation (every error listed with its key path).
    """
    if path is None:
        return Profiles()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RulesError(f"{path}: cannot read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML ({exc})") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RulesError(f"{path}: the top level must be a mapping with 'profiles' and 'assign'")
    raw.setdefault("profiles", {"default": {}})
    try:
        return Profiles.model_validate(raw)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise RulesError(f"{path}: invalid alert rules\n" + "\n".join(lines)) from exc
