"""The one clock a simulation runs on, so chargers, EVs, loads and the meter agree on what time it is.

:class:`SimClock` follows the wall clock, optionally ``speed`` times faster (only sensible when no real
central system is on the other end, since OCPP timestamps would run ahead of it). :class:`ManualClock`
moves only when a test or a stepping loop calls :meth:`ManualClock.advance`, which makes a scenario
exactly reproducible. Both carry the seeded random generator every simulated component draws from.
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone


class SimClock:
    def __init__(self, speed: float = 1.0, start: float | None = None, seed: int = 0) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.rng = random.Random(seed)
        self._real0 = time.monotonic()
        self._sim0 = time.time() if start is None else start

    def now(self) -> float:
        """Simulated POSIX time in seconds."""
        return self._sim0 + (time.monotonic() - self._real0) * self.speed

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), timezone.utc)

    async def sleep(self, seconds: float) -> None:
        """Sleeps ``seconds`` of simulated time."""
        await asyncio.sleep(max(0.0, seconds) / self.speed)


class ManualClock(SimClock):
    """A clock that stands still until advanced; sleepers wake once it has passed their deadline."""

    def __init__(self, start: float = 1_795_000_000.0, seed: int = 0) -> None:
        super().__init__(1.0, start, seed)
        self._t = start
        self._moved = asyncio.Event() if _has_loop() else None

    def now(self) -> float:
        return self._t

    def advance(self, seconds: float) -> float:
        self._t += seconds
        if self._moved is not None:
            self._moved.set()
            self._moved = asyncio.Event()
        return self._t

    async def sleep(self, seconds: float) -> None:
        deadline = self._t + max(0.0, seconds)
        if self._moved is None:
            self._moved = asyncio.Event()
        while self._t < deadline:
            await self._moved.wait()


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
