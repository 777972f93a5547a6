"""Small asyncio helpers that behave on Python 3.11.

``asyncio.wait_for`` on 3.11 can swallow a cancellation that arrives as the awaited future completes
(CPython gh-86296), so a task cancelled at shutdown may run on and ``stop()`` waits forever. These
helpers use ``asyncio.timeout`` instead; :func:`cancel_and_wait` (kept in :mod:`meter_gateway.tasks`, which
both programs use) cancels a task until it has really ended.
"""

from __future__ import annotations

import asyncio

from meter_gateway.tasks import cancel_and_wait

__all__ = ["Flag", "Wake", "cancel_and_wait", "wait_event"]


class Wake:
    """An :class:`asyncio.Event` for one waiter at a time: a task's "something changed, run again".

    An ``asyncio.Event`` allocates its waiter queue when it is made (about 700 bytes); a site holds one of
    these per configured charger, 10,000 on a large one, and only its own worker ever waits on it."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> bool:
        if not self._set:
            if self._waiter is not None:
                raise RuntimeError("a Wake has one waiter at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return True


class Flag:
    """An :class:`asyncio.Event` (``set``, ``clear``, ``is_set``, ``wait``) whose waiters are kept only while there
    are some.

    An ``asyncio.Event`` allocates its waiter queue when it is made (about 700 bytes); a connected station holds one
    (:attr:`csms.ocpp.station.Station.ready`), 10,000 on a large site, and almost never has a waiter: it is set
    within a second of the connection, usually before anybody waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Sets the flag and wakes every waiter."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        """Returns True once the flag is set (at once if it is)."""
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
            return True
        finally:
            waiters = self._waiters
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    self._waiters = None


async def wait_event(event: asyncio.Event | Wake | Flag, timeout: float | None) -> bool:
    """Waits for ``event`` at most ``timeout`` seconds (None: forever); True if it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        return True
    except TimeoutError:
        return False
