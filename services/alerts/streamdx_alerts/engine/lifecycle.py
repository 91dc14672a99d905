"""Alert lifecycle shared by the engines: raised → updated → resolved, de-duplicated.

:class:`AlertBook` holds one stream's open alerts (at most one per kind: a second raise of
an open kind is a duplicate and emits nothing), the signal time each kind last resolved
(the suppression window) and how many raises were suppressed. Every change is returned as
an :class:`AlertChange`; alert ids are built from the stream, the kind and a
signal-derived hint (a beat or sample index), so replaying the same input yields the same
ids and sequence numbers: downstream de-duplicates on ``alert_id:seq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from streamdx.schemas.alerts import TECHNICAL_KINDS
from streamdx_alerts.rules import SEVERITY_RANK

__all__ = ["AlertBook", "AlertChange", "OpenAlert"]

ChangeState = Literal["raised", "updated", "resolved"]
Details = dict[str, float | int | str | bool]


@dataclass(frozen=True)
class AlertChange:
    """One alert event, in signal time (seconds since the epoch)."""

    alert_id: str
    seq: int
    kind: str
    state: ChangeState
    severity: str
    technical: bool
    started_at: float
    criterion_at: float
    ended_at: float | None
    rule: str
    message: str
    details: Details


@dataclass
class OpenAlert:
    """An alert raised and not resolved yet."""

    alert_id: str
    severity: str
    started_at: float
    seq: int
    rule: str
    details: Details = field(default_factory=dict)


@dataclass
class AlertBook:
    """Open alerts of one stream (see the module doc). Serialisable with :meth:`to_dict`."""

    open: dict[str, OpenAlert] = field(default_factory=dict)
    last_resolved: dict[str, float] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)
    suppressed_hint: dict[str, str] = field(default_factory=dict)

    def is_open(self, kind: str) -> bool:
        return kind in self.open

    def raise_alert(
        self, stream_id: str, kind: str, *, rule: str, severity: str, started_at: float, criterion_at: float,
        hint: int | str, message: str, details: Details | None = None, suppress_s: float = 0.0,
    ) -> AlertChange | None:
        """Raise ``kind`` unless it is open already (duplicate) or inside its suppression window."""
        if kind in self.open:
            return None
        last = self.last_resolved.get(kind)
        if suppress_s > 0 and last is not None and criterion_at - last < suppress_s:
            if self.suppressed_hint.get(kind) != str(hint):  # count each episode once
                self.suppressed_hint[kind] = str(hint)
                self.suppressed[kind] = self.suppressed.get(kind, 0) + 1
            return None
        self.suppressed_hint.pop(kind, None)
        d = dict(details or {})
        n_suppressed = self.suppressed.pop(kind, 0)
        if n_suppressed:
            d["suppressed_before"] = n_suppressed
        alert_id = f"{stream_id}:{kind}:{hint}"
        self.open[kind] = OpenAlert(alert_id, severity, started_at, 0, rule, d)
        return AlertChange(alert_id, 0, kind, "raised", severity, kind in TECHNICAL_KINDS, started_at,
                           criterion_at, None, rule, message, d)

    def update_alert(
        self, kind: str, *, criterion_at: float, message: str, severity: str | None = None,
        details: Details | None = None,
    ) -> AlertChange | None:
        """Emit an update of the open ``kind`` when its severity rises or its details change."""
        a = self.open.get(kind)
        if a is None:
            return None
        new_sev = a.severity
        if severity is not None and SEVERITY_RANK[severity] > SEVERITY_RANK[a.severity]:
            new_sev = severity
        new_details = {**a.details, **(details or {})}
        if new_sev == a.severity and new_details == a.details:
            return None
        a.severity, a.details, a.seq = new_sev, new_details, a.seq + 1
        return AlertChange(a.alert_id, a.seq, kind, "updated", a.severity, kind in TECHNICAL_KINDS, a.started_at,
                           criterion_at, None, a.rule, message, dict(a.details))

    def resolve_alert(self, kind: str, *, ended_at: float, message: str,
                      details: Details | None = None) -> AlertChange | None:
        """Resolve the open ``kind`` (nothing when it is not open)."""
        a = self.open.pop(kind, None)
        if a is None:
            return None
        self.last_resolved[kind] = ended_at
        d = {**a.details, **(details or {}), "duration_s": round(max(0.0, ended_at - a.started_at), 3)}
        return AlertChange(a.alert_id, a.seq + 1, kind, "resolved", a.severity, kind in TECHNICAL_KINDS,
                           a.started_at, ended_at, ended_at, a.rule, message, d)

    def escalate(self, now: float, after_s: dict[str, float | None]) -> list[AlertChange]:
        """Raise to critical every open alert older than its rule's ``escalate_after_s``."""
        out = []
        for kind, a in list(self.open.items()):
            limit = after_s.get(kind)
            if limit is not None and a.severity != "critical" and now - a.started_at >= limit:
                ch = self.update_alert(kind, criterion_at=now, severity="critical",
                                       message=f"{kind.replace('_', ' ')} still open after {limit:.0f} s",
                                       details={"escalated": True})
                if ch is not None:
                    out.append(ch)
        return out

    def copy(self) -> AlertBook:
        """An independent copy."""
        return AlertBook(
            open={k: OpenAlert(a.alert_id, a.severity, a.started_at, a.seq, a.rule, dict(a.details))
                  for k, a in self.open.items()},
            last_resolved=dict(self.last_resolved), suppressed=dict(self.suppressed),
            suppressed_hint=dict(self.suppressed_hint),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": {k: [a.alert_id, a.severity, a.started_at, a.seq, a.rule, a.details] for k, a in self.open.items()},
            "last_resolved": self.last_resolved,
            "suppressed": self.suppressed,
            "suppressed_hint": self.suppressed_hint,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlertBook:
        return cls(
            open={k: OpenAlert(str(v[0]), str(v[1]), float(v[2]), int(v[3]), str(v[4]), dict(v[5]))
                  for k, v in d["open"].items()},
            last_resolved={k: float(v) for k, v in d["last_resolved"].items()},
            suppressed={k: int(v) for k, v in d["suppressed"].items()},
            suppressed_hint={k: str(v) for k, v in d.get("suppressed_hint", {}).items()},
        )
