"""The publisher's partitioner is Kafka's default (murmur2), remembered per key."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streamdx.messaging.publisher import KeyPartitioner


@given(keys=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=50), n=st.integers(1, 64))
def test_same_partition_as_the_default_partitioner(keys: list[bytes], n: int) -> None:
    parts = list(range(n))
    ours = KeyPartitioner(max_keys=8)  # smaller than the key set: the cache evicts and recomputes
    for key in keys + keys:
        assert ours(key, parts, parts) == DefaultPartitioner()(key, parts, parts)


def test_keyless_records_go_to_an_available_partition() -> None:
    assert KeyPartitioner()(None, [0, 1, 2], [2]) == 2
