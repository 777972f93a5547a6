"""A charger's physics: what each connector offers, how the plugged-in car follows it, the energy
registers and the connector status that results, advanced on the shared clock.

Mixed into :class:`~simulators.charger.Charger`. The physics keeps running while the charger is
offline, so stored profiles keep applying and expiry to the fallback is real.
"""

from __future__ import annotations

import logging
import math

from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.connector import Connector
from simulators.ev import EVModel
from simulators.outbox import Outgoing
from simulators.profile_store import EffectiveLimit, ProfileStore

log = logging.getLogger(__name__)


class ChargerPhysics:
    """Cars plugged in and out, offers, draws and status (the state lives on the charger)."""

    id: str
    config: SimChargerConfig
    clock: SimClock
    store: ProfileStore
    connectors: dict[int, Connector]
    _last_tick: float | None

    def plug_in(self, ev: EVModel, connector: int = 1) -> None:
        """A car is plugged in; with an id_tag configured (or a pending remote start) a session begins."""
        conn = self.connectors[connector]
        if conn.ev is not None:
            raise RuntimeError(f"charger {self.id} connector {connector} already has {conn.ev.name} plugged in")
        ev.reset_session()
        conn.ev = ev
        self._refresh_status(conn)
        if conn.remote_tag is not None:
            profile = conn.remote_profile
            self._begin(conn, conn.remote_tag, remote_start_id=conn.remote_start_id)
            if profile is not None:
                self._install_remote_profile(conn, profile)
        elif self.config.id_tag is not None and conn.operative:
            self._begin(conn, self.config.id_tag, authorize=True)

    def unplug(self, connector: int = 1) -> EVModel | None:
        conn = self.connectors[connector]
        ev, conn.ev = conn.ev, None
        if conn.session is not None:
            self._end(conn, "EVDisconnected")
        if ev is not None:
            ev.reset_session()
        self._refresh_status(conn)
        return ev

    def limit(self, connector: int = 1) -> EffectiveLimit:
        """What the charger offers ``connector`` now (after profiles, its own maximum and availability)."""
        conn = self.connectors[connector]
        return EffectiveLimit(conn.offered, conn.number_phases, conn.phase_to_use)

    def draw(self) -> tuple[float, float, float]:
        """A per charger phase (L1, L2, L3 in the charger's own numbering) drawn now, all connectors."""
        total = [0.0, 0.0, 0.0]
        for conn in self.connectors.values():
            for i in range(3):
                total[i] += conn.current[i]
        return (total[0], total[1], total[2])

    @property
    def phase_rotation(self) -> str:
        """How its L1..L3 really land on the building's phases (the site's physics); what it *reports* is
        ``config.phase_rotation``."""
        return self.config.wired_rotation or self.config.phase_rotation

    def offer(self, conn: Connector, now: float) -> tuple[float, int, int | None]:
        """Current per phase, number of phases and phase to use that ``conn`` may draw at ``now``."""
        cfg = self.config
        if not conn.operative or conn.session is None or not conn.session.authorized:
            return 0.0, cfg.phases, None
        if cfg.misbehaviour.ignore_limits:
            return cfg.max_current, cfg.phases, None
        station = self.store.station_limit_at(now)
        own = self.store.connector_limit_at(conn.id, now)
        amps = min(cfg.max_current, math.inf if own.amps is None else own.amps)
        if station.amps is not None:
            sharing = sum(1 for c in self.connectors.values() if c.session is not None and c.operative)
            amps = min(amps, station.amps / max(1, sharing))
        phases = min(cfg.phases, station.number_phases, own.number_phases)
        phase_to_use = (own.phase_to_use or station.phase_to_use) if phases == 1 else None
        return amps, phases, phase_to_use

    def step(self, now: float | None = None) -> None:
        """Advances the physics to ``now``: offers, EV draws, energy registers, status changes."""
        now = self.clock.now() if now is None else now
        dt = 0.0 if self._last_tick is None else max(0.0, now - self._last_tick)
        self._last_tick = now
        for conn in self.connectors.values():
            before = sum(conn.current)
            amps, phases, phase_to_use = self.offer(conn, now)
            conn.offered, conn.number_phases, conn.phase_to_use = amps, phases, phase_to_use
            per_phase = 0.0
            if conn.ev is not None:
                per_phase = conn.ev.update(now, amps if conn.session is not None else 0.0,
                                           self.config.voltage, phases)
            n = min(phases, conn.ev.phases) if conn.ev is not None else 0
            current = [0.0, 0.0, 0.0]
            if n == 1:
                current[(phase_to_use or 1) - 1] = per_phase
            else:
                for i in range(n):
                    current[i] = per_phase
            conn.current = (current[0], current[1], current[2])
            conn.energy_wh += (before + sum(conn.current)) / 2 * self.config.voltage * dt / 3600.0
            self._refresh_status(conn)

    def _refresh_status(self, conn: Connector) -> None:
        if not conn.operative and conn.session is None:
            status = "Unavailable"
        elif conn.session is None and conn.reservation is not None:
            status = "Reserved"
        elif conn.ev is None:
            status = "Available" if conn.session is None else "Finishing"
        elif conn.session is None or not conn.session.authorized:
            status = "Finishing" if conn.status in ("Charging", "SuspendedEV", "SuspendedEVSE", "Finishing") \
                else "Preparing"
        elif conn.offered < (conn.ev.min_current if conn.ev else 6.0):
            status = "SuspendedEVSE"
        elif conn.ev.full:
            status = "SuspendedEV"
        else:
            status = "Charging"
        if status != conn.status:
            previous, conn.status = conn.status, status
            log.debug("%s connector %d: %s -> %s", self.id, conn.id, previous or "-", status)
            self._status_changed(conn)

    def _status_changed(self, conn: Connector) -> None:
        """Reports a new status (and, during a transaction, the charging-state change the faces tell apart)."""
        self.queue(Outgoing(f"status {conn.id}", lambda proto, c=conn: proto.send_status(c)))
        if conn.session is not None:
            self.queue(Outgoing(f"state {conn.id}", lambda proto, c=conn: proto.send_state_change(c)))

    async def _physics(self) -> None:
        """The charger's clock loop: a physics step, then any periodic meter values due, every tick."""
        while True:
            self.step()
            self._report_due_samples(self.clock.now())
            await self.clock.sleep(self.config.tick)
