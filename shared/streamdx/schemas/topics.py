"""Topic names (DESIGN.md) and the dead-letter naming rule."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DLQ_SUFFIX", "Topic", "dlq_topic"]

DLQ_SUFFIX = ".dlq"


class Topic(StrEnum):
    """Every topic of the platform. ECG topics are keyed by ``stream_id``, ESR by ``tube_id``,
    slides by ``slide_id``."""

    ECG_SAMPLES = "ecg.samples"
    ECG_BEATS = "ecg.beats"
    ECG_STATUS = "ecg.status"
    ECG_LABELS = "ecg.labels"
    ALERTS_EVENTS = "alerts.events"
    ALERTS_WEBHOOKS_DLQ = "alerts.webhooks.dlq"
    ESR_FRAMES = "esr.frames"
    ESR_HEIGHTS = "esr.heights"
    ESR_FORECASTS = "esr.forecasts"
    SLIDES_TILES = "slides.tiles"
    SLIDES_DETECTIONS = "slides.detections"


def dlq_topic(topic: str) -> str:
    """Name of the dead-letter topic for ``topic`` (``ecg.samples`` → ``ecg.samples.dlq``)."""
    return f"{topic}{DLQ_SUFFIX}"
