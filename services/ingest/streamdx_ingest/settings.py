"""Settings of the ingest service (read once in ``main``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

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
    gateway_max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024,
                                   description="Largest gateway batch body (POST /v1/gateway/ecg, bytes)")
    gateway_max_chunks: int = Field(default=4096, ge=1, le=65535, description="Most chunks in one gateway batch")
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
    slides_spool_dir: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "streamdx-slides",
        description="Folder of uploaded slides while they are tiled (removed after tiling; needs room for "
        "the largest upload plus ~10 % for its tiles)",
    )
    slides_max_upload_bytes: int = Field(default=2 * 1024**3, ge=1024, description="Largest slide upload (413 beyond)")
    slides_max_side_px: int = Field(default=300_000, ge=1, description="Longest accepted slide side in pixels (422)")
    slides_max_decoded_pixels: int = Field(
        default=400_000_000, ge=1,
        description="Most pixels of a slide decoded whole (PNG, JPEG, non-pyramidal TIFF; 422 beyond)",
    )
    slides_tile_width: int = Field(default=1600, ge=64, le=4096, description="Tile width in slide pixels")
    slides_tile_height: int = Field(default=1200, ge=64, le=4096, description="Tile height in slide pixels")
    slides_tile_overlap: float = Field(default=1 / 3, ge=0, le=0.9, description="Tile overlap (fraction of a tile)")
    slides_min_tissue: float = Field(
        default=0.02, ge=0, le=1,
        description="Least stained-tissue fraction of a published tile (the tiling rule of the evaluation; "
        "background tiles are skipped)",
    )
    slides_max_tile_bytes: int = Field(
        default=700_000, ge=10_000, le=1_500_000,
        description="Byte budget of one tile JPEG (quality lowered until it fits; ~4/3 of it as base64 must "
        "stay under the broker's message limit, 1 MiB by default)",
    )
    slides_publish_batch: int = Field(default=16, ge=1, le=256, description="Tiles per broker batch")
    slides_tiling_threads: int = Field(default=2, ge=1, le=32, description="Threads reading and encoding tiles")
