"""The one producer wrapper: publish typed messages and wait for the broker's acknowledgement."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, OrderedDict
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2

from streamdx.messaging.codec import OutgoingRecord, encode_message
from streamdx.messaging.errors import Backpressure, BrokerUnavailable
from streamdx.metrics import PublisherMetrics
from streamdx.schemas.base import Message

__all__ = ["COMPRESSIONS", "KeyPartitioner", "Publisher"]

#: Codecs of produced record batches (aiokafka: gzip built in, the others through cramjam).
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


class KeyPartitioner:
    """The default Kafka partitioner (murmur2 of the key, as the Java client) with the partition of
    recent keys remembered: a platform key is a stream id that recurs on every record of the
    stream, and aiokafka's murmur2 is pure Python. Keyless records go to a random partition."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._cache: OrderedDict[tuple[bytes, int], int] = OrderedDict()
        self._max = max_keys

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        n = len(all_partitions)
        idx = self._cache.get((key, n))
        if idx is None:
            idx = (murmur2(key) & 0x7FFFFFFF) % n
            self._cache[(key, n)] = idx
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return all_partitions[idx]


class Publisher:
    """Publishes messages with ``acks=all``; a call returns only once every record is acknowledged.

    Parameters
    ----------
    bootstrap : str
        Kafka bootstrap servers.
    metrics : PublisherMetrics
        Where produced records are counted.
    max_in_flight : int
        Records allowed in flight at once; beyond it :class:`Backpressure` is raised
        immediately rather than queueing without bound.
    ack_timeout_s : float
        Time allowed for the acknowledgement before :class:`BrokerUnavailable`.
    client_id : str
        Client id the broker sees.
    compression : {"none", "gzip", "snappy", "lz4", "zstd"}
        Codec of the produced record batches (the service's ``KAFKA_COMPRESSION`` setting).
    """

    def __init__(
        self,
        bootstrap: str,
        metrics: PublisherMetrics,
        *,
        max_in_flight: int = 20_000,
        ack_timeout_s: float = 10.0,
        client_id: str = "streamdx",
        compression: str = "none",
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, not {compression!r}")
        self._bootstrap = bootstrap
        self._compression = None if compression == "none" else compression
        self._metrics = metrics
        self._slots = max_in_flight
        self._in_flight = 0
        self._ack_timeout_s = ack_timeout_s
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            linger_ms=5,  # records of several streams share a produce request (fewer broker round trips)
            compression_type=self._compression,  # per record batch; lz4/snappy/zstd through cramjam
            partitioner=KeyPartitioner(),
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=int(self._ack_timeout_s * 1000),
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def publish(self, msg: Message) -> None:
        """Publish one message and wait for its acknowledgement."""
        await self.publish_records([encode_message(msg)])

    async def publish_many(self, msgs: Sequence[Message], origin_ms: int | None = None) -> None:
        """Publish messages (order kept per key) and wait until all are acknowledged
        (``origin_ms``: the trace header's value, see :data:`~streamdx.messaging.codec.ORIGIN_HEADER`)."""
        await self.publish_records([encode_message(m, origin_ms) for m in msgs])

    async def publish_records(self, records: Sequence[OutgoingRecord]) -> None:
        """Send encoded records and wait for all acknowledgements."""
        if not records:
            return
        if self._producer is None:
            raise BrokerUnavailable("publisher is not started")
        if self._in_flight + len(records) > self._slots:
            raise Backpressure(f"{self._in_flight} records in flight")
        self._in_flight += len(records)
        try:
            futures = []
            for rec in records:
                futures.append(
                    await self._producer.send(rec.topic, rec.value, key=rec.key, headers=list(rec.headers))
                )
            await asyncio.wait_for(asyncio.gather(*futures), timeout=self._ack_timeout_s)
        except (KafkaConnectionError, KafkaTimeoutError, TimeoutError) as exc:
            raise BrokerUnavailable(f"broker did not acknowledge: {type(exc).__name__}") from exc
        except KafkaError as exc:
            raise BrokerUnavailable(f"broker error: {type(exc).__name__}") from exc
        finally:
            self._in_flight -= len(records)
        for topic, n in Counter(rec.topic for rec in records).items():
            self._metrics.produced.labels(topic=topic).inc(n)
