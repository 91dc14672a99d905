"""Settings of the web console (read once in ``main``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from streamdx.settings import ServiceSettings
from streamdx_inference.settings import default_models_dir

__all__ = ["WebSettings"]


class WebSettings(ServiceSettings):
    web_host: str = Field(default="127.0.0.1", description="Bind address of the console (0.0.0.0 in containers)")
    web_port: int = Field(default=8080, ge=0, le=65535, description="Port of the console")
    web_session_secret: SecretStr | None = Field(
        default=None, description="Key signing session cookies (unset: a random key per start; sessions end on "
        "restart)")
    web_cookie_secure: bool = Field(default=True, description="Send session cookies over HTTPS only (browsers "
                                                             "treat http://127.0.0.1 and localhost as secure)")
    web_session_max_age_s: int = Field(default=8 * 3600, ge=60, le=7 * 86_400, description="Session lifetime (s)")
    ingest_url: str = Field(default="http://127.0.0.1:8000", description="Base URL of the ingest service")
    ingest_admin_token: SecretStr | None = Field(default=None,
                                                 description="Ingest admin token (device keys for uploads)")
    alerts_url: str = Field(default="http://127.0.0.1:8001", description="Base URL of the alerts service API")
    alerts_admin_token: SecretStr | None = Field(default=None, description="Alerts API admin token")
    web_live_window_s: float = Field(default=30.0, ge=5, le=600, description="Seconds of signal kept per live stream")
    web_max_streams: int = Field(default=500, ge=1, le=100_000, description="Live streams kept in memory at most")
    web_max_upload_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=1 << 32,
                                      description="Largest accepted upload (bytes)")
    web_runs_dir: str = Field(default="reports/web-runs", description="Where evaluation runs and their reports go")
    web_data_root: str = Field(default="../shared/data",
                               description="Folder whose subfolders the evaluation page offers as datasets")
    models_dir: Path = Field(default_factory=default_models_dir,
                             description="Directory of the ONNX models (the console runs ecg_kaggle_beats for "
                                         "single-beat Kaggle CSVs); MODELS_DIR as for the inference service")
