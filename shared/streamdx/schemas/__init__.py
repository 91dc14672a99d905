"""Versioned message schemas: the contract between StreamDx services.

Every Kafka message value is the JSON of one of these models; its ``schema`` header names
``"<topic>/v<version>"``. A consumer validates with the model registered for the header and
sends anything that fails to the topic's dead-letter topic with the reason.
"""

from streamdx.schemas.alerts import AlertEventV1, WebhookDeadLetterV1
from streamdx.schemas.base import Message, registry, schema_id
from streamdx.schemas.ecg import (
    BEAT_LENGTH,
    BEAT_R_INDEX,
    EcgBeatV1,
    EcgLabelV1,
    EcgSamplesV1,
    EcgStatusV1,
    SignalQuality,
)
from streamdx.schemas.esr import EsrForecastV1, EsrFrameV1, EsrHeightV1
from streamdx.schemas.slides import Detection, SlideDetectionsV1, SlideTileV1
from streamdx.schemas.topics import DLQ_SUFFIX, Topic, dlq_topic

__all__ = [
    "BEAT_LENGTH",
    "BEAT_R_INDEX",
    "DLQ_SUFFIX",
    "AlertEventV1",
    "Detection",
    "EcgBeatV1",
    "EcgLabelV1",
    "EcgSamplesV1",
    "EcgStatusV1",
    "EsrForecastV1",
    "EsrFrameV1",
    "EsrHeightV1",
    "Message",
    "SignalQuality",
    "SlideDetectionsV1",
    "SlideTileV1",
    "Topic",
    "WebhookDeadLetterV1",
    "dlq_topic",
    "registry",
    "schema_id",
]
