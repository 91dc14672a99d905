"""Wire codec: a pydantic message ⇄ Kafka key, value and headers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError

from streamdx.schemas.base import Message, registry

__all__ = ["ORIGIN_HEADER", "OutgoingRecord", "PoisonMessage", "decode_message", "encode_message", "record_origin_ms"]

M = TypeVar("M", bound=Message)
SCHEMA_HEADER = "schema"
CONTENT_TYPE = ("content-type", b"application/json")
#: Trace header: when the data a record derives from arrived at ingest (epoch ms, decimal ASCII).
#: Ingest sets it on ``ecg.samples``; every worker copies it from an input to the outputs derived
#: from it, so a label or an alert carries the arrival time of the chunk that completed it.
ORIGIN_HEADER = "origin-ts"


class PoisonMessage(ValueError):
    """A record that can never be processed (bad schema, bad JSON, failed validation)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record ready for the producer."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def encode_message(msg: Message, origin_ms: int | None = None) -> OutgoingRecord:
    """Serialise ``msg`` to its topic, key, JSON value and ``schema`` header (and the
    :data:`ORIGIN_HEADER` trace header when ``origin_ms`` is given)."""
    headers: tuple[tuple[str, bytes], ...] = (
        (SCHEMA_HEADER, msg.schema_name().encode()),
        CONTENT_TYPE,
        ("idempotency-key", msg.idempotency_key().encode()),
    )
    if origin_ms is not None:
        headers += ((ORIGIN_HEADER, str(int(origin_ms)).encode()),)
    return OutgoingRecord(topic=msg.TOPIC, key=msg.key().encode(), value=msg.model_dump_json().encode(),
                          headers=headers)


def record_origin_ms(headers: Sequence[tuple[str, bytes]] | None, timestamp_ms: int | None) -> int | None:
    """A consumed record's origin time (epoch ms): its :data:`ORIGIN_HEADER`, else its own timestamp.

    A malformed header is ignored (the record's timestamp is used): tracing never rejects data.
    """
    for name, raw in headers or ():
        if name == ORIGIN_HEADER:
            try:
                return int(raw)
            except ValueError:
                break
    return int(timestamp_ms) if timestamp_ms is not None and timestamp_ms >= 0 else None


def decode_message(value: bytes | None, headers: list[tuple[str, bytes]] | tuple, expected: type[M]) -> M:
    """Validate a record against ``expected``; raise :class:`PoisonMessage` with a reason."""
    if value is None:
        raise PoisonMessage("empty", "record has no value")
    schema = None
    for name, raw in headers or ():
        if name == SCHEMA_HEADER:
            schema = raw.decode("utf-8", "replace")
    if schema is not None and schema != expected.schema_name():
        known = "known" if schema in registry else "unknown"
        raise PoisonMessage("schema_mismatch", f"{known} schema {schema!r}, expected {expected.schema_name()!r}")
    try:
        return expected.model_validate_json(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise PoisonMessage("validation", f"{where}: {first.get('msg', 'invalid')}") from exc
