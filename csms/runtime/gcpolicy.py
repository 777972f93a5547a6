"""Garbage-collector policy for a central system holding thousands of live sessions.

CPython 3.11's full (generation 2) collection walks every tracked object. With 10,000 stations
connected, ``csms serve`` holds about 1.5 million of them (websocket connections, tasks, sessions,
state), a full collection takes 0.7-1.5 s, and it runs every few seconds while stations connect
and every 10-20 s afterwards (meter samples that live one metering interval count as long-lived).
The event loop stands still meanwhile: every station waits, which was the whole p99 at 10,000
stations. It almost never frees anything; sessions are freed by reference counting.

:class:`FrozenHeap` moves what has survived so far into the permanent generation (``gc.freeze()``)
now and then, so the collector's automatic passes only walk what is new. Cyclic garbage among
frozen objects (rare: a closed session caught in a cycle) is reclaimed by a full collection every
``full_every`` seconds, the only pause left, and at shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger("csms.gc")


class FrozenHeap:
    """Owns a background task that freezes the surviving heap every ``freeze_every`` seconds."""

    def __init__(self, freeze_every: float = 5.0, full_every: float = 3600.0, clock=time.monotonic):
        self.freeze_every, self.full_every, self._clock = freeze_every, full_every, clock
        self._task: asyncio.Task | None = None
        self._last_full = clock()
        self.full_collections = 0

    def step(self) -> None:
        """One round: a full collection if one is due, then freeze what is alive."""
        if self._clock() - self._last_full >= self.full_every:
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            self._last_full = self._clock()
            self.full_collections += 1
            log.info("full garbage collection: %d objects freed in %.0f ms", freed,
                     (time.perf_counter() - started) * 1000)
        else:
            gc.collect(1)  # leave garbage of the young generations out of the frozen set
        gc.freeze()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.freeze_every)
            self.step()

    async def __aenter__(self) -> "FrozenHeap":
        gc.collect()
        gc.freeze()  # everything built at start-up (config, compiled schemas, modules) lives forever
        self._task = asyncio.create_task(self._run(), name="gc-freeze")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        gc.unfreeze()
