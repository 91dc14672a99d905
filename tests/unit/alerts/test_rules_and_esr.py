"""Rule profiles from YAML (clear errors) and the ESR threshold rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamdx_alerts.engine.esr import EsrObs, esr_step
from streamdx_alerts.rules import AlertRules, RulesError, load_profiles


def test_default_profile_without_a_file() -> None:
    name, rules = load_profiles(None).for_stream("anything")
    assert name == "default" and rules == AlertRules()


def test_profiles_assigned_by_glob_first_match_wins(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(
        "profiles:\n"
        "  default: {}\n"
        "  icu:\n"
        "    tachycardia: {bpm: 130, extreme_bpm: 160}\n"
        "    pause: {rr_s: 2.0, severity: critical}\n"
        "  ward: {af: {min_duration_s: 60}}\n"
        "assign:\n"
        "  - {match: 'icu-*', profile: icu}\n"
        "  - {match: 'icu-*', profile: ward}\n"
        "  - {match: 'clinic-a:*', profile: ward}\n"
    )
    p = load_profiles(f)
    name, rules = p.for_stream("icu-7")
    assert name == "icu" and rules.tachycardia.bpm == 130 and rules.pause.severity == "critical"
    assert rules.bradycardia == AlertRules().bradycardia  # untouched rules keep their defaults
    assert p.for_stream("clinic-a:dev-1")[1].af.min_duration_s == 60
    assert p.for_stream("home-1")[0] == "default"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("profiles: {default: {tachycardia: {bpm: 120, extreme_bmp: 150}}}", "tachycardia.extreme_bmp"),
        ("profiles: {default: {pause: {rr_s: 'long'}}}", "pause.rr_s"),
        ("profiles: {default: {af: {min_duration_s: 1}}}", "af.min_duration_s"),
        ("profiles: {icu: {}}", "'default'"),
        ("profiles: {default: {}}\nassign: [{match: 'x*', profile: nope}]", "unknown profile 'nope'"),
        ("profiles: {default: {pause: {rr_s: 5}}}", "asystole.no_beat_s"),
        ("- just\n- a list", "top level must be a mapping"),
        ("profiles: {default: {severity: [", "not valid YAML"),
    ],
)
def test_invalid_rules_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    with pytest.raises(RulesError) as exc:
        load_profiles(f)
    assert fragment in str(exc.value) and str(f) in str(exc.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_profiles(tmp_path / "none.yaml")


def _obs(minute: int, h60: float, measured: float | None = None) -> EsrObs:
    return EsrObs(minute, 1.7e9 + 60 * minute, h60, h60 - 0.05, h60 + 0.05, measured, True)


def test_esr_raised_updated_resolved_once() -> None:
    rules = AlertRules(esr={"max_h60": 0.80})  # type: ignore[arg-type]
    state = None
    events = []
    for minute, h in [(10, 0.9), (11, 0.79), (12, 0.785), (13, 0.75), (14, 0.75), (14, 0.5), (60, 0.7)]:
        state, ch = esr_step(state, _obs(minute, h, 0.71 if minute == 60 else None), rules, tube_id="tube-1")
        events += ch
    assert [(e.state, e.seq) for e in events] == [("raised", 0), ("updated", 1), ("resolved", 2)]
    assert events[0].details["simulated"] is True and "[simulated]" in events[0].message
    assert events[2].details["measured_h60"] == 0.71


def test_esr_upper_bound_mode_waits_for_the_whole_interval() -> None:
    rules = AlertRules(esr={"max_h60": 0.8, "use": "h60_high"})  # type: ignore[arg-type]
    state, ch = esr_step(None, _obs(10, 0.78), rules, tube_id="t")
    assert ch == []
    state, ch = esr_step(state, _obs(11, 0.74), rules, tube_id="t")
    assert [c.state for c in ch] == ["raised"]
