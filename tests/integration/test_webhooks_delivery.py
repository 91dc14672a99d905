"""Webhook delivery end to end on the real broker and Redis, to a real HTTP receiver that
verifies every request with svix: signatures, retries, dead letters and replay, wrong
secrets, the circuit breaker, Kafka redelivery, latency."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from streamdx.schemas.alerts import WebhookDeadLetterV1
from streamdx_alerts.webhooks import replay
from streamdx_alerts.webhooks.queue import DUE, delivery_id
from streamdx_alerts.webhooks.signing import USER_AGENT, new_secret, payload_bytes
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.webhook_receiver import (
    Receiver,
    alert_event,
    delivery_rig,
    unique_stream,
    wait_until,
    webhook_settings,
)

pytestmark = pytest.mark.integration


async def test_signed_delivery_verifies_with_svix_and_is_fast(
    stack: StackInfo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = new_secret()
    receiver = Receiver(secret)
    await receiver.start()
    stream = unique_stream()
    try:
        async with delivery_rig(stack, webhook_settings(stack)) as rig:
            sub = await rig.subscribe(receiver.url, stream, secret=secret)
            other = await rig.subscribe(receiver.url, stream, secret=new_secret(), kinds=["bradycardia"])
            assert await wait_until(lambda: rig.delivery.worker.ready, 30)
            events = []
            for i in range(20):  # one at a time, emitted just before publication: event → POST latency
                events.append(ev := alert_event(stream, i))
                await rig.publisher.publish(ev)
                await asyncio.sleep(0.05)
            assert await wait_until(lambda: len(receiver.delivered()) >= len(events), 20)
            await asyncio.sleep(0.3)
            hits = receiver.delivered()
            assert sorted(h.webhook_id for h in hits) == sorted(ev.event_id for ev in events)
            assert all(h.verified for h in receiver.hits)  # svix verified every request
            by_id = {ev.event_id: ev for ev in events}
            for h in hits:
                ev = by_id[h.webhook_id]
                assert h.headers["idempotency-key"] == ev.event_id
                assert h.headers["user-agent"] == USER_AGENT
                assert h.headers["content-type"] == "application/json"
                assert h.headers["webhook-signature"].startswith("v1,")
                assert h.body is not None and h.body["type"] == "alert.raised"
                assert h.body["data"]["alert_id"] == ev.alert_id
                assert abs(int(h.headers["webhook-timestamp"]) - h.at) < 2
            latencies = sorted(h.at - by_id[h.webhook_id].emitted_at.timestamp() for h in hits)
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            print(f"event → POST latency: median {latencies[len(latencies) // 2] * 1000:.0f} ms, "
                  f"max {latencies[-1] * 1000:.0f} ms")
            assert p99 < 1.0
            # the receiver records a POST before the dispatcher has read the response and counted it
            await wait_until(lambda: rig.count("delivered") == len(events), 5)
            assert rig.count("delivered") == len(events)
            hist = rig.metrics.registry.get_sample_value("streamdx_webhook_event_to_post_seconds_count")
            assert hist == len(events)
            state = await rig.delivery.queue.state(sub.id, events[0].event_id)
            assert state["state"] == "delivered" and state["attempts"] == "1"
            assert await rig.delivery.queue.state(other.id, events[0].event_id) == {}  # filtered out
    finally:
        await receiver.stop()
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert secret not in text and secret[6:] not in text


async def _delivered(rig: Any, sub_id: str, event_id: str) -> bool:
    return (await rig.delivery.queue.state(sub_id, event_id)).get("state") == "delivered"


async def test_receiver_failing_twice_gets_the_event_on_attempt_three(stack: StackInfo) -> None:
    secret = new_secret()
    receiver = Receiver(secret, fail_next=2, fail_status=500)
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack, webhook_backoff_initial_s=0.3, webhook_backoff_jitter=False)
    try:
        async with delivery_rig(stack, settings) as rig:
            sub = await rig.subscribe(receiver.url, stream, secret=secret)
            ev = alert_event(stream, 1)
            await rig.publisher.publish(ev)
            assert await wait_until(lambda: len(receiver.delivered()) == 1, 20)
            attempts = receiver.attempts_of(ev.event_id)
            assert [h.status for h in attempts] == [500, 500, 200]
            assert all(h.verified for h in attempts)
            gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
            print("gaps between attempts (s):", [round(g, 3) for g in gaps])
            assert 0.25 <= gaps[0] < 0.9 and 0.55 <= gaps[1] < 1.5 and gaps[1] > gaps[0]
            # the receiver records the 200 before the dispatcher has read it, counted it and stored the state
            await wait_until(lambda: rig.count("delivered") == 1, 5)
            assert rig.count("retry") == 2 and rig.count("delivered") == 1
            await wait_until(lambda: _delivered(rig, sub.id, ev.event_id), 5)
            state = await rig.delivery.queue.state(sub.id, ev.event_id)
            assert state["state"] == "delivered" and state["attempts"] == "3"
    finally:
        await receiver.stop()


async def test_retry_after_is_honoured(stack: StackInfo) -> None:
    secret = new_secret()
    receiver = Receiver(secret, fail_next=1, fail_status=429, retry_after="1")
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack, webhook_backoff_initial_s=0.05, webhook_backoff_jitter=False)
    try:
        async with delivery_rig(stack, settings) as rig:
            await rig.subscribe(receiver.url, stream, secret=secret)
            ev = alert_event(stream, 1)
            await rig.publisher.publish(ev)
            assert await wait_until(lambda: len(receiver.delivered()) == 1, 20)
            first, second = receiver.attempts_of(ev.event_id)
            assert first.status == 429 and second.status == 200
            assert second.at - first.at >= 0.95  # Retry-After: 1, not the 0.05 s back-off
    finally:
        await receiver.stop()


async def test_exhausted_attempts_dead_letter_then_replay_delivers(
    stack: StackInfo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    secret = new_secret()
    receiver = Receiver(secret, always_status=503)
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack, webhook_max_attempts=3, webhook_backoff_initial_s=0.05,
                                webhook_backoff_max_s=0.2)
    try:
        async with delivery_rig(stack, settings) as rig:
            sub = await rig.subscribe(receiver.url, stream, secret=secret)
            ev = alert_event(stream, 1)
            await rig.publisher.publish(ev)

            async def dead_lettered() -> list[WebhookDeadLetterV1]:
                return await read_messages(stack.kafka_bootstrap, WebhookDeadLetterV1, sub.id)

            assert await wait_until(dead_lettered, 20, step_s=0.3)
            (letter,) = await dead_lettered()
            assert letter.event == ev and letter.attempts == 3 and letter.last_error == "http_503"
            assert [h.status for h in receiver.attempts_of(ev.event_id)] == [503, 503, 503]
            assert rig.count("dead_letter") == 1
            assert (await rig.delivery.queue.state(sub.id, ev.event_id))["state"] == "dead"
            # the dead delivery left the due queue (other tests' deliveries may still be in it)
            assert await rig.redis.zscore(DUE, delivery_id(sub.id, ev.event_id)) is None

            # the receiver is fixed; an operator replays the dead letter with the CLI
            receiver.always_status = None
            monkeypatch.setenv("KAFKA_BOOTSTRAP", stack.kafka_bootstrap)
            monkeypatch.setenv("REDIS_URL", stack.redis_url)
            args = ["--subscription", sub.id, "--event-id", ev.event_id]
            assert await asyncio.to_thread(replay.main, [*args, "--dry-run"]) == 0
            assert "would_queue" in capsys.readouterr().out
            assert len(receiver.hits) == 3
            assert await asyncio.to_thread(replay.main, args) == 0
            out = capsys.readouterr().out
            assert sub.id in out and ev.event_id in out and "queued" in out
            assert await wait_until(lambda: len(receiver.delivered()) == 1, 10)
            assert receiver.delivered_ids() == [ev.event_id]
            # the receiver records the POST before the dispatcher has read the response and stored it
            await wait_until(lambda: _delivered(rig, sub.id, ev.event_id), 5)
            assert (await rig.delivery.queue.state(sub.id, ev.event_id))["state"] == "delivered"
            # replaying again does not send it twice
            assert await asyncio.to_thread(replay.main, args) == 0
            assert "already_delivered" in capsys.readouterr().out
            await asyncio.sleep(0.5)
            assert len(receiver.delivered()) == 1
    finally:
        await receiver.stop()


async def test_wrong_secret_is_rejected_by_the_receiver_and_dead_lettered(
    stack: StackInfo, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver(new_secret())  # the receiver was configured with another secret
    await receiver.start()
    stream = unique_stream()
    secret = new_secret()
    try:
        async with delivery_rig(stack, webhook_settings(stack)) as rig:
            sub = await rig.subscribe(receiver.url, stream, secret=secret)
            ev = alert_event(stream, 1)
            await rig.publisher.publish(ev)
            assert await wait_until(lambda: len(receiver.hits) >= 1, 20)
            assert await wait_until(lambda: rig.count("dead_letter") == 1, 10)
            (hit,) = receiver.hits
            assert not hit.verified and hit.status == 401  # svix raised: the receiver refused it
            assert rig.count("rejected") == 1 and rig.count("retry") == 0  # 401 is permanent
            letters = await read_messages(stack.kafka_bootstrap, WebhookDeadLetterV1, sub.id)
            assert [(x.event.event_id, x.last_error, x.attempts) for x in letters] == [(ev.event_id, "http_401", 1)]
            # the body was signed with the subscription's secret: it verifies with it
            from svix.webhooks import Webhook

            Webhook(secret).verify(payload_bytes(ev), hit.headers)
    finally:
        await receiver.stop()
    assert secret not in caplog.text and secret[6:] not in "".join(str(r.__dict__) for r in caplog.records)


async def test_rotated_secret_still_verifies_with_the_old_one_during_the_grace(stack: StackInfo) -> None:
    old = new_secret()
    receiver = Receiver(old)
    await receiver.start()
    stream = unique_stream()
    try:
        async with delivery_rig(stack, webhook_settings(stack)) as rig:
            sub = await rig.subscribe(receiver.url, stream, secret=old)
            rotated = await rig.delivery.subscriptions.rotate_secret(sub.id, new_secret())
            assert rotated is not None
            ev = alert_event(stream, 1)
            await rig.publisher.publish(ev)
            assert await wait_until(lambda: len(receiver.delivered()) == 1, 20)
            (hit,) = receiver.hits
            assert hit.verified and len(hit.headers["webhook-signature"].split(" ")) == 2
            from svix.webhooks import Webhook

            Webhook(rotated.secret.get_secret_value()).verify(payload_bytes(ev), hit.headers)
    finally:
        await receiver.stop()


async def test_breaker_opens_and_postpones_without_dropping(stack: StackInfo) -> None:
    secret = new_secret()
    receiver = Receiver(secret, always_status=500)
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack, webhook_breaker_failures=3, webhook_breaker_reset_s=1.0,
                                webhook_backoff_initial_s=0.05, webhook_backoff_max_s=0.2,
                                webhook_max_attempts=100, webhook_concurrency=1)
    try:
        async with delivery_rig(stack, settings) as rig:
            await rig.subscribe(receiver.url, stream, secret=secret)
            events = [alert_event(stream, i) for i in range(10)]
            await rig.publisher.publish_many(events)
            assert await wait_until(lambda: rig.count("circuit_open") >= 5, 20)
            failing_for = 3.0
            await asyncio.sleep(failing_for)
            # open circuit: about one trial POST per reset period, not one per back-off of 0.05..0.2 s
            posts_while_failing = len(receiver.hits)
            print("POSTs while failing:", posts_while_failing, "postponements:", rig.count("circuit_open"))
            assert posts_while_failing <= 3 + 2 * (failing_for + 3)
            assert rig.count("circuit_open") >= 10
            assert rig.count("dead_letter") == 0  # postponed, not counted as attempts nor dropped
            receiver.always_status = None
            assert await wait_until(lambda: len(receiver.delivered()) >= len(events), 20)
            await asyncio.sleep(0.5)
            assert sorted(receiver.delivered_ids()) == sorted(ev.event_id for ev in events)
    finally:
        await receiver.stop()


async def test_redelivered_event_is_not_posted_twice(stack: StackInfo) -> None:
    secret = new_secret()
    receiver = Receiver(secret)
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack)
    try:
        async with delivery_rig(stack, settings) as rig:
            await rig.subscribe(receiver.url, stream, secret=secret)
            ev = alert_event(stream, 1)
            await rig.publisher.publish(ev)
            assert await wait_until(lambda: len(receiver.delivered()) == 1, 20)
            await rig.publisher.publish(ev)  # the same event again (a producer retry)
            await rig.publisher.publish(alert_event(stream, 1, state="updated", seq=1))  # a real next event
            assert await wait_until(lambda: len(receiver.delivered()) == 2, 20)
            # a second consumer group (with its own dispatcher) reads the whole topic again, as
            # after lost checkpoints; a marker event after them (same key, same partition) tells
            # when it has read them all
            again = settings.model_copy(update={"alerts_delivery_group": settings.alerts_delivery_group + "-b"})
            async with delivery_rig(stack, again) as rig2:
                marker = alert_event(stream, 2)
                await rig2.publisher.publish(marker)
                assert await wait_until(lambda: len(receiver.delivered()) == 3, 30)
                assert rig2.delivery.handler.queued <= 1  # only the marker was new (if rig's worker was not first)
                await asyncio.sleep(0.5)
            assert sorted(receiver.delivered_ids()) == sorted([ev.event_id, f"{ev.alert_id}:1", marker.event_id])
            assert len(receiver.hits) == 3
    finally:
        await receiver.stop()


def test_replay_help_is_fast() -> None:
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        replay.main(["--help"])
    assert info.value.code == 0 and time.monotonic() - started < 2.0
    assert replay.parse_since("2h", datetime(2026, 1, 1, 12, tzinfo=UTC)) == datetime(2026, 1, 1, 10, tzinfo=UTC)
