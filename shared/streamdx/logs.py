"""Structured JSON logs that never carry samples, images, secrets or patient data.

Only the event text and an allow-listed set of structured fields are written. Anything
else passed in ``extra={"fields": {...}}`` is dropped, so a careless call cannot leak a
sample array, an API key or a patient's age into the log stream.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ALLOWED_FIELDS", "JsonFormatter", "configure_logging", "log_fields"]

#: Structured fields that may appear in a log line. Identifiers here are opaque device /
#: stream ids, never patient identifiers.
ALLOWED_FIELDS = frozenset(
    {
        "service", "stream_id", "tube_id", "slide_id", "device_id", "seq", "topic", "partition",
        "offset", "group", "count", "duration_ms", "status", "reason", "gap", "recording_id",
        "beat_index", "bootstrap", "port", "records", "error_type", "retry_in_s", "attempt", "minute",
        "subscription_id", "event_id",
    }
)


def log_fields(**fields: Any) -> dict[str, Any]:
    """Build the ``extra`` argument of a logging call: ``log.info("x", extra=log_fields(seq=3))``."""
    return {"fields": fields}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and allow-listed fields."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "service": self._service,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            for k, v in fields.items():
                if k in ALLOWED_FIELDS and isinstance(v, str | int | float | bool | None):
                    out[k] = v
        if record.exc_info and record.exc_info[0] is not None:
            # The exception type only: messages can embed payload fragments.
            out["error_type"] = record.exc_info[0].__name__
        return json.dumps(out, separators=(",", ":"))


def configure_logging(service: str, level: str = "INFO") -> None:
    """Route the root logger to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
