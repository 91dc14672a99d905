"""``streamdx serve alerts``: rhythm and technical alarms, ESR alerts, signed webhooks, the alerts API."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from streamdx.messaging.worker import StreamWorker
from streamdx.metrics import AlertsMetrics
from streamdx.schemas import AlertEventV1, EcgLabelV1, EcgStatusV1, EsrForecastV1, Topic
from streamdx.settings import service_parser
from streamdx.state_store import StateStore
from streamdx.worker_service import ServiceParts, WorkerRuntime, serve_workers
from streamdx_alerts.api.streams import SummarySource, streams_router
from streamdx_alerts.engine.esr import EsrState
from streamdx_alerts.engine.rhythm import RhythmState
from streamdx_alerts.engine.technical import TechnicalState
from streamdx_alerts.handlers import EsrHandler, JsonStateCodec, RhythmHandler, StatusHandler, StreamGauges
from streamdx_alerts.no_data import NoDataWatchdog
from streamdx_alerts.rules import Profiles, RulesError, load_profiles
from streamdx_alerts.settings import AlertsSettings

__all__ = ["build_alerts_service", "build_parser", "main"]


def build_alerts_service(
    rt: WorkerRuntime[AlertsMetrics], settings: AlertsSettings, profiles: Profiles
) -> ServiceParts:
    """The alerts service's workers, background tasks and routers on shared dependencies (``rt.stop``:
    the service's stop event, which ends the waits for Redis of its handlers and webhook delivery)."""
    from streamdx_alerts.alert_log import AlertLog, RecordAlerts
    from streamdx_alerts.api.alerts import alerts_router
    from streamdx_alerts.api.subscriptions import SubscriptionsApi, subscriptions_router
    from streamdx_alerts.webhooks.service import build_webhook_delivery

    m = rt.metrics
    gauges = StreamGauges(m, settings.stream_gauges_max)

    def worker(topic: str, group: str, model: Any, codec: Any, **handler: Any) -> StreamWorker[Any, Any]:
        return StreamWorker(
            topic=topic, group=group, model=model, codec=codec, publisher=rt.publisher,
            store=StateStore(rt.redis, group), metrics=m, batch_max_records=settings.batch_max_records,
            checkpoint_interval_s=settings.checkpoint_interval_s, **settings.consumer_options(), **handler,
        )

    rhythm_store_group = settings.alerts_rhythm_group
    workers = [
        worker(Topic.ECG_LABELS, rhythm_store_group, EcgLabelV1, JsonStateCodec(RhythmState),
               batch_handler=RhythmHandler(profiles, m, gauges)),
        worker(Topic.ECG_STATUS, settings.alerts_status_group, EcgStatusV1, JsonStateCodec(TechnicalState),
               batch_handler=StatusHandler(profiles, m, rt.redis, gauges, stop=rt.stop)),
        worker(Topic.ESR_FORECASTS, settings.alerts_esr_group, EsrForecastV1, JsonStateCodec(EsrState),
               handler=EsrHandler(profiles, m)),
    ]
    delivery = build_webhook_delivery(settings, rt.redis, rt.publisher, m, stop=rt.stop)
    workers.append(delivery.worker)
    alert_log = AlertLog(rt.redis, max_alerts=settings.alerts_log_max, ttl_s=settings.alerts_log_ttl_s)
    workers.append(worker(Topic.ALERTS_EVENTS, settings.alerts_log_group, AlertEventV1, None,
                          handler=RecordAlerts(alert_log, stop=rt.stop)))
    watchdog = NoDataWatchdog(rt.redis, rt.publisher, profiles, m, settings.no_data_timeout_s)
    return ServiceParts(
        workers=workers,
        background=[delivery.run_dispatcher, watchdog.run],
        routers=[subscriptions_router(), streams_router, alerts_router()],
        app_state={
            "admin_token": settings.alerts_admin_token,
            "alert_log": alert_log,
            "summary_source": SummarySource(StateStore(rt.redis, rhythm_store_group), profiles),
            "webhook_subscriptions": SubscriptionsApi(settings, delivery.subscriptions, delivery.queue),
        },
    )


def build_parser() -> argparse.ArgumentParser:
    return service_parser(
        "streamdx serve alerts",
        "Run the alerts service: the rhythm engine (ecg.labels: AF episodes, brady/tachycardia, pauses, VT, "
        "unreadable signal), technical alarms and asystole (ecg.status), ESR forecast alerts (esr.forecasts) "
        "→ alerts.events, a no-data watchdog, and signed webhooks (Standard Webhooks) with retries, circuit "
        "breakers and a dead-letter topic. Serves the subscription API (/v1/subscriptions), Holter summaries "
        "(/v1/streams/{id}/summary), /docs, /healthz, /readyz and /metrics on METRICS_HOST:METRICS_PORT. Rules "
        "come from ALERTS_PROFILES (YAML). Configured by environment variables only; stops on Ctrl-C or SIGTERM.",
        AlertsSettings,
    )


def main(argv: Sequence[str]) -> int:
    build_parser().parse_args(argv)
    settings = AlertsSettings()
    try:
        profiles = load_profiles(settings.alerts_profiles)
    except RulesError as exc:
        print(f"streamdx serve alerts: {exc}")
        return 2

    async def build(rt: WorkerRuntime[AlertsMetrics]) -> ServiceParts:
        return build_alerts_service(rt, settings, profiles)

    return serve_workers("alerts", settings, AlertsMetrics(CollectorRegistry()), build)
