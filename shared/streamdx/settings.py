"""One settings base for every service (pydantic-settings), read once at start-up.

Services subclass :class:`ServiceSettings`, construct it once in their ``main`` and pass the
values down; no other module reads the environment.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Settings shared by all services. Environment variables are upper-case field names."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers")
    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL")
    log_level: str = Field(default="INFO", description="Log level")
    metrics_port: int = Field(default=9100, ge=0, le=65535, description="/healthz, /readyz, /metrics port")
    topic_partitions: int = Field(default=4, ge=1, le=1024, description="Partitions of auto-created topics")
    topic_replication: int = Field(default=1, ge=1, le=16, description="Replication factor of created topics")
    batch_max_records: int = Field(default=500, ge=1, le=100_000, description="Records per consumed batch")
    batch_timeout_ms: int = Field(default=200, ge=1, le=60_000, description="Max wait for a batch (ms)")
