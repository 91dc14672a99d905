"""One settings base for every service (pydantic-settings), read once at start-up.

Services subclass :class:`ServiceSettings` (HTTP services) or :class:`WorkerSettings` (stream
workers), construct it once in their ``main`` and pass the values down; no other module reads
the environment.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamdx.gc_tuning import DEFAULT_GC_THRESHOLD0

__all__ = ["ServiceSettings", "WorkerSettings", "service_parser", "settings_help"]


class ServiceSettings(BaseSettings):
    """Settings shared by all services. Environment variables are upper-case field names."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL")
    log_level: str = Field(default="INFO", description="Log level")
    topic_partitions: int = Field(default=4, ge=1, le=1024, description="Partitions of created topics")
    topic_replication: int = Field(default=1, ge=1, le=16, description="Replication factor of created topics")
    gc_threshold0: int = Field(
        default=DEFAULT_GC_THRESHOLD0, ge=0, le=10_000_000,
        description="Allocations between passes of the garbage collector's youngest generation (0: Python's "
        "default, 700); objects created at start-up are frozen out of its reach",
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="zstd", description="Compression of the record batches this service produces (zstd: ECG batches "
        "~2.8x smaller for ~5 us of CPU per record; consumers read any codec)")


class WorkerSettings(ServiceSettings):
    """Settings of a stream-worker service; each service overrides ``metrics_port`` with its own default."""

    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics (0.0.0.0 in containers)")
    metrics_port: int = Field(default=9100, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics")
    batch_max_records: int = Field(default=500, ge=1, le=100_000, description="Records per consumed batch")
    batch_timeout_ms: int = Field(default=200, ge=1, le=60_000, description="Max wait for a batch (ms)")
    kafka_session_timeout_ms: int = Field(
        default=10_000, ge=6_000, le=300_000,
        description="Consumer-group session timeout: how long the partitions of a worker that died without "
        "leaving its group wait before another worker takes them over",
    )
    checkpoint_interval_s: float = Field(
        default=5.0, ge=0, le=300,
        description="Seconds between state checkpoints of the stream workers (0: after every batch); outputs "
        "are published every batch either way, a crash replays at most this much (identical outputs)",
    )

    def consumer_options(self) -> dict[str, Any]:
        """The :class:`~streamdx.messaging.worker.StreamWorker` arguments every worker of the
        service takes from its settings (broker, batch wait, group session): one place to add
        the next one. Batch size and checkpoint interval stay per worker."""
        return {"bootstrap": self.kafka_bootstrap, "batch_timeout_ms": self.batch_timeout_ms,
                "session_timeout_ms": self.kafka_session_timeout_ms}


def settings_help(settings: type[BaseSettings]) -> str:
    """The environment variables of ``settings`` with their defaults, for a command's ``--help``."""
    lines = ["environment variables (read once at start):"]
    for name, field in settings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else "(secret)" if isinstance(default, SecretStr) else default
        lines.append(f"  {name.upper():<22} {field.description or ''} (default: {shown})")
    return "\n".join(lines)


def service_parser(prog: str, description: str, settings: type[BaseSettings]) -> argparse.ArgumentParser:
    """The parser of a ``streamdx serve`` command: no options, its environment variables in the help."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=settings_help(settings),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
