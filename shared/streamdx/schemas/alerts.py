"""Alert schemas: alert lifecycle events and failed webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from streamdx.schemas.base import Message
from streamdx.schemas.topics import Topic

__all__ = ["ALERT_KINDS", "TECHNICAL_KINDS", "AlertEventV1", "AlertKind", "AlertState", "Severity",
           "WebhookDeadLetterV1"]

AlertKind = Literal[
    # rhythm alarms (from ecg.labels)
    "af_episode", "bradycardia", "tachycardia", "pause", "vt_run", "asystole",
    # technical alarms (from ecg.status and the no-data watchdog); they suppress rhythm alarms
    "lead_off", "signal_unreadable", "no_data", "data_gap",
    # ESR (from esr.forecasts)
    "esr_high",
]  # fmt: skip
ALERT_KINDS: tuple[str, ...] = AlertKind.__args__  # type: ignore[attr-defined]
TECHNICAL_KINDS: frozenset[str] = frozenset({"lead_off", "signal_unreadable", "no_data", "data_gap"})
AlertState = Literal["raised", "updated", "resolved"]
Severity = Literal["info", "warning", "critical"]
#: Stream or tube id (opaque; never a patient identifier).
SourceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]


class AlertEventV1(Message):
    """One change of one alert: raised → updated (0..n) → resolved.

    ``alert_id`` names the episode (stable across its events: the de-duplication key);
    ``event_id`` = ``alert_id:seq`` names this change (the webhook-id and idempotency key).
    Times ``started_at``/``ended_at``/``criterion_at`` are signal time (the clock of the
    device samples); ``emitted_at`` is the wall time the engine produced the event.
    """

    TOPIC: ClassVar[str] = Topic.ALERTS_EVENTS
    VERSION: ClassVar[int] = 1

    alert_id: str = Field(max_length=200, pattern=r"^[A-Za-z0-9._:-]+$", description="Stable id of the episode")
    seq: int = Field(ge=0, description="0 when raised, +1 per later event of the same alert")
    stream_id: SourceId = Field(description="ECG stream or ESR tube the alert is about")
    kind: AlertKind
    state: AlertState
    severity: Severity
    technical: bool = Field(description="A technical alarm (signal or device), not a clinical one")
    started_at: datetime = Field(description="Signal time the condition began")
    criterion_at: datetime = Field(description="Signal time the alarm criterion was met (raised) or last changed")
    ended_at: datetime | None = Field(default=None, description="Signal time the condition ended (resolved)")
    emitted_at: datetime = Field(description="Wall time the engine emitted this event")
    rule: str = Field(max_length=100, description="Profile and rule that fired, e.g. 'default/af_episode'")
    message: str = Field(max_length=300, description="One line for a person")
    details: dict[str, float | int | str | bool] = Field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return f"{self.alert_id}:{self.seq}"

    def key(self) -> str:
        return self.stream_id

    def idempotency_key(self) -> str:
        return self.event_id


class WebhookDeadLetterV1(Message):
    """An alert event that could not be delivered to one subscription after every attempt."""

    TOPIC: ClassVar[str] = Topic.ALERTS_WEBHOOKS_DLQ
    VERSION: ClassVar[int] = 1

    subscription_id: str = Field(max_length=64)
    event: AlertEventV1
    attempts: int = Field(ge=1)
    last_error: str = Field(max_length=300, description="Status code or error type of the last attempt")
    failed_at: datetime

    def key(self) -> str:
        return self.subscription_id

    def idempotency_key(self) -> str:
        return f"{self.subscription_id}:{self.event.event_id}"
