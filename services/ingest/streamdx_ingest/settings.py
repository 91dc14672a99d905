"""Settings of the ingest service (read once in ``main``)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from streamdx.settings import ServiceSettings

__all__ = ["IngestSettings"]


class IngestSettings(ServiceSettings):
    """Environment: ``INGEST_HOST``, ``INGEST_PORT``, ``INGEST_ADMIN_TOKEN``, … plus the shared ones."""

    ingest_host: str = Field(default="127.0.0.1", description="Bind address (0.0.0.0 in containers)")
    ingest_port: int = Field(default=8000, ge=0, le=65535,
                             description="HTTP port of the API, /healthz, /readyz and /metrics")
    ingest_admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the admin endpoints (unset: admin API disabled)"
    )
    max_chunk_bytes: int = Field(default=512 * 1024, ge=1024, description="Largest ECG chunk body (bytes)")
    max_upload_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="Largest recording upload")
    max_abs_mv: float = Field(default=30.0, gt=0, description="Largest |sample| accepted in mV")
    max_seq_jump: int = Field(
        default=100_000, ge=1, description="Largest accepted seq step above a stream's last seq (409 beyond)"
    )
    max_clock_skew_s: float = Field(
        default=300.0, ge=0, description="How far a device chunk's t0 may be ahead of the server clock (422 beyond)"
    )
    max_t0_age_s: float = Field(
        default=30 * 86_400.0, ge=0,
        description="How far a device chunk's t0 may be behind the server clock, for devices that upload "
        "stored data late (422 beyond; uploaded recordings are replayed at the upload time)",
    )
    stream_lock_wait_s: float = Field(default=2.0, gt=0, description="Wait for a stream's lock before 429")
    replay_batch_chunks: int = Field(default=64, ge=1, le=10_000, description="Replay chunks per broker batch")
