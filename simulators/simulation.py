"""A whole simulated site built from the operator's config: chargers, meters and the buildings they share.

This is what ``simulate site`` and ``csms demo`` run. Each ``[[meters]]`` entry becomes a
:class:`~simulators.site.Site` (the building behind that meter) holding the chargers of the load
balancers that use the meter; each ``[[chargers]]`` entry becomes a :class:`~simulators.chargepoint.SimCharger`
with its phases, rotation, maximum and password; each meter is served the way the config says the
central system reads it (Modbus TCP server on its host/port with its register map, or MQTT publisher on
the ``[mqtt]`` broker). A scenario (``simulators.scenarios``) then adds loads and cars over time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from csms.config import SiteConfig
from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.clock import SimClock
from simulators.fleet import ChargerFleet
from simulators.meter import AmpGuardSim
from simulators.site import Site

log = logging.getLogger(__name__)

VersionChoice = Literal["mixed", "ocpp1.6", "ocpp2.0.1"]


def pick_version(choice: VersionChoice, index: int) -> Literal["ocpp1.6", "ocpp2.0.1"]:
    """'mixed' alternates 1.6 and 2.0.1 in config order, so every site exercises both."""
    if choice == "mixed":
        return "ocpp1.6" if index % 2 == 0 else "ocpp2.0.1"
    return choice


def central_system_url(cfg: SiteConfig) -> str:
    """The websocket base URL of the config's central system, as chargers on this machine reach it."""
    srv = cfg.server
    if srv.security_profile >= 2:
        raise ValueError(f"server.security_profile {srv.security_profile}: the simulator connects without TLS "
                         "(profiles 0 and 1); run the demo against a profile 1 server")
    host = "127.0.0.1" if srv.host in ("0.0.0.0", "::", "") else srv.host
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{srv.port}{srv.path_prefix}"


@dataclass
class Simulation:
    config: SiteConfig
    clock: SimClock
    fleet: ChargerFleet
    #: The building behind each meter, by meter serial; chargers in no metered group share ``unmetered``.
    sites: dict[str, Site]
    meters: dict[str, AmpGuardSim]
    unmetered: Site
    meter_ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: SiteConfig, clock: SimClock | None = None, versions: VersionChoice = "mixed",
                    tweak: Callable[[SimChargerConfig], SimChargerConfig] | None = None) -> Simulation:
        """Builds (does not start) the simulation; ``tweak`` may adjust each charger's config (misbehaviour...)."""
        clock = clock or SimClock()
        fleet = ChargerFleet()
        for i, c in enumerate(cfg.chargers):
            sc = SimChargerConfig(id=c.id, password=c.password, version=pick_version(versions, i), phases=c.phases,
                                  phase_rotation=c.phase_rotation, max_current=c.max_current)
            fleet.add(SimCharger(tweak(sc) if tweak else sc, clock))
        sites: dict[str, Site] = {}
        meters: dict[str, AmpGuardSim] = {}
        placed: set[str] = set()
        for m in cfg.meters:
            groups = [g for g in cfg.load_balancers if g.meter == m.serial]
            chargers = [fleet[cid] for g in groups for cid in g.chargers]
            placed |= {c.id for c in chargers}
            fuse = min((g.supply_max_current for g in groups), default=63.0)
            site = Site(clock, chargers=list(chargers), fuse=fuse,
                        chargers_behind_meter=all(g.chargers_in_measurement for g in groups))
            sites[m.serial] = site
            meters[m.serial] = AmpGuardSim(m.serial, site.metered_currents, clock, variant=m.variant)
        unmetered = Site(clock, chargers=[c for c in fleet if c.id not in placed])
        return cls(cfg, clock, fleet, sites, meters, unmetered)

    @property
    def all_sites(self) -> list[Site]:
        return [*self.sites.values(), self.unmetered]

    async def start_meters(self) -> None:
        """Serves every meter as the config says the central system reads it."""
        cfg = self.config
        for m in cfg.meters:
            meter = self.meters[m.serial]
            if m.source == "modbus":
                try:
                    self.meter_ports[m.serial] = await meter.serve_modbus(
                        m.host, m.port, m.profile, m.unit, tuple(cfg.gateway.register_dirs))
                except OSError as exc:
                    raise OSError(f"meter {m.serial}: cannot serve Modbus TCP on {m.host}:{m.port}: {exc.strerror}; "
                                  "is another program (or a real meter gateway) using that port?") from exc
            else:
                assert cfg.mqtt is not None  # the config's cross-check guarantees it
                meter.start_mqtt(cfg.mqtt.host, cfg.mqtt.port, m.mqtt_topic, interval=min(1.0, m.poll_interval),
                                 username=cfg.mqtt.username, password=cfg.mqtt.password)

    async def start(self, url: str | None = None) -> None:
        await self.start_meters()
        await self.fleet.start(url or central_system_url(self.config))

    async def stop(self) -> None:
        await self.fleet.stop()
        await asyncio.gather(*(m.stop() for m in self.meters.values()))

    def record(self) -> None:
        for site in self.all_sites:
            if site.chargers or site.loads:
                site.record()

    def site_of(self, charger_id: str) -> Site:
        return next((s for s in self.all_sites if any(c.id == charger_id for c in s.chargers)), self.unmetered)

    def snapshot(self) -> dict:
        """A plain-data picture of the moment, for status lines and the demo's display."""
        return {
            "time": self.clock.now(),
            "meters": {serial: {"online": self.meters[serial].online,
                                "building_a": [round(a, 1) for a in site.phase_currents()],
                                "measured_a": [round(a, 1) for a in self.meters[serial].sample().current],
                                "fuse_a": site.fuse}
                       for serial, site in self.sites.items()},
            "chargers": {c.id: {"version": c.config.version, "connected": c.connected,
                                "status": [conn.status for conn in c.connectors.values()],
                                "offered_a": [round(conn.offered, 1) for conn in c.connectors.values()],
                                "draw_a": [round(a, 1) for a in c.draw()]}
                         for c in self.fleet},
        }
