"""``cancel_and_wait`` ends a task that swallows its cancellation, and names it while it does."""

from __future__ import annotations

import asyncio
import logging

from csms.runtime.aio import cancel_and_wait


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
    with caplog.at_level(logging.WARNING, logger="csms.runtime"):
        async with asyncio.timeout(5):
            await cancel_and_wait([task], grace=0.05)
    assert task.cancelled() and swallowed == 2
    [record] = [r for r in caplog.records if "after being cancelled" in r.getMessage()]
    assert "stubborn worker at " in record.getMessage() and "in stubborn" in record.getMessage()


async def test_tasks_that_end_when_cancelled_are_not_logged(caplog) -> None:
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
    with caplog.at_level(logging.WARNING, logger="csms.runtime"):
        await cancel_and_wait([*tasks, None])
    assert all(t.cancelled() for t in tasks) and not caplog.records
