"""Signal-status engine: lead-off, data gap and asystole from hand-made status sequences."""

from __future__ import annotations

import json

from streamdx_alerts.engine.lifecycle import AlertChange
from streamdx_alerts.engine.technical import StatusObs, TechnicalState, technical_step
from streamdx_alerts.rules import AlertRules

FS = 250.0
T0 = 1.7e9
DELAY = int(1.5 * FS)  # a detector horizon 1.5 s behind the last received sample


class Stream:
    """1-s status messages of a 250 Hz stream with beats every 0.8 s unless told otherwise."""

    def __init__(self) -> None:
        self.seq = 0
        self.end = 0
        self.last_r = -1
        self.out: list[StatusObs] = []

    def second(self, *, beats: bool = True, lost: tuple[tuple[int, int], ...] = (), gap_s: float = 0.0,
               final: bool = False) -> Stream:
        self.end += round(gap_s * FS) + int(FS)
        horizon = self.end - DELAY
        if beats and horizon > 0:
            r = max(self.last_r, 0)
            while r + 200 < horizon:
                r += 200
            self.last_r = r
        self.out.append(StatusObs(self.seq, FS, T0 + self.end / FS, self.end, max(0, horizon), self.last_r, lost,
                                  gap_s, final))
        self.seq += 1
        return self


def run(obs: list[StatusObs]) -> tuple[TechnicalState, list[AlertChange]]:
    return technical_step(None, obs, AlertRules(), stream_id="s1")


def kinds(ch: list[AlertChange]) -> list[tuple[str, str]]:
    return [(c.kind, c.state) for c in ch]


def test_clean_stream_raises_nothing() -> None:
    s = Stream()
    for _ in range(60):
        s.second()
    assert run(s.out)[1] == []


def test_lead_off_raised_once_then_resolved_and_no_asystole() -> None:
    s = Stream()
    for _ in range(10):
        s.second()
    a = s.end
    for _k in range(8):  # 8 s of lead-off: no beats, a growing lost interval
        s.second(beats=False, lost=((a, s.end + int(FS)),))
    b = s.end
    for _ in range(10):
        s.second(lost=((a, b),) if _ == 0 else ())
    _state, ch = run(s.out)
    assert kinds(ch) == [("lead_off", "raised"), ("lead_off", "resolved")]
    assert ch[0].technical and abs(ch[0].started_at - (T0 + a / FS)) < 1e-6
    assert abs(ch[1].ended_at - (T0 + b / FS)) < 1e-6  # type: ignore[operator]


def test_asystole_raised_by_the_horizon_and_resolved_by_the_next_beat() -> None:
    s = Stream()
    for _ in range(10):
        s.second()
    for _ in range(8):
        s.second(beats=False)
    for _ in range(5):
        s.second()
    _, ch = run(s.out)
    assert kinds(ch) == [("asystole", "raised"), ("asystole", "resolved")]
    assert ch[0].severity == "critical" and not ch[0].technical
    assert ch[0].criterion_at - ch[0].started_at == 4.0


def test_data_gap_is_reported_not_asystole() -> None:
    s = Stream()
    for _ in range(10):
        s.second()
    s.second(gap_s=20.0, beats=False)
    for _ in range(10):
        s.second()
    _, ch = run(s.out)
    assert kinds(ch) == [("data_gap", "raised"), ("data_gap", "resolved")]
    assert ch[0].details["missing_s"] == 20.0 and ch[0].severity == "info"


def test_repeated_status_is_ignored_and_state_round_trips() -> None:
    s = Stream()
    for _ in range(10):
        s.second()
    for _ in range(8):
        s.second(beats=False)
    st1, c1 = technical_step(None, s.out[:14], AlertRules(), stream_id="s1")
    st2, c2 = technical_step(st1, s.out[10:], AlertRules(), stream_id="s1")
    assert c1 + c2 == run(s.out)[1]
    again = TechnicalState.from_dict(json.loads(json.dumps(st2.to_dict())))
    assert again.to_dict() == json.loads(json.dumps(st2.to_dict()))


def test_final_status_resolves_open_alarms() -> None:
    s = Stream()
    for _ in range(10):
        s.second()
    for _ in range(7):
        s.second(beats=False)
    s.second(beats=False, final=True)
    state, ch = run(s.out)
    assert kinds(ch) == [("asystole", "raised"), ("asystole", "resolved")]
    assert state.finished


def test_asystole_stepped_over_by_the_horizon_is_found_from_the_listed_r_peaks() -> None:
    # the horizon jumps 8 s at once (one processed block) over a 6-s pause: only r_samples show it
    rs = [int(x * FS) for x in (1.0, 1.8, 2.6, 8.6, 9.4, 10.2)]
    obs = [
        StatusObs(0, FS, T0 + 4.0, int(4 * FS), int(2.0 * FS), rs[1], r_samples=(rs[0],)),
        StatusObs(1, FS, T0 + 12.0, int(12 * FS), int(10.5 * FS), rs[5], r_samples=tuple(rs[1:5])),
    ]
    _, ch = run(obs)
    assert kinds(ch) == [("asystole", "raised"), ("asystole", "resolved")]
    assert ch[0].details["late"] is True and ch[0].details["no_beat_s"] == 6.0
    assert abs(ch[0].started_at - (T0 + 2.6)) < 1e-6 and abs(ch[1].ended_at - (T0 + 8.6)) < 1e-6  # type: ignore[operator]
    # the same span with lost signal inside is not asystole
    lost = ((int(3 * FS), int(8 * FS)),)
    obs[1] = StatusObs(1, FS, T0 + 12.0, int(12 * FS), int(10.5 * FS), rs[5], lost=lost, r_samples=tuple(rs[1:5]))
    assert [k for k, _ in kinds(run(obs)[1])] == ["lead_off", "lead_off"]
