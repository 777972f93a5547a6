"""At most one command in flight per station, and a bounded queue of the rest, on the gateway.

A station's OCPP connection runs one call at a time anyway (the ``ocpp`` package holds a lock per
connection), so running a second command beside the first would only make it wait inside the link with its
clock running. Here it waits its turn visibly, and a full queue refuses at once (a controller that sends a
station more than ``limit`` commands at a time is stuck or broken).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from csms.runtime.aio import cancel_and_wait

log = logging.getLogger("csms.bus")

Job = Callable[[], Awaitable[None]]


class StationQueues:
    def __init__(self, limit: int = 16):
        self.limit = limit
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def submit(self, station_id: str, job: Job) -> bool:
        """Queues ``job`` behind the station's others; False (and nothing queued) when its queue is full."""
        queue = self._queues.setdefault(station_id, deque())
        if len(queue) >= self.limit:
            return False
        queue.append(job)
        if station_id not in self._tasks:
            self._tasks[station_id] = asyncio.create_task(self._drain(station_id), name=f"bus commands {station_id}")
        return True

    def waiting(self, station_id: str) -> int:
        return len(self._queues.get(station_id, ()))

    async def _drain(self, station_id: str) -> None:
        queue = self._queues[station_id]
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("%s: a bus command failed", station_id)
        finally:
            del self._tasks[station_id]
            if not queue:
                self._queues.pop(station_id, None)

    async def stop(self) -> None:
        """Cancels every running command and forgets the queued ones."""
        self._queues.clear()
        await cancel_and_wait(list(self._tasks.values()))
