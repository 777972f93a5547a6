"""A small simulated site with the operator view on: an Amp Guard over Modbus, a 1.6 and a 2.0.1 charger.

Everything runs in the test's event loop on 127.0.0.1 with ports picked by the OS, and stops on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import tomli_w

from csms.config import SiteConfig, parse_config, read_config
from csms.runtime.app import CentralSystemApp
from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.clock import SimClock
from simulators.ev import EVModel
from simulators.simulation import Simulation
from simulators.site import Constant

TOKEN = "test-token-0123456789abcdef"
OPERATOR_TOKEN = "operator-token-fedcba9876543210"
METER = "AG7654321G"
#: The site's [http] max_upload_size: room for the simulators' log files, small enough to exceed in a test.
MAX_UPLOAD = 256 * 1024
SECRETS = ("0123456789abcdef", "fedcba9876543210", "87654321", "13572468", "mqtt-secret-password", TOKEN, OPERATOR_TOKEN)


def site_config(tmp: Path, meter_port: int, *, http: bool = True, operator: bool = True,
                circuits: list[dict] | None = None, storage: dict | None = None) -> SiteConfig:
    return parse_config(site_data(tmp, meter_port, http=http, operator=operator, circuits=circuits, storage=storage))


def site_data(tmp: Path, meter_port: int, *, http: bool = True, operator: bool = True,
              circuits: list[dict] | None = None, storage: dict | None = None) -> dict:
    """The site as the operator's file holds it (see :func:`site_config`); ``storage`` replaces the SQLite file
    in tmp (e.g. ``{"url": postgres_url}``)."""
    data = {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1, "call_timeout": 3},
        "storage": storage or {"database": str(tmp / "csms.sqlite")},
        "mqtt": {"host": "127.0.0.1", "port": 1, "username": "csms", "password": "mqtt-secret-password"},
        "smart_charging": {"increase_interval": 0, "ramp_time": 1.0, "meter_value_interval": 1},
        "organisations": [{"id": "org", "name": "BRF Test"}],
        "meters": [{"serial": METER, "pin": "87654321", "organisation": "org", "source": "modbus",
                    "host": "127.0.0.1", "port": meter_port, "poll_interval": 0.5, "stale_after": 5}],
        "chargers": [
            {"id": "CP1", "password": "0123456789abcdef", "organisation": "org", "max_current": 16,
             "pin": "13572468"},
            {"id": "CP2", "password": "fedcba9876543210", "organisation": "org", "max_current": 16,
             "phase_rotation": "STR"},
        ],
        "load_balancers": [{"id": "garage", "name": "Garage", "organisation": "org", "meter": METER,
                            "chargers": ["CP1", "CP2"], "supply_max_current": 40, "max_current_online": 32,
                            "max_current_offline": 10}],
    }
    if circuits:
        data["circuits"] = circuits
    if http:
        data["http"] = {"host": "127.0.0.1", "port": 0, "token": TOKEN, "upload_dir": str(tmp / "uploads"),
                        "max_upload_size": MAX_UPLOAD}
        if operator:
            data["http"]["operator_token"] = OPERATOR_TOKEN
    return data


@dataclass
class Rig:
    app: CentralSystemApp
    sim: Simulation
    base: str  # http://127.0.0.1:PORT
    #: The site file, when the rig runs from one (``running_site(config_file=True)``): what a reload re-reads.
    config_path: Path | None = None

    def charger(self, cid: str) -> SimCharger:
        return self.sim.fleet[cid]

    def plug_in(self, cid: str, max_current: float = 16.0) -> None:
        self.charger(cid).plug_in(EVModel(max_current=max_current, ramp_delay=0.5, ramp_time=1.0, name=f"car@{cid}"))

    def charger_draw(self, cid: str) -> float:
        """L1 of the charger's latest meter values as the central system has them (0 before any)."""
        st = self.app.state.stations.get(cid)
        sample = st.latest_sample() if st is not None else None
        return (sample.current[0] or 0.0) if sample is not None else 0.0

    async def charging_at_full(self, cid: str = "CP1") -> None:
        """Plugs a 16 A car into ``cid`` and waits until its limit, its own meter values and the mains show it."""
        self.plug_in(cid)
        app = self.app
        await wait_until(lambda: app.delivery.channels[cid].in_force == 16, what=f"{cid} limited at 16 A")
        await wait_until(lambda: self.charger_draw(cid) > 15.5, what=f"{cid} reporting a 16 A draw")
        await wait_until(lambda: (app.last_readings[METER].current[0] or 0) > 20, what="the mains meter seeing the car")
        # The balancer subtracts a car's draw as it was when the mains reading was taken, erring low while it ramps:
        # its limit may dip for a reading or two. Wait until a reading taken after the ramp has settled it.
        settled_from = app.clock()
        await wait_until(lambda: app.last_readings[METER].taken_at > settled_from + 1.0
                         and app.balancer.decision("garage").limits[cid].limit == 16
                         and app.delivery.channels[cid].in_force == 16, what=f"{cid} settled at 16 A")
        await wait_until(lambda: self.charger_draw(cid) > 15.5 and app.balancer.decision("garage").limits[cid].limit == 16,
                         what=f"{cid} drawing its 16 A again")


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


@contextlib.asynccontextmanager
async def running_site(tmp: Path, *, http: bool = True, base_load=(8.0, 5.0, 11.0),
                       operator: bool = True, circuits: list[dict] | None = None,
                       config_file: bool = False, storage: dict | None = None) -> AsyncIterator[Rig]:
    placeholder = site_config(tmp, 1, http=http, operator=operator, circuits=circuits, storage=storage)

    def tweak(sc: SimChargerConfig) -> SimChargerConfig:
        sc.meter_interval, sc.backoff_min, sc.backoff_max = 1.0, 0.2, 1.0
        return sc

    sim = Simulation.from_config(placeholder, SimClock(seed=3), tweak=tweak)
    sim.sites[METER].loads.append(Constant(base_load))
    meter_port = await sim.meters[METER].serve_modbus("127.0.0.1", 0, "ampguard", 1)
    config_path: Path | None = None
    if config_file:  # as csms serve runs: from a file a reload can re-read
        config_path = tmp / "site.toml"
        config_path.write_text(tomli_w.dumps(site_data(tmp, meter_port, http=http, operator=operator,
                                                       circuits=circuits, storage=storage)))
        cfg, digest = read_config(config_path)
        app = CentralSystemApp(cfg, config_path=config_path, digest=digest)
    else:
        app = CentralSystemApp(site_config(tmp, meter_port, http=http, operator=operator, circuits=circuits,
                                           storage=storage))
    app.readings.flush_every = 0.5
    try:
        async with app:
            await sim.fleet.start(f"ws://127.0.0.1:{app.port}/ocpp")
            await sim.fleet.wait_connected(timeout=10)
            yield Rig(app, sim, f"http://127.0.0.1:{app.http_port}", config_path)
    finally:
        await sim.stop()


async def get(rig: Rig, path: str, token: str | None = TOKEN) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        async with s.get(rig.base + path, headers=headers) as r:
            return r.status, dict(r.headers), await r.text()


async def post(rig: Rig, path: str, body: object = None, token: str | None = OPERATOR_TOKEN,
               raw: bytes | None = None) -> tuple[int, dict]:
    """POSTs ``body`` as JSON (or ``raw`` bytes); the status and the decoded JSON answer."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        async with s.post(rig.base + path, data=data, headers={**headers, "Content-Type": "application/json"}) as r:
            return r.status, await r.json(content_type=None)
