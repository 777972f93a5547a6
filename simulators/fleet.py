"""Many simulated chargers in one process (a site, a benchmark), started and stopped together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from simulators.chargepoint import SimCharger


class ChargerFleet:
    """Many simulated chargers in one process, started and stopped together."""

    def __init__(self, chargers: list[SimCharger] | None = None) -> None:
        self.chargers: dict[str, SimCharger] = {}
        for c in chargers or []:
            self.add(c)

    def add(self, charger: SimCharger) -> SimCharger:
        if charger.id in self.chargers:
            raise ValueError(f"two simulated chargers share the id {charger.id!r}")
        self.chargers[charger.id] = charger
        return charger

    def __getitem__(self, station_id: str) -> SimCharger:
        return self.chargers[station_id]

    def __iter__(self) -> Iterator[SimCharger]:
        return iter(self.chargers.values())

    def __len__(self) -> int:
        return len(self.chargers)

    async def start(self, url: str) -> None:
        for c in self.chargers.values():
            await c.start(url)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.chargers.values()))

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(c.wait_connected(True, timeout) for c in self.chargers.values()))
