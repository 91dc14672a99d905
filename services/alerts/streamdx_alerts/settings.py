"""Settings of the alerts service (read once in ``main``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from streamdx.settings import WorkerSettings

__all__ = ["AlertsSettings"]


class AlertsSettings(WorkerSettings):
    metrics_port: int = Field(default=8001, ge=0, le=65535,
                              description="Port of the alerts API (/v1/...), /healthz, /readyz and /metrics")
    alerts_admin_token: SecretStr | None = Field(
        default=None, description="Bearer token of the subscription API (unset: subscription API disabled)")
    alerts_profiles: Path | None = Field(
        default=None, description="YAML file of alert rule profiles (unset: the built-in default profile)")
    alerts_rhythm_group: str = Field(default="alerts-rhythm", description="Consumer group of the rhythm engine")
    alerts_status_group: str = Field(default="alerts-status",
                                     description="Consumer group of the signal-status (technical alarm) engine")
    alerts_esr_group: str = Field(default="alerts-esr", description="Consumer group of the ESR threshold rule")
    alerts_delivery_group: str = Field(default="alerts-webhooks", description="Consumer group of webhook delivery")
    alerts_log_group: str = Field(default="alerts-log",
                                  description="Consumer group of the alert log (alerts.events → Redis, /v1/alerts)")
    alerts_log_max: int = Field(default=100_000, ge=10, le=10_000_000,
                                description="Alerts kept in the alert log at most (the oldest resolved go first)")
    alerts_log_ttl_s: int = Field(default=0, ge=0, le=3650 * 24 * 3600,
                                  description="Seconds an alert is kept after its last event (0: until trimmed)")
    no_data_timeout_s: float = Field(default=30.0, gt=0, le=86_400,
                                     description="Wall-clock seconds without data before a no_data alarm")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60, description="Timeout of one webhook POST (s)")
    webhook_max_attempts: int = Field(default=10, ge=1, le=100,
                                      description="Attempts per delivery before the dead-letter topic")
    webhook_backoff_initial_s: float = Field(default=0.5, gt=0, le=60, description="First retry delay (s)")
    webhook_backoff_max_s: float = Field(default=60.0, gt=0, le=3600, description="Longest retry delay (s)")
    webhook_breaker_failures: int = Field(default=5, ge=1, le=1000,
                                          description="Consecutive failures that open an endpoint's circuit")
    webhook_breaker_reset_s: float = Field(default=30.0, gt=0, le=3600,
                                           description="Seconds an open circuit waits before a trial request")
    webhook_concurrency: int = Field(default=32, ge=1, le=1000, description="Webhook POSTs in flight at most")
    webhook_allow_private: bool = Field(
        default=False, description="Allow subscription URLs on loopback/private addresses (tests, on-prem)")
    webhook_backoff_jitter: bool = Field(
        default=True, description="Full jitter on retry delays (off: plain exponential, for tests and debugging)")
    webhook_lease_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="A claimed delivery not finished within this time (process died) is attempted again")
    webhook_poll_s: float = Field(default=0.25, gt=0, le=60,
                                  description="Longest wait of the dispatcher between looks at the Redis queue")
    webhook_record_ttl_s: int = Field(
        default=7 * 24 * 3600, ge=60, le=90 * 24 * 3600,
        description="Seconds a finished delivery is remembered (a redelivered event is not POSTed again)")
    stream_gauges_max: int = Field(default=500, ge=0, le=100_000,
                                   description="Streams exported with per-stream HR / AF-burden gauges at most")
