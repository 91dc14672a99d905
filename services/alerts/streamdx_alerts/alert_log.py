"""The alert log: every alert of ``alerts.events`` in Redis, listed, filtered and acknowledged.

A :class:`~streamdx.messaging.worker.StreamWorker` in its own consumer group
(``ALERTS_LOG_GROUP``) calls :class:`RecordAlerts` per event; :class:`AlertLog` keeps one
record per ``alert_id``: the latest event (by ``seq``), when the log first saw it raised,
a bounded history of its events, and the operator's acknowledgement. The API
(:mod:`streamdx_alerts.api.alerts`) reads it.

Keys (``P`` = the prefix, ``sdx:alerts:log`` by default)::

    P:alert:{alert_id}          string  AlertRecord (JSON)
    P:ack:{alert_id}            string  AlertAck (JSON), set once (SET NX): the first ack wins
    P:all                       zset    index member of every alert     (all scores 0: lex order)
    P:open / P:resolved         zset    index members of open / resolved alerts
    P:stream:{stream_id}        zset    index members of one stream's alerts
    P:stream-open:{stream_id}   set     alert ids of one stream's open alerts
    P:streams                   zset    stream id → latest started_at (epoch s)

An index member is ``{started_at ms, 15 digits}|{stream_id}|{alert_id}``, so lexicographic
order is started_at order with a total tie-break, and a page cursor is just the last member.

Rules:

* **Idempotent.** An event whose ``seq`` is not above the stored one (a redelivery, or an
  older event arriving late) changes nothing. Updates run in a WATCH transaction on the
  record, so two consumers of a rebalancing group cannot interleave.
* **Acks** live beside the record, so later events of the alert never touch them. Acking
  an alert acked already keeps the first ack and returns it (idempotent for a console
  that retries); a resolved alert can be acked (an operator confirms having seen it).
* **Retention.** At most ``max_alerts`` records: inserting beyond it deletes the oldest
  *resolved* alerts (by started_at) first, and the oldest open ones only if every kept
  alert is open. With ``ttl_s`` > 0 a record (and its ack) also expires ``ttl_s`` after its
  last event; index members left behind are removed when a listing meets them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import WatchError

from streamdx.messaging.worker import Handled
from streamdx.schemas.alerts import AlertEventV1, AlertKind, AlertState, Severity
from streamdx_alerts.redis_retry import until_redis_answers
from streamdx_alerts.rules import SEVERITY_RANK

__all__ = [
    "ACK_BY_PATTERN",
    "HISTORY_MAX",
    "NOTE_MAX",
    "AlertAck",
    "AlertFilter",
    "AlertHistoryEntry",
    "AlertLog",
    "AlertPage",
    "AlertRecord",
    "AlertView",
    "RecordAlerts",
    "StateFilter",
    "StreamOverview",
    "apply_event",
    "decode_cursor",
    "encode_cursor",
    "index_member",
    "parse_member",
]

log = logging.getLogger("streamdx.alerts.log")

PREFIX = "sdx:alerts:log"
HISTORY_MAX = 20
NOTE_MAX = 200
ACK_BY_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
_MS_DIGITS = 15
_MEMBER = re.compile(r"^(\d{15})\|([A-Za-z0-9][A-Za-z0-9._:-]{0,63})\|([A-Za-z0-9._:-]{1,200})$")
StateFilter = Literal["open", "resolved", "all"]


class AlertHistoryEntry(BaseModel):
    """One event of an alert, as kept in its history."""

    seq: int
    state: AlertState
    severity: Severity
    criterion_at: datetime
    ended_at: datetime | None = None
    emitted_at: datetime
    message: str


class AlertRecord(BaseModel):
    """One alert as the log keeps it: its latest event and a bounded history."""

    alert_id: str = Field(description="Stable id of the episode (e.g. 'icu-7:vt_run:1234')")
    stream_id: str = Field(description="ECG stream or ESR tube the alert is about")
    kind: AlertKind
    state: AlertState = Field(description="State of the latest event")
    open: bool = Field(description="Not resolved yet")
    severity: Severity = Field(description="Severity of the latest event")
    technical: bool = Field(description="A technical alarm (signal or device), not a clinical one")
    rule: str
    message: str = Field(description="Message of the latest event")
    details: dict[str, float | int | str | bool] = Field(default_factory=dict)
    seq: int = Field(description="seq of the latest event")
    started_at: datetime = Field(description="Signal time the condition began")
    criterion_at: datetime = Field(description="Signal time the criterion was met or last changed")
    ended_at: datetime | None = Field(default=None, description="Signal time the condition ended (resolved)")
    raised_at: datetime = Field(description="Wall time of the raise (of the first event the log saw)")
    updated_at: datetime = Field(description="Wall time of the latest event")
    history: list[AlertHistoryEntry] = Field(
        default_factory=list, description=f"The alert's events, oldest first (the last {HISTORY_MAX})")


class AlertAck(BaseModel):
    """An operator's acknowledgement of an alert."""

    acked_by: str = Field(description="Operator name")
    acked_at: datetime = Field(description="Wall time of the acknowledgement")
    note: str | None = Field(default=None, max_length=NOTE_MAX)


