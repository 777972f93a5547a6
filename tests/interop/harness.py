"""Real-charger behaviours against the central system as users get it: shipped defaults, a simulated building.

The central system runs in-process (:class:`csms.runtime.app.CentralSystemApp`, exactly what ``csms serve`` runs) on
real websockets, with its embedded meter gateway polling a simulated Amp Guard over Modbus TCP. The chargers
and cars are the simulators, made to misbehave like real firmwares (``simulators.misbehaviour.Misbehaviour``).
Nothing in ``[smart_charging]`` or the timeouts is changed: what a test sees is what a site sees.

Assertions are on the site physics (what flows through the fuse, :class:`simulators.site.Site`) and on what
the central system stored (events, transactions, decisions in its SQLite file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csms.config import parse_config
from csms.runtime.app import CentralSystemApp
from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.clock import SimClock
from simulators.ev import EVModel
from simulators.misbehaviour import Misbehaviour
from simulators.ports import free_port
from simulators.simulation import Simulation
from simulators.site import Constant

PASSWORD = "0123456789abcdef"
METER = "AG1234567G"
GROUP = "garage"
#: Seconds between two samples of the site physics.
SAMPLE_EVERY = 0.05


@dataclass
class Charger:
    id: str
    version: str = "ocpp1.6"
    max_current: float = 16.0
    offline_current: float = 6.0
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)


def site_config(tmp: Path, chargers: list[Charger], fuse: float, meter_port: int) -> Any:
    data = {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1},
        "storage": {"database": str(tmp / "csms.sqlite")},
        "organisations": [{"id": "org", "name": "Interop"}],
        "meters": [{"serial": METER, "pin": "12345678", "organisation": "org", "variant": "public",
                    "host": "127.0.0.1", "port": meter_port}],
        "chargers": [{"id": c.id, "password": PASSWORD, "organisation": "org", "max_current": c.max_current,
                      "offline_current": c.offline_current} for c in chargers],
        "load_balancers": [{"id": GROUP, "name": "Garage", "organisation": "org", "meter": METER,
                            "chargers": [c.id for c in chargers], "supply_max_current": fuse,
                            "max_current_online": fuse, "max_current_offline": fuse / 2}],
    }
    return parse_config(data, "interop.toml")


def ev(**kw: Any) -> EVModel:
    """A car as the e2e suite models one: starts 2 s after it is allowed, follows a new offer within 1.5 s."""
    return EVModel(**{"max_current": 32.0, "phases": 3, "capacity_kwh": 60, "soc_start": 0.3, "ramp_delay": 2.0,
                      "ramp_time": 1.5, **kw})


@dataclass
class Rig:
    app: CentralSystemApp
    sim: Simulation
    db: Path
    fuse: float
    peaks: list[tuple[float, tuple[float, float, float]]] = field(default_factory=list)

    def charger(self, cid: str) -> SimCharger:
        return self.sim.fleet[cid]

    @property
    def site(self):
        return self.sim.sites[METER]

    def now(self) -> float:
        return self.sim.clock.now()

    def worst(self, since: float = float("-inf")) -> float:
        """The largest building phase current the fuse carried since ``since``."""
        return max((max(r.phases) for r in self.site.history if r.t >= since), default=0.0)

    def events(self, kind: str, station: str | None = None) -> list[dict]:
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            rows = db.execute("SELECT station_id, detail FROM events WHERE kind = ? ORDER BY id", [kind]).fetchall()
        return [json.loads(d) if d else {} for s, d in rows if station is None or s == station]

    def query(self, sql: str, *args: Any) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(self.db)) as db:
            return db.execute(sql, args).fetchall()

    def calls(self, cid: str, action: str) -> list[dict]:
        return [p for a, p in self.charger(cid).received if a == action]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None


async def _observe(rig: Rig) -> None:
    while True:
        rig.site.record()
        await asyncio.sleep(SAMPLE_EVERY)


@contextlib.asynccontextmanager
async def interop_site(tmp: Path, chargers: list[Charger], *, fuse: float = 32.0,
                       base_load: tuple[float, float, float] = (4.0, 4.0, 4.0),
                       wait_connected: bool = True) -> AsyncIterator[Rig]:
    meter_port = free_port()
    cfg = site_config(tmp, chargers, fuse, meter_port)
    by_id = {c.id: c for c in chargers}

    def tweak(sc: SimChargerConfig) -> SimChargerConfig:
        c = by_id[sc.id]
        sc.version, sc.misbehaviour = c.version, c.misbehaviour  # type: ignore[assignment]
        sc.backoff_min, sc.backoff_max = 0.2, 1.0
        return sc

    sim = Simulation.from_config(cfg, SimClock(seed=3), tweak=tweak)
    sim.sites[METER].loads.append(Constant(base_load))
    await sim.start_meters()
    try:
        async with CentralSystemApp(cfg) as app:
            rig = Rig(app, sim, tmp / "csms.sqlite", fuse)
            observer = asyncio.create_task(_observe(rig))
            await sim.fleet.start(f"ws://127.0.0.1:{app.port}/ocpp")
            try:
                if wait_connected:
                    await sim.fleet.wait_connected(timeout=15)
                yield rig
            finally:
                observer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await observer
                await sim.fleet.stop()
            await asyncio.sleep(0.1)  # the last events reach storage before it is flushed and closed
    finally:
        await asyncio.gather(*(m.stop() for m in sim.meters.values()))
