"""One delivery per notification id within a process (adapters/notify/once.py), the part of the
channels' idempotency that no receiver can do for them."""

from __future__ import annotations

import asyncio

import pytest

from adapters.notify.once import OnceById


async def test_racing_callers_share_one_send_and_a_later_call_sends_nothing() -> None:
    once, sends = OnceById(), []

    async def send() -> None:
        sends.append(1)
        await asyncio.sleep(0.01)
    await asyncio.gather(*(once.run("n-1", send) for _ in range(10)))
    await once.run("n-1", send)
    assert sends == [1]


async def test_a_failed_send_is_not_remembered_so_a_retry_sends_again() -> None:
    once, sends = OnceById(), []

    async def send() -> None:
        sends.append(1)
        if len(sends) == 1:
            raise ConnectionError("down")
    with pytest.raises(ConnectionError):
        await once.run("n-1", send)
    await once.run("n-1", send)
    assert sends == [1, 1]


async def test_a_cancelled_caller_does_not_cancel_the_send_others_wait_on() -> None:
    once, done = OnceById(), asyncio.Event()

    async def send() -> None:
        await asyncio.sleep(0.02)
        done.set()
    first = asyncio.ensure_future(once.run("n-1", send))
    second = asyncio.ensure_future(once.run("n-1", send))
    await asyncio.sleep(0)
    first.cancel()
    await second
    assert done.is_set() and first.cancelled()


async def test_only_the_most_recent_ids_are_remembered() -> None:
    once, sends = OnceById(remembered=2), []

    async def send() -> None:
        sends.append(1)
    for notification_id in ("a", "b", "c", "a"):
        await once.run(notification_id, send)
    assert len(sends) == 4  # "a" was forgotten when "c" came