class AlertView(AlertRecord):
    """An alert with its acknowledgement (``ack`` null: not acknowledged)."""

    ack: AlertAck | None = None


class AlertPage(BaseModel):
    """A page of alerts, newest first (by started_at)."""

    items: list[AlertView]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null when nothing more matches")


class StreamOverview(BaseModel):
    """The alert log's view of one stream."""

    stream_id: str
    last_alert_id: str
    last_alert_at: datetime = Field(description="started_at of the stream's most recent alert")
    last_kind: AlertKind
    last_severity: Severity
    last_state: AlertState
    open_alerts: int = Field(description="Alerts of the stream not resolved yet")


# --- pure parts ---------------------------------------------------------------------------


def _history_entry(ev: AlertEventV1) -> AlertHistoryEntry:
    return AlertHistoryEntry(seq=ev.seq, state=ev.state, severity=ev.severity, criterion_at=ev.criterion_at,
                             ended_at=ev.ended_at, emitted_at=ev.emitted_at, message=ev.message)


def apply_event(current: AlertRecord | None, ev: AlertEventV1, history_max: int = HISTORY_MAX) -> AlertRecord | None:
    """The record after ``ev``, or ``None`` when ``ev`` changes nothing (its seq is not newer)."""
    if current is not None and ev.seq <= current.seq:
        return None
    history = [*(current.history if current is not None else []), _history_entry(ev)][-history_max:]
    return AlertRecord(
        alert_id=ev.alert_id, stream_id=ev.stream_id, kind=ev.kind, state=ev.state, open=ev.state != "resolved",
        severity=ev.severity, technical=ev.technical, rule=ev.rule, message=ev.message, details=dict(ev.details),
        seq=ev.seq, started_at=ev.started_at, criterion_at=ev.criterion_at, ended_at=ev.ended_at,
        raised_at=current.raised_at if current is not None else ev.emitted_at, updated_at=ev.emitted_at,
        history=history,
    )


def _ms(t: datetime) -> int:
    """Epoch milliseconds (a naive time is UTC)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return max(0, round(t.timestamp() * 1000))


def _ms_key(ms: int) -> str:
    return f"{ms:0{_MS_DIGITS}d}"


def index_member(started_at: datetime, stream_id: str, alert_id: str) -> str:
    """The member of an alert in the lex-ordered indexes (see the module doc)."""
    return f"{_ms_key(_ms(started_at))}|{stream_id}|{alert_id}"


def parse_member(member: str) -> tuple[str, str]:
    """``(stream_id, alert_id)`` of an index member; ``ValueError`` when it is not one."""
    m = _MEMBER.match(member)
    if m is None:
        raise ValueError("not an alert index member")
    return m.group(2), m.group(3)


def encode_cursor(member: str) -> str:
    """An opaque page cursor (the position after which the next page starts)."""
    return base64.urlsafe_b64encode(member.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The index member of a cursor; ``ValueError`` when it is not one of :func:`encode_cursor`."""
    try:
        member = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("invalid cursor") from None
    parse_member(member)
    return member


