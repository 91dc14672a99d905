"""The alert log's pure parts: applying events by seq, index order, cursors, filters, ack bodies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from streamdx.schemas.alerts import AlertEventV1
from streamdx_alerts.alert_log import (
    AlertAck,
    AlertFilter,
    AlertView,
    apply_event,
    decode_cursor,
    encode_cursor,
    index_member,
    parse_member,
)
from streamdx_alerts.api.alerts import AckRequest

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def event(seq: int, *, state: str = "raised", alert: str = "s1:af_episode:10", stream: str = "s1",
          started: datetime = T0, **kw: Any) -> AlertEventV1:
    fields: dict[str, Any] = {
        "alert_id": alert, "seq": seq, "stream_id": stream, "kind": "af_episode", "state": state,
        "severity": "warning", "technical": False, "started_at": started,
        "criterion_at": started + timedelta(seconds=30 + seq), "ended_at": None,
        "emitted_at": T0 + timedelta(seconds=100 + seq), "rule": "default/af_episode", "message": f"event {seq}",
        "details": {"n": seq},
    }
    fields.update(kw)
    return AlertEventV1(**fields)


def view(ev: AlertEventV1, acked: bool = False) -> AlertView:
    rec = apply_event(None, ev)
    assert rec is not None
    ack = AlertAck(acked_by="op", acked_at=T0) if acked else None
    return AlertView(**rec.model_dump(), ack=ack)


def test_apply_event_keeps_the_latest_by_seq_and_ignores_redeliveries() -> None:
    r0 = apply_event(None, event(0))
    assert r0 is not None and r0.seq == 0 and r0.open and r0.raised_at == event(0).emitted_at
    r1 = apply_event(r0, event(1, state="updated", severity="critical"))
    assert r1 is not None and r1.severity == "critical" and r1.state == "updated" and r1.open
    r2 = apply_event(r1, event(2, state="resolved", ended_at=T0 + timedelta(minutes=5)))
    assert r2 is not None and not r2.open and r2.ended_at == T0 + timedelta(minutes=5)
    assert r2.raised_at == r0.raised_at and r2.updated_at == event(2).emitted_at
    assert [h.seq for h in r2.history] == [0, 1, 2]
    assert [h.state for h in r2.history] == ["raised", "updated", "resolved"]
    # redelivered (equal) or late (older) events change nothing
    assert apply_event(r2, event(2, state="resolved")) is None
    assert apply_event(r2, event(1, state="updated")) is None
    assert apply_event(r2, event(0)) is None


def test_history_is_bounded_to_the_last_events() -> None:
    rec = apply_event(None, event(0))
    for seq in range(1, 30):
        assert rec is not None
        rec = apply_event(rec, event(seq, state="updated"), history_max=20)
    assert rec is not None and [h.seq for h in rec.history] == list(range(10, 30))


def test_a_log_that_first_sees_a_later_event_takes_it_as_the_raise() -> None:
    rec = apply_event(None, event(3, state="updated"))
    assert rec is not None and rec.raised_at == event(3).emitted_at and rec.open


def test_index_members_sort_by_started_at_and_parse_back() -> None:
    a = index_member(T0, "s1", "s1:pause:9")
    b = index_member(T0 + timedelta(milliseconds=1), "s0", "s0:pause:1")
    c = index_member(T0 + timedelta(days=400), "a", "a:x:1")
    assert a < b < c
    assert parse_member(a) == ("s1", "s1:pause:9")
    assert index_member(datetime(1960, 1, 1, tzinfo=UTC), "s", "s:a:1").startswith("0" * 15)
    for bad in ("", "123|s|a", "000000000000001|s|a|b c", "000000000000001||a"):
        with pytest.raises(ValueError):
            parse_member(bad)


def test_cursor_round_trip_and_rejects_garbage() -> None:
    m = index_member(T0, "icu-7", "icu-7:vt_run:1234")
    assert decode_cursor(encode_cursor(m)) == m
    for bad in ("", "!!!", encode_cursor("hello"), "a" * 5):
        with pytest.raises(ValueError):
            decode_cursor(bad)


def test_filter_matches_each_field() -> None:
    warn = view(event(0))
    crit = view(event(0, severity="critical", kind="vt_run", alert="s2:vt_run:1", stream="s2"), acked=True)
    tech = view(event(0, severity="info", kind="data_gap", technical=True, alert="s1:data_gap:4"))
    resolved = view(event(1, state="resolved", alert="s1:pause:2", kind="pause"))
    every = [warn, crit, tech, resolved]

    def ids(f: AlertFilter) -> set[str]:
        return {v.alert_id for v in every if f.matches(v)}

    assert ids(AlertFilter()) == {v.alert_id for v in every}
    assert ids(AlertFilter(stream_id="s2")) == {"s2:vt_run:1"}
    assert ids(AlertFilter(kinds=frozenset({"vt_run", "pause"}))) == {"s2:vt_run:1", "s1:pause:2"}
    assert ids(AlertFilter(min_severity="warning")) == {"s1:af_episode:10", "s2:vt_run:1", "s1:pause:2"}
    assert ids(AlertFilter(min_severity="critical")) == {"s2:vt_run:1"}
    assert ids(AlertFilter(state="open")) == {"s1:af_episode:10", "s2:vt_run:1", "s1:data_gap:4"}
    assert ids(AlertFilter(state="resolved")) == {"s1:pause:2"}
    assert ids(AlertFilter(acked=True)) == {"s2:vt_run:1"}
    assert len(ids(AlertFilter(acked=False))) == 3
    assert ids(AlertFilter(technical=True)) == {"s1:data_gap:4"}
    assert "s1:data_gap:4" not in ids(AlertFilter(technical=False))


def test_filter_time_bounds_are_inclusive_and_naive_times_are_utc() -> None:
    v = view(event(0, started=T0))
    assert AlertFilter(since=T0, until=T0).matches(v)
    assert not AlertFilter(since=T0 + timedelta(milliseconds=1)).matches(v)
    assert not AlertFilter(until=T0 - timedelta(milliseconds=1)).matches(v)
    assert AlertFilter(since=T0.replace(tzinfo=None)).matches(v)


def test_lex_range_bounds_members_by_started_at_and_cursor() -> None:
    inside = index_member(T0, "s", "s:a:1")
    later = index_member(T0 + timedelta(seconds=1), "s", "s:a:2")
    hi, lo = AlertFilter(since=T0, until=T0).lex_range(None)
    assert hi.startswith("(") and lo.startswith("[")
    assert lo[1:] <= inside < hi[1:] and not later < hi[1:]
    assert AlertFilter().lex_range(None) == ("+", "-")
    # the cursor is exclusive and tighter than `until` when it is earlier
    hi, _ = AlertFilter(until=T0 + timedelta(hours=1)).lex_range(inside)
    assert hi == "(" + inside


def test_ack_request_validation() -> None:
    assert AckRequest.model_validate({"by": "nurse.anna@icu-3"}).note is None
    assert AckRequest.model_validate({"by": "a", "note": "x" * 200}).note == "x" * 200
    for bad in ({}, {"by": ""}, {"by": "a" * 65}, {"by": "anna smith"}, {"by": "a", "note": "x" * 201},
                {"by": "a", "note": "line\nbreak"}, {"by": "a", "extra": 1}, {"by": 5}):
        with pytest.raises(ValidationError):
            AckRequest.model_validate(bad)
