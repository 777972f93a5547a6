"""``cancel_and_wait`` ends a task that swallows its cancellation, and names it while it does."""

from __future__ import annotations

import asyncio
import logging

import pytest

from meter_gateway.tasks import cancel_and_wait, raise_if_cancel_requested


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again_and_named(caplog) -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                swallowed += 1
                if swallowed == 2:
                    raise

    task = asyncio.create_task(stubborn(), name="stubborn worker")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="meter_gateway.tasks"):
        async with asyncio.timeout(5):
            await cancel_and_wait([task], grace=0.05)
    assert task.cancelled() and swallowed == 2
    [record] = [r for r in caplog.records if "after being cancelled" in r.getMessage()]
    assert "stubborn worker at " in record.getMessage() and "in stubborn" in record.getMessage()


async def test_tasks_that_end_when_cancelled_are_not_logged(caplog) -> None:
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="meter_gateway.tasks"):
        await cancel_and_wait([*tasks, None])
    assert all(t.cancelled() for t in tasks) and not caplog.records


async def test_a_cancellation_wait_for_swallows_is_noticed() -> None:
    """On Python 3.11 ``asyncio.wait_for`` returns the result if its future completes as the task is cancelled
    (CPython gh-86296); the request stays counted, and :func:`raise_if_cancel_requested` acts on it."""
    answer = asyncio.get_running_loop().create_future()
    reached: list[str] = []

    async def poller() -> None:
        await asyncio.wait_for(answer, 10)
        reached.append("after the call")
        raise_if_cancel_requested()
        reached.append("after the check")

    task = asyncio.create_task(poller())
    await asyncio.sleep(0)
    answer.set_result("registers")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "after the check" not in reached


async def test_no_cancellation_requested_is_not_an_error() -> None:
    raise_if_cancel_requested()
