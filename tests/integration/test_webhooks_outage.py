"""A receiver that is really down for 60 s (nothing listening on its port) and comes back on
the same port loses nothing: every event arrives, once per webhook-id. Also: a dispatcher that
dies with a POST in flight is replaced and the delivery is made after its lease (at-least-once)."""

from __future__ import annotations

import asyncio
import collections
import socket
import time

import pytest

from streamdx_alerts.webhooks.signing import new_secret
from tests.conftest import StackInfo
from tests.integration.webhook_receiver import (
    Receiver,
    alert_event,
    delivery_rig,
    unique_stream,
    wait_until,
    webhook_settings,
)

pytestmark = pytest.mark.integration

OUTAGE_S = 60.0


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.slow
async def test_receiver_down_for_60_s_loses_nothing(stack: StackInfo) -> None:
    secret = new_secret()
    receiver = Receiver(secret)
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack, webhook_backoff_initial_s=0.5, webhook_backoff_max_s=4.0,
                                webhook_max_attempts=100, webhook_breaker_failures=5, webhook_breaker_reset_s=2.0)
    async with delivery_rig(stack, settings) as rig:
        await rig.subscribe(receiver.url, stream, secret=secret)
        first = alert_event(stream, 0)
        await rig.publisher.publish(first)
        assert await wait_until(lambda: receiver.delivered_ids() == [first.event_id], 20)

        await receiver.stop()
        down_at = time.monotonic()
        assert _port_closed(receiver.port)
        events = []
        for i in range(1, 31):  # alerts keep coming during the outage
            events.append(ev := alert_event(stream, i))
            await rig.publisher.publish(ev)
            await asyncio.sleep(0.5)
        while time.monotonic() - down_at < OUTAGE_S:
            assert _port_closed(receiver.port)
            await asyncio.sleep(1.0)
        print(f"during the outage: retries {rig.count('retry'):.0f}, postponed (circuit open) "
              f"{rig.count('circuit_open'):.0f}, dead letters {rig.count('dead_letter'):.0f}")
        assert rig.count("dead_letter") == 0
        assert rig.count("circuit_open") > 0
        assert await rig.delivery.queue.pending() >= len(events)

        await receiver.start()  # same port
        back_at = time.monotonic()
        assert await wait_until(lambda: len(set(receiver.delivered_ids())) == len(events) + 1, 20)
        print(f"all {len(events)} events delivered {time.monotonic() - back_at:.1f} s after the receiver came back")
        await asyncio.sleep(1.0)
        counts = collections.Counter(receiver.delivered_ids())
        assert set(counts) == {first.event_id, *(ev.event_id for ev in events)}
        assert max(counts.values()) == 1  # exactly once per webhook-id
        assert all(h.verified for h in receiver.hits)
    await receiver.stop()


async def test_dispatcher_dying_mid_post_is_replaced_after_the_lease(stack: StackInfo) -> None:
    secret = new_secret()
    receiver = Receiver(secret)
    await receiver.start()
    stream = unique_stream()
    settings = webhook_settings(stack, webhook_lease_s=2.0, webhook_timeout_s=10.0)
    hang, release = asyncio.Event(), asyncio.Event()
    original = receiver._hook

    async def slow_first(request):  # type: ignore[no-untyped-def]
        if not hang.is_set():
            hang.set()
            await release.wait()  # the sender dies while waiting for this response
        return await original(request)

    receiver._hook = slow_first  # type: ignore[method-assign]
    await receiver.stop()
    await receiver.start()
    async with delivery_rig(stack, settings) as rig:
        await rig.subscribe(receiver.url, stream, secret=secret)
        ev = alert_event(stream, 1)
        await rig.publisher.publish(ev)
        assert await wait_until(hang.is_set, 20)
        # the process dies: its dispatcher task is cancelled without releasing the claim
        dispatcher_task = next(t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith(  # type: ignore[union-attr]
            "WebhookDelivery.run_dispatcher"))
        for t in asyncio.all_tasks():
            if t.get_name().startswith("webhook:"):
                t.cancel()
        dispatcher_task.cancel()
        died_at = time.monotonic()
        # a new dispatcher (another process) picks the delivery up once the lease has run out
        async with delivery_rig(stack, settings, run_worker=False) as rig2:
            assert await wait_until(lambda: receiver.delivered_ids() == [ev.event_id], 15)
            waited = time.monotonic() - died_at
            print(f"redelivered {waited:.1f} s after the crash (lease 2 s)")
            assert 1.5 <= waited < 6.0
            # the receiver records the POST before it answers; the dispatcher counts it on the answer
            assert await wait_until(lambda: rig2.count("delivered") == 1, 5), rig2.count("delivered")
    release.set()
    await receiver.stop()
