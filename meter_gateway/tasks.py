"""Ending background tasks for sure on Python 3.11.

``asyncio.wait_for`` on 3.11 swallows a cancellation that arrives as the awaited future completes
(CPython gh-86296). pymodbus and aiomqtt both await through it, so a task cancelled at shutdown can run on
(measured in CI: a meter's poll loop kept polling and the gateway's ``aclose`` waited forever). The cancel
request is still counted by :meth:`asyncio.Task.cancelling`, which is how a loop can notice it was lost.

This lives in the meter gateway, the innermost package both programs use, so that one copy serves both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)


def raise_if_cancel_requested() -> None:
    """Raises ``CancelledError`` if the current task was asked to stop and a library swallowed the request."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_and_wait(tasks: Iterable[asyncio.Task | None], grace: float = 5.0) -> None:
    """Cancels every task and waits until each has ended, cancelling again if one swallowed it. A task still
    running ``grace`` s after a cancellation is logged with where it waits: a shutdown that never ends names it."""
    pending = {t for t in tasks if t is not None and not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        done, pending = await asyncio.wait(pending, timeout=grace)
        for t in done:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                t.result()
        if pending:
            log.warning("%d task(s) still running %g s after being cancelled; cancelling again: %s", len(pending),
                        grace, "; ".join(f"{t.get_name()} at {_where(t)}" for t in pending))


def _where(task: asyncio.Task) -> str:
    """The line a task waits at (its innermost frame), or "?"."""
    stack = task.get_stack()
    if not stack:
        return "?"
    frame = stack[-1]
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