@dataclass(frozen=True)
class AlertFilter:
    """What ``GET /v1/alerts`` asks for (every field optional: ``None`` matches anything).

    ``min_severity`` keeps alerts at or above it (info < warning < critical); ``since`` and
    ``until`` bound started_at (both inclusive).
    """

    stream_id: str | None = None
    kinds: frozenset[str] | None = None
    min_severity: str | None = None
    state: StateFilter = "all"
    acked: bool | None = None
    technical: bool | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, alert: AlertView) -> bool:
        if self.stream_id is not None and alert.stream_id != self.stream_id:
            return False
        if self.kinds and alert.kind not in self.kinds:
            return False
        if self.min_severity is not None and SEVERITY_RANK[alert.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if self.state != "all" and alert.open != (self.state == "open"):
            return False
        if self.acked is not None and (alert.ack is not None) != self.acked:
            return False
        if self.technical is not None and alert.technical != self.technical:
            return False
        if self.since is not None and _ms(alert.started_at) < _ms(self.since):
            return False
        return not (self.until is not None and _ms(alert.started_at) > _ms(self.until))

    def lex_range(self, after: str | None) -> tuple[str, str]:
        """``(max, min)`` bounds of ZREVRANGEBYLEX: started_at within [since, until], before ``after``."""
        upper: str | None = None
        if self.until is not None:
            upper = _ms_key(_ms(self.until) + 1)  # every member of ms <= until sorts below it
        if after is not None:
            upper = after if upper is None else min(upper, after)
        hi = "+" if upper is None else "(" + upper
        lo = "-" if self.since is None else "[" + _ms_key(_ms(self.since))
        return hi, lo


# --- the store ----------------------------------------------------------------------------

# KEYS: record, ack; ARGV: ack JSON. Returns the ack stored (the given one or an earlier one),
# or nil when the alert is unknown.
_ACK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('SET', KEYS[2], ARGV[1], 'NX') then
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return redis.call('GET', KEYS[2])
"""


class AlertLog:
    """The Redis store of the alert log (see the module doc).

    Parameters
    ----------
    redis : Redis
        The shared client (bytes responses).
    max_alerts : int
        Alerts kept at most (``ALERTS_LOG_MAX``).
    ttl_s : int
        Seconds a record is kept after its last event; 0: no expiry (``ALERTS_LOG_TTL_S``).
    history_max : int
        Events kept per alert.
    prefix : str
        Key prefix (tests use their own).
    scan_max : int
        Index members one listing examines at most; a listing that stops there returns the
        items found so far and a cursor to continue from.
    """

    def __init__(self, redis: Redis, *, max_alerts: int = 100_000, ttl_s: int = 0, history_max: int = HISTORY_MAX,
                 prefix: str = PREFIX, scan_max: int = 5_000) -> None:
        self._r = redis
        self.max_alerts = max_alerts
        self.ttl_s = ttl_s
        self.history_max = history_max
        self._p = prefix
        self.scan_max = scan_max
        self._all, self._open, self._resolved = f"{prefix}:all", f"{prefix}:open", f"{prefix}:resolved"
        self._streams = f"{prefix}:streams"
        self._ack_script = redis.register_script(_ACK)

    def _rec(self, alert_id: str) -> str:
        return f"{self._p}:alert:{alert_id}"

    def _ack(self, alert_id: str) -> str:
        return f"{self._p}:ack:{alert_id}"

    def _stream(self, stream_id: str) -> str:
        return f"{self._p}:stream:{stream_id}"

    def _stream_open(self, stream_id: str) -> str:
        return f"{self._p}:stream-open:{stream_id}"

    # writes

    async def record(self, ev: AlertEventV1) -> bool:
        """Apply one event; ``False`` when it changed nothing (not newer than the stored one)."""
        key = self._rec(ev.alert_id)
        while True:
            async with self._r.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    current = AlertRecord.model_validate_json(raw) if raw is not None else None
                    new = apply_event(current, ev, self.history_max)
                    if new is None:
                        await pipe.reset()
                        return False
                    pipe.multi()
                    self._write(pipe, current, new)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        if current is None:
            await self.trim()
        return True

    def _write(self, pipe: Any, current: AlertRecord | None, new: AlertRecord) -> None:
        member = index_member(new.started_at, new.stream_id, new.alert_id)
        stream, stream_open = self._stream(new.stream_id), self._stream_open(new.stream_id)
        ex = self.ttl_s or None
        pipe.set(self._rec(new.alert_id), new.model_dump_json(), ex=ex)
        if current is not None:
            old = index_member(current.started_at, current.stream_id, current.alert_id)
            if old != member:
                for k in (self._all, self._open, self._resolved, self._stream(current.stream_id)):
                    pipe.zrem(k, old)
        pipe.zadd(self._all, {member: 0})
        pipe.zadd(stream, {member: 0})
        if new.open:
            pipe.zadd(self._open, {member: 0})
            pipe.zrem(self._resolved, member)
            pipe.sadd(stream_open, new.alert_id)
        else:
            pipe.zrem(self._open, member)
            pipe.zadd(self._resolved, {member: 0})
            pipe.srem(stream_open, new.alert_id)
        pipe.zadd(self._streams, {new.stream_id: new.started_at.timestamp()}, gt=True)
        if ex is not None:
            for k in (self._ack(new.alert_id), stream, stream_open):
                pipe.expire(k, ex)

    async def trim(self) -> int:
        """Delete the oldest alerts beyond ``max_alerts`` (resolved ones first); returns how many."""
        excess = int(await self._r.zcard(self._all)) - self.max_alerts
        if excess <= 0:
            return 0
        victims = [_s(m) for m in await self._r.zrange(self._resolved, 0, excess - 1)]
        if len(victims) < excess:
            chosen = set(victims)
            oldest = [_s(m) for m in await self._r.zrange(self._all, 0, 2 * excess - 1)]
            victims += [m for m in oldest if m not in chosen][: excess - len(victims)]
        await self._forget(victims)
        return len(victims)

    async def _forget(self, members: Sequence[str]) -> None:
        """Delete the records of ``members`` and remove them from every index."""
        if not members:
            return
        streams: set[str] = set()
        async with self._r.pipeline(transaction=False) as pipe:
            for member in members:
                try:
                    stream_id, alert_id = parse_member(member)
                except ValueError:
                    stream_id, alert_id = "", ""
                else:
                    streams.add(stream_id)
                    pipe.delete(self._rec(alert_id), self._ack(alert_id))
                    pipe.zrem(self._stream(stream_id), member)
                    pipe.srem(self._stream_open(stream_id), alert_id)
                for k in (self._all, self._open, self._resolved):
                    pipe.zrem(k, member)
            await pipe.execute()
        ordered = sorted(streams)
        async with self._r.pipeline(transaction=False) as pipe:
            for s in ordered:
                pipe.zcard(self._stream(s))
            counts = await pipe.execute()
        empty = [s for s, n in zip(ordered, counts, strict=True) if not n]
        if empty:
            await self._r.zrem(self._streams, *empty)

    async def ack(self, alert_id: str, by: str, note: str | None = None,
                  now: datetime | None = None) -> AlertView | None:
        """Acknowledge an alert (the first ack is kept); ``None`` when the alert is unknown."""
        ack = AlertAck(acked_by=by, acked_at=now or datetime.now(UTC), note=note or None)
        stored = await self._ack_script(keys=[self._rec(alert_id), self._ack(alert_id)],
                                        args=[ack.model_dump_json()])
        if stored is None:
            return None
        return await self.get(alert_id)

    # reads

    async def get(self, alert_id: str) -> AlertView | None:
        """One alert with its ack; ``None`` when unknown (or expired)."""
        raw, ack = await self._r.mget([self._rec(alert_id), self._ack(alert_id)])
        return _view(raw, ack)

    async def query(self, flt: AlertFilter, limit: int = 100, cursor: str | None = None) -> AlertPage:
        """Alerts matching ``flt``, newest first (by started_at), ``limit`` at most per page.

        ``cursor`` is a page's ``next_cursor`` (``ValueError`` when it is not one). A page can
        hold fewer than ``limit`` items with a cursor when ``scan_max`` members were examined.
        """
        after = decode_cursor(cursor) if cursor is not None else None
        if flt.stream_id is not None:
            index = self._stream(flt.stream_id)
        else:
            index = {"open": self._open, "resolved": self._resolved}.get(flt.state, self._all)
        items: list[AlertView] = []
        examined = 0
        batch = max(limit, 100)
        while True:
            hi, lo = flt.lex_range(after)
            members = [_s(m) for m in await self._r.zrevrangebylex(index, hi, lo, start=0, num=batch)]
            if not members:
                return AlertPage(items=items, next_cursor=None)
            views = await self._views(members)
            for i, (member, view) in enumerate(zip(members, views, strict=True)):
                examined += 1
                if view is None or not flt.matches(view):
                    continue
                items.append(view)
                if len(items) == limit:
                    rest = zip(members[i + 1:], views[i + 1:], strict=True)
                    more = len(members) == batch or any(v is not None and flt.matches(v) for _, v in rest)
                    return AlertPage(items=items, next_cursor=encode_cursor(member) if more else None)
            after = members[-1]
            if len(members) < batch:
                return AlertPage(items=items, next_cursor=None)
            if examined >= self.scan_max:
                return AlertPage(items=items, next_cursor=encode_cursor(after))

    async def _views(self, members: Sequence[str]) -> list[AlertView | None]:
        if not members:
            return []
        ids = [parse_member(m)[1] for m in members]
        raws = await self._r.mget([k for a in ids for k in (self._rec(a), self._ack(a))])
        views = [_view(raws[2 * i], raws[2 * i + 1]) for i in range(len(ids))]
        gone = [m for m, v in zip(members, views, strict=True) if v is None]
        if gone:  # expired records (ALERTS_LOG_TTL_S): drop their index members
            await self._forget(gone)
        return views

    async def streams(self, limit: int = 500) -> list[StreamOverview]:
        """Streams with alerts, most recent alert first: the latest alert and the open count."""
        ids = [_s(s) for s in await self._r.zrevrange(self._streams, 0, limit - 1)]
        if not ids:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for s in ids:
                pipe.zrevrange(self._stream(s), 0, 0)
                pipe.scard(self._stream_open(s))
            res = await pipe.execute()
        stale = [s for i, s in enumerate(ids) if not res[2 * i]]
        found = [(s, _s(res[2 * i][0]), int(res[2 * i + 1])) for i, s in enumerate(ids) if res[2 * i]]
        views = await self._views([member for _, member, _ in found])
        out = [StreamOverview(stream_id=s, last_alert_id=v.alert_id, last_alert_at=v.started_at, last_kind=v.kind,
                              last_severity=v.severity, last_state=v.state, open_alerts=n_open)
               for (s, _, n_open), v in zip(found, views, strict=True) if v is not None]
        if stale:
            await self._r.zrem(self._streams, *stale)
        return out


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _view(raw: bytes | str | None, ack: bytes | str | None) -> AlertView | None:
    if raw is None:
        return None
    record = json.loads(raw)
    record["ack"] = json.loads(ack) if ack is not None else None
    return AlertView.model_validate(record)


# --- the worker's handler -----------------------------------------------------------------


class RecordAlerts:
    """``async (event, None) -> Handled(None, ())``: write the event into the alert log.

    Redis unavailable: retries with back-off (the batch waits) rather than raising, which
    would dead-letter the event; gives up (raises, the batch is not committed) only when the
    service is stopping.
    """

    def __init__(self, alert_log: AlertLog, *, stop: asyncio.Event | None = None,
                 retry_backoff_s: tuple[float, float] = (0.2, 5.0)) -> None:
        self._log = alert_log
        self._stop = stop
        self._backoff = retry_backoff_s
        self.recorded = 0
        self.ignored = 0

    async def __call__(self, event: AlertEventV1, state: None) -> Handled[None]:
        async def record() -> bool:
            return await self._log.record(event)

        changed = await until_redis_answers(record, what="alert log", backoff_s=self._backoff, stop=self._stop)
        if changed:
            self.recorded += 1
        else:
            self.ignored += 1
        return Handled(None, ())
