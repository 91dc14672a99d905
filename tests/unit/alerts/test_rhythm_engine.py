"""Rhythm engine: tables of beat sequences with known alarms, and chunk invariance."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamdx_alerts.engine.lifecycle import AlertChange
from streamdx_alerts.engine.rhythm import RhythmBeat, RhythmState, rhythm_finish, rhythm_step
from streamdx_alerts.engine.summary import holter_summary
from streamdx_alerts.rules import AfRule, AlertRules, RateRule

T0 = 1.7e9
RULES = AlertRules()


class Builder:
    """Beats with given RR, class and AF flag, in order."""

    def __init__(self, seed: int = 0) -> None:
        self.t = T0
        self.beats: list[RhythmBeat] = []
        self.rng = np.random.default_rng(seed)

    def add(self, n: int, rr: float | tuple[float, float], *, af: bool = False, cls: str = "N",
            readable: bool = True, after_gap: bool = False, lost: float = 0.0) -> Builder:
        for k in range(n):
            r = float(self.rng.uniform(*rr)) if isinstance(rr, tuple) else rr
            self.t += r
            ok = readable
            self.beats.append(RhythmBeat(len(self.beats), self.t, r, ok, af if ok else None, cls if ok else None,
                                         after_gap and k == 0, lost if k == 0 else 0.0))
        return self


def run(beats: list[RhythmBeat], rules: AlertRules = RULES) -> tuple[RhythmState, list[AlertChange]]:
    return rhythm_step(None, beats, rules, stream_id="s1")


def kinds(changes: list[AlertChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.state) for c in changes]


def test_sinus_raises_nothing() -> None:
    state, changes = run(Builder().add(600, (0.78, 0.86)).beats)
    assert changes == []
    assert state.hr_avg is not None and 68 < state.hr_avg < 78
    assert state.af_burden() == 0.0


def test_af_episode_raised_after_30_s_and_resolved_after_offset() -> None:
    b = Builder().add(60, 0.8).add(150, (0.4, 1.0), af=True).add(60, 0.8)
    state, changes = run(b.beats)
    assert kinds(changes) == [("af_episode", "raised"), ("af_episode", "resolved")]
    raised, resolved = changes
    af_start = b.beats[60].t - b.beats[60].rr_prev_s
    af_end = b.beats[209].t
    assert abs(raised.started_at - af_start) < 1e-6
    assert raised.criterion_at - raised.started_at >= 30.0
    assert raised.criterion_at - raised.started_at < 31.5  # raised at the first beat past 30 s
    assert resolved.ended_at == af_end and resolved.alert_id == raised.alert_id and resolved.seq == 1
    assert state.af_episodes == [[af_start, af_end]]
    assert 0.4 < (state.af_burden() or 0) < 0.7


def test_short_af_run_is_not_an_episode() -> None:
    _, changes = run(Builder().add(60, 0.8).add(30, (0.4, 1.0), af=True).add(60, 0.8).beats)
    assert changes == []


def test_af_with_a_few_non_af_beats_stays_one_episode() -> None:
    b = Builder().add(20, 0.8).add(60, (0.4, 1.0), af=True).add(5, 0.8).add(60, (0.4, 1.0), af=True).add(40, 0.8)
    _, changes = run(b.beats)
    assert kinds(changes) == [("af_episode", "raised"), ("af_episode", "resolved")]


def test_vt_run_raised_once_with_its_length() -> None:
    _, changes = run(Builder().add(30, 0.8).add(6, 0.35, cls="V").add(30, 0.8).beats)
    assert kinds(changes) == [("vt_run", "raised"), ("vt_run", "resolved")]
    assert changes[0].severity == "critical" and changes[1].details["beats"] == 6


def test_slow_ventricular_run_and_couplet_are_not_vt() -> None:
    _, changes = run(Builder().add(30, 0.8).add(5, 0.9, cls="V").add(30, 0.8).add(2, 0.35, cls="V")
                     .add(10, 0.8).beats)
    assert changes == []


def test_sustained_vt_is_updated() -> None:
    _, changes = run(Builder().add(30, 0.8).add(100, 0.35, cls="V").add(10, 0.8).beats)
    assert kinds(changes) == [("vt_run", "raised"), ("vt_run", "updated"), ("vt_run", "resolved")]
    assert changes[1].details["sustained"] is True
    assert not any(c.kind == "tachycardia" for c in changes)  # VT supersedes tachycardia


def test_pause_but_not_across_a_gap_or_lost_signal() -> None:
    _, changes = run(Builder().add(20, 0.8).add(1, 3.0).add(20, 0.8).beats)
    assert kinds(changes) == [("pause", "raised"), ("pause", "resolved")]
    assert changes[0].details["rr_s"] == 3.0
    _, changes = run(Builder().add(20, 0.8).add(1, 3.0, after_gap=True).add(20, 0.8).beats)
    assert changes == []
    _, changes = run(Builder().add(20, 0.8).add(1, 3.0, lost=1.2).add(20, 0.8).beats)
    assert changes == []


def test_longer_than_asystole_is_left_to_the_status_engine() -> None:
    state, changes = run(Builder().add(20, 0.8).add(1, 5.0).add(20, 0.8).beats)
    assert changes == [] and state.pause_count == 1


def test_bradycardia_min_duration_escalation_and_hysteresis() -> None:
    b = Builder().add(30, 0.8).add(20, 1.4).add(20, 1.7).add(40, 0.8)
    _, changes = run(b.beats)
    assert kinds(changes) == [("bradycardia", "raised"), ("bradycardia", "updated"), ("bradycardia", "resolved")]
    assert changes[0].severity == "warning" and changes[1].severity == "critical"
    # a short dip is not an alarm
    _, changes = run(Builder().add(30, 0.8).add(5, 1.4).add(30, 0.8).beats)
    assert changes == []


def test_tachycardia_raised_and_extreme() -> None:
    _, changes = run(Builder().add(30, 0.8).add(60, 0.45).add(60, 0.8).beats)
    assert kinds(changes) == [("tachycardia", "raised"), ("tachycardia", "resolved")]
    _, changes = run(Builder().add(30, 0.8).add(60, 0.35).add(60, 0.8).beats, AlertRules(vt=RULES.vt))
    assert changes[0].severity == "critical"


def test_unreadable_signal_raises_technical_alarm_and_suppresses_rhythm() -> None:
    b = Builder().add(30, 0.8).add(30, 0.8, readable=False).add(50, (0.4, 1.0), af=True).add(30, 0.8)
    _, changes = run(b.beats)
    assert kinds(changes)[:2] == [("signal_unreadable", "raised"), ("signal_unreadable", "resolved")]
    assert changes[0].technical
    # AF was still raised once the signal was readable again
    assert ("af_episode", "raised") in kinds(changes)
    # unreadable beats suppress: AF during a long unreadable stretch is not raised
    b = Builder().add(30, 0.8).add(15, 0.8, readable=False).add(3, 0.5, cls="V").add(15, 0.8, readable=False)
    _, changes = run(b.beats)
    assert kinds(changes) == [("signal_unreadable", "raised")]


def test_escalation_after_configured_time() -> None:
    rules = AlertRules(af=AfRule(escalate_after_s=60.0))
    _, changes = run(Builder().add(10, 0.8).add(150, (0.4, 1.0), af=True).add(40, 0.8).beats, rules)
    assert kinds(changes) == [("af_episode", "raised"), ("af_episode", "updated"), ("af_episode", "resolved")]
    assert changes[1].severity == "critical" and changes[1].details["escalated"] is True


def test_suppression_window_counts_repeats() -> None:
    rules = AlertRules(vt=RULES.vt.model_copy(update={"suppress_s": 120.0}))
    b = Builder().add(20, 0.8)
    for _ in range(3):
        b.add(4, 0.35, cls="V").add(20, 0.8)
    b.add(200, 0.8).add(4, 0.35, cls="V").add(10, 0.8)
    _, changes = run(b.beats, rules)
    assert kinds(changes) == [("vt_run", "raised"), ("vt_run", "resolved")] * 2
    assert changes[2].details["suppressed_before"] == 2


def test_disabled_rule_never_fires() -> None:
    rules = AlertRules(tachycardia=RateRule(bpm=120, extreme_bpm=150, enabled=False))
    _, changes = run(Builder().add(30, 0.8).add(60, 0.45).add(30, 0.8).beats, rules)
    assert changes == []


def test_redelivered_beats_are_ignored_and_state_not_mutated() -> None:
    b = Builder().add(60, 0.8).add(150, (0.4, 1.0), af=True).add(60, 0.8).beats
    s1, c1 = rhythm_step(None, b[:100], RULES, stream_id="s1")
    before = json.dumps(s1.to_dict(), sort_keys=True)
    _s2, c2 = rhythm_step(s1, b[50:], RULES, stream_id="s1")  # overlaps 50..99
    assert json.dumps(s1.to_dict(), sort_keys=True) == before
    _, whole = run(b)
    assert c1 + c2 == whole


def test_state_round_trips_through_json() -> None:
    state, _ = run(Builder().add(60, 0.8).add(150, (0.4, 1.0), af=True).add(6, 0.35, cls="V").beats)
    again = RhythmState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.to_dict() == json.loads(json.dumps(state.to_dict()))


def test_finish_closes_open_episode_and_summary() -> None:
    b = Builder().add(3600, (0.78, 0.86)).add(200, (0.4, 1.0), af=True).add(3, 3.0).add(20, 0.8).add(6, 0.35, cls="V")
    b.add(100, (0.4, 1.0), af=True)
    state, _changes = run(b.beats)
    state, more = rhythm_finish(state, RULES, stream_id="s1")
    assert kinds(more) == [("af_episode", "resolved")]
    summ = holter_summary("s1", state, RULES)
    assert summ.af_episode_count == 2 and len(summ.af_episodes) == 2
    assert summ.v_beats == 6 and summ.longest_vt_run_beats == 6 and summ.pause_count == 3
    assert len(summ.hourly_hr) >= 2 and summ.hr_min_bpm is not None and summ.hr_max_bpm is not None
    assert summ.hr_min_bpm <= summ.hr_mean_bpm <= summ.hr_max_bpm  # type: ignore[operator]
    assert summ.open_alerts == []


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=420), max_size=12), seed=st.integers(0, 3))
def test_any_chunking_gives_the_same_alerts(cuts: list[int], seed: int) -> None:
    b = (Builder(seed).add(40, 0.8).add(120, (0.4, 1.0), af=True).add(30, 0.8).add(5, 0.35, cls="V")
         .add(20, 1.5).add(1, 3.0).add(15, 0.8, readable=False).add(200, 0.8)).beats
    whole_state, whole = run(b)
    state: RhythmState | None = None
    got: list[AlertChange] = []
    for a, z in zip([0, *sorted(set(cuts))], [*sorted(set(cuts)), len(b)], strict=False):
        state, ch = rhythm_step(state, b[a:z], RULES, stream_id="s1")
        got += ch
    assert got == whole
    assert state is not None and state.to_dict() == whole_state.to_dict()


def test_lost_signal_is_not_counted_as_unreadable_time() -> None:
    # an unreadable beat at a lead-off's start, 12 s of lost signal, then a few unreadable beats
    b = Builder().add(30, 0.8).add(1, 0.8, readable=False).add(1, 12.0, readable=False, lost=11.5)
    b.add(4, 0.8, readable=False).add(30, 0.8)
    _, changes = run(b.beats)
    assert changes == []


def test_scattered_unreadable_beats_are_not_an_unreadable_span() -> None:
    # AF with every 5th beat unreadable: 80 % readable, no technical alarm, AF raised
    b = Builder().add(20, 0.8)
    for _ in range(60):
        b.add(4, (0.5, 1.0), af=True).add(1, 0.8, readable=False)
    b.add(40, 0.8)
    _, changes = run(b.beats)
    assert kinds(changes) == [("af_episode", "raised"), ("af_episode", "resolved")]


def test_copy_is_independent_and_complete() -> None:
    import copy

    b = Builder().add(60, 0.8).add(150, (0.4, 1.0), af=True).add(6, 0.35, cls="V").add(1, 3.0).add(30, 0.8)
    state, _ = run(b.beats)
    c = state.copy()
    assert c.to_dict() == copy.deepcopy(state).to_dict()
    before = json.dumps(state.to_dict(), sort_keys=True)
    c.rr.append(9.0)
    c.brady.since = 1.0
    c.af_episodes[0][0] = 0.0
    next(iter(c.minutes.values()))[0] += 1.0
    next(iter(c.hours.values()))[1] += 1.0
    c.classes["N"] += 1
    c.pauses[0][1] = 0.0
    c.book.last_resolved["x"] = 1.0
    assert json.dumps(state.to_dict(), sort_keys=True) == before
    assert set(vars(state)) == set(vars(c))  # a new field must be added to copy() too (to_dict compares values)
