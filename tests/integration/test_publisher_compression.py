"""Produced record batches are compressed with the service's ``KAFKA_COMPRESSION`` codec and read
back unchanged by the same consumers (real broker)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.encoding import encode_i16
from streamdx.messaging.publisher import COMPRESSIONS, Publisher
from streamdx.metrics import PublisherMetrics
from streamdx.schemas import EcgSamplesV1
from tests.conftest import StackInfo
from tests.integration.kafka_reading import wait_for_messages

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("codec", COMPRESSIONS)
async def test_every_codec_round_trips_through_the_broker(stack: StackInfo, codec: str) -> None:
    stream = f"comp-{codec}-{secrets.token_hex(3)}"
    rng = np.random.default_rng(1)
    sent = [EcgSamplesV1(stream_id=stream, seq=k, fs=250.0, t0=datetime(2026, 1, 1, tzinfo=UTC), gain=200.0,
                         baseline=0, n=250, data=encode_i16(rng.integers(-2000, 2000, 250)), lead="MLII")
            for k in range(30)]  # fmt: skip
    pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()), compression=codec)
    await pub.start()
    try:
        await pub.publish_many(sent)
    finally:
        await pub.stop()
    got = await wait_for_messages(stack.kafka_bootstrap, EcgSamplesV1, stream, len(sent))
    assert got == sent


def test_an_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="compression must be one of"):
        Publisher("127.0.0.1:1", PublisherMetrics(CollectorRegistry()), compression="brotli")
