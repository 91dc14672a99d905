"""``streamdx tail`` on the real broker: published messages come out as one readable line each."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdx.encoding import encode_i16
from streamdx.messaging.publisher import Publisher
from streamdx.metrics import PublisherMetrics
from streamdx.schemas import EcgSamplesV1, EsrHeightV1
from tests.conftest import StackInfo

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def publisher(stack: StackInfo) -> AsyncIterator[Publisher]:
    pub = Publisher(stack.kafka_bootstrap, PublisherMetrics(CollectorRegistry()))
    await pub.start()
    yield pub
    await pub.stop()


def samples(stream: str, seq: int) -> EcgSamplesV1:
    adc = np.arange(250, dtype=np.int16)
    return EcgSamplesV1(stream_id=stream, seq=seq, fs=250.0, t0=T0 + timedelta(seconds=seq), gain=200.0, n=250,
                        data=encode_i16(adc))


async def start_tail(stack: StackInfo, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streamdx.cli", "tail", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "KAFKA_BOOTSTRAP": stack.kafka_bootstrap},
    )


async def test_tail_from_beginning_prints_one_line_per_message_of_the_stream(
    stack: StackInfo, publisher: Publisher
) -> None:
    stream, other = f"tail-{uuid.uuid4().hex[:8]}", f"tail-{uuid.uuid4().hex[:8]}"
    await publisher.publish_many([samples(other, 0), *[samples(stream, s) for s in range(3)], samples(other, 1)])
    proc = await start_tail(stack, "ecg.samples", "--stream", stream, "--from-beginning", "--limit", "3")
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert len(lines) == 3
    for seq, line in enumerate(lines):
        assert line.startswith(f"stream_id={stream} seq={seq} fs=250 ")
        assert f"t0={(T0 + timedelta(seconds=seq)).isoformat().replace('+00:00', 'Z')}" in line
        assert "n=250" in line and "data=<668 chars>" in line  # the base64 payload is shown by its size
        assert other not in line


async def test_tail_follows_new_messages_of_any_registered_topic(stack: StackInfo, publisher: Publisher) -> None:
    tube = f"tube-{uuid.uuid4().hex[:8]}"
    proc = await start_tail(stack, "esr.heights", "--stream", tube, "--limit", "1")
    for minute in range(120):  # bounded: publish until the tail (which starts at the end) has seen one
        if proc.returncode is not None:
            break
        await publisher.publish(EsrHeightV1(tube_id=tube, minute=minute, boundary_px=100.0 + minute, height=0.9,
                                            confidence=0.95, age=50, sex="F", simulated=True))
        try:
            await asyncio.wait_for(proc.wait(), timeout=0.5)
        except TimeoutError:
            continue
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    (line,) = out.decode().splitlines()
    assert line.startswith(f"tube_id={tube} minute=") and "height=0.9 " in line and "simulated=true" in line


async def test_tail_refuses_an_unknown_topic(stack: StackInfo) -> None:
    proc = await start_tail(stack, "no.such.topic")
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2 and "ecg.beats" in err.decode()
