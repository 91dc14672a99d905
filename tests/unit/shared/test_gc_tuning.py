"""Garbage-collector tuning of service processes: the threshold is set, start-up objects are
frozen, and every collector pass is observed in the pause histogram until it is closed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from streamdx.gc_tuning import GcPauses, tune_gc, tuned_gc
from streamdx.metrics import PublisherMetrics


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def _passes(registry: CollectorRegistry, generation: int) -> float:
    return registry.get_sample_value("streamdx_gc_pause_seconds_count", {"generation": str(generation)}) or 0.0


def test_tune_gc_freezes_start_up_objects_and_sets_the_threshold(restored_gc: None) -> None:
    survivor: list[list[int]] = [[] for _ in range(100)]
    tune_gc(12_345)
    assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() >= len(survivor)
    tune_gc(0)  # 0 keeps the threshold
    assert gc.get_threshold()[0] == 12_345


def test_tuned_gc_restores_the_settings_after_its_block(restored_gc: None) -> None:
    before = gc.get_threshold()
    with tuned_gc(23_456):
        assert gc.get_threshold()[0] == 23_456
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_every_pass_is_observed_until_closed() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(PublisherMetrics(registry))
    try:
        gc.collect(0)
        gc.collect(2)
        assert _passes(registry, 0) >= 1 and _passes(registry, 2) >= 1
        assert (registry.get_sample_value("streamdx_gc_pause_seconds_sum", {"generation": "2"}) or 0) > 0
    finally:
        pauses.close()
    before = _passes(registry, 2)
    gc.collect(2)
    assert _passes(registry, 2) == before
    pauses.close()  # idempotent
