"""Small asyncio helpers that behave on Python 3.11.

``asyncio.wait_for`` on 3.11 can swallow a cancellation that arrives as the awaited future completes
(CPython gh-86296), so a task cancelled at shutdown may run on and ``stop()`` waits forever. These
helpers use ``asyncio.timeout`` instead, and cancel a task until it has really ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Waits for ``event`` at most ``timeout`` seconds (None: forever); True if it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False


async def cancel_and_wait(tasks: Iterable[asyncio.Task | None], grace: float = 5.0) -> None:
    """Cancels every task and waits until each has ended, cancelling again if one swallowed it."""
    pending = {t for t in tasks if t is not None and not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        done, pending = await asyncio.wait(pending, timeout=grace)
        for t in done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                t.result()
