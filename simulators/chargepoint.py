"""Simulated charge points: the version-neutral charger (physics, sessions, profiles, connection).

A :class:`SimCharger` is one charging station with one or more connectors. Its physics loop runs on
the shared clock whether or not it is connected: it asks its :class:`~simulators.profiles.ProfileStore`
what each connector may draw, lets the plugged-in :class:`~simulators.ev.EVModel` follow that offer,
and integrates the energy register. Its connection loop talks OCPP to the central system through a
version-specific protocol class (``chargepoint16`` / ``chargepoint201``), reconnecting with backoff;
what it has to tell the central system goes through an outbox so that transaction messages survive a
disconnection, as a real charger's do. Stored profiles keep applying while it is offline, so expiry to
the fallback is real.

Connector numbering is the 1.6 connectorId, which is the 2.0.1 EVSE id here (one connector per EVSE).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import websockets
from websockets.asyncio.client import connect

from simulators.clock import SimClock
from simulators.ev import EVModel
from simulators.profiles import (
    CompositeSchedule,
    EffectiveLimit,
    ProfileStore,
    Purpose,
    profile_from_ocpp,
    purpose_from_ocpp,
)

if TYPE_CHECKING:
    from simulators.chargepoint16 import ChargePoint16
    from simulators.chargepoint201 import ChargePoint201

log = logging.getLogger(__name__)

Version = Literal["ocpp1.6", "ocpp2.0.1"]
#: Measurands a charger samples unless the central system configures others.
DEFAULT_MEASURANDS = ("Energy.Active.Import.Register", "Current.Import", "Current.Offered", "Voltage",
                      "Power.Active.Import")
SUPPORTED_MEASURANDS = frozenset(DEFAULT_MEASURANDS) | {"SoC"}


@dataclass
class Misbehaviour:
    """Ways real chargers fall short, switchable per simulated charger."""

    #: Purposes it answers SetChargingProfile with Rejected for.
    reject_purposes: frozenset[Purpose] = frozenset()
    #: Accepts only W schedules (ChargingScheduleAllowedChargingRateUnit = Power / RateUnit = W).
    only_watts: bool = False
    #: Accepts profiles but draws as if there were none.
    ignore_limits: bool = False
    #: Seconds it sits on every call from the central system before answering.
    answer_delay: float = 0.0
    #: Drops the connection every this many seconds (None = never); it reconnects with its backoff.
    drop_every: float | None = None
    #: The ChargeProfileMaxStackLevel / SmartChargingCtrlr.ProfileStackLevel it advertises.
    max_stack_level: int = 8
    #: Rejects profiles at exactly its own advertised maximum stack level (a firmware bug seen in the field).
    refuse_max_stack_level: bool = False
    #: Refuses meter-value intervals below this many seconds (0 = any).
    min_meter_interval: float = 0.0


KNOBS = ("reject=PURPOSE", "only-watts", "ignore-limits", "answer-delay=S", "drop-every=S", "max-stack-level=N",
         "refuse-max-stack-level")


def parse_knob(mis: Misbehaviour, text: str) -> Misbehaviour:
    """Applies one knob written as on the command line (``ignore-limits``, ``answer-delay=5``,
    ``reject=TxProfile``...) to ``mis``; raises ValueError naming the valid knobs."""
    name, _, value = text.partition("=")
    try:
        if name == "reject":
            return replace(mis, reject_purposes=mis.reject_purposes | {purpose_from_ocpp(value)})
        if name in ("only-watts", "ignore-limits", "refuse-max-stack-level") and not value:
            return replace(mis, **{name.replace("-", "_"): True})
        if name in ("answer-delay", "drop-every"):
            return replace(mis, **{name.replace("-", "_"): float(value)})
        if name == "max-stack-level":
            return replace(mis, max_stack_level=int(value))
    except ValueError:
        pass
    raise ValueError(f"misbehaviour {text!r} not understood; knobs are: {', '.join(KNOBS)} "
                     "(PURPOSE: ChargePointMaxProfile, ChargingStationMaxProfile, TxDefaultProfile, TxProfile)")


@dataclass
class SimChargerConfig:
    id: str
    password: str | None = None
    version: Version = "ocpp1.6"
    phases: int = 3
    #: Which building phases the charger's L1, L2, L3 land on (R=L1, S=L2, T=L3 of the building).
    phase_rotation: str = "RST"
    max_current: float = 32.0
    connectors: int = 1
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    voltage: float = 230.0
    #: Token it presents when a car is plugged in (local start); None waits for a remote start.
    id_tag: str | None = "SIMTAG0001"
    vendor: str = "FuseGuard"
    model: str = "SimCharger"
    #: Meter-values interval until the central system configures one (s of clock time; 0 = off).
    meter_interval: float = 10.0
    heartbeat_interval: float = 300.0
    #: Physics step in clock seconds.
    tick: float = 0.25
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    response_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.version not in ("ocpp1.6", "ocpp2.0.1"):
            raise ValueError(f"charger {self.id}: version must be 'ocpp1.6' or 'ocpp2.0.1', not {self.version!r}")
        if self.phases not in (1, 3):
            raise ValueError(f"charger {self.id}: phases must be 1 or 3")
        if sorted(self.phase_rotation) != ["R", "S", "T"]:
            raise ValueError(f"charger {self.id}: phase_rotation must be a permutation of RST, e.g. 'RST' or 'STR'")
        if self.connectors < 1:
            raise ValueError(f"charger {self.id}: needs at least one connector")


@dataclass
class Session:
    """One transaction on one connector, as the charger knows it."""

    local_id: str
    id_tag: str | None
    started_at: float
    meter_start_wh: float
    #: The id the central system knows it by: 1.6 assigns it in StartTransaction.conf, 2.0.1 = local_id.
    transaction_id: str | None = None
    remote_start_id: int | None = None
    seq_no: int = 0
    #: Whether the start / end happened while the charger was offline (2.0.1 reports it).
    started_offline: bool = False
    ended_offline: bool = False

    def next_seq(self) -> int:
        n = self.seq_no
        self.seq_no += 1
        return n


@dataclass
class Connector:
    id: int
    ev: EVModel | None = None
    session: Session | None = None
    operative: bool = True
    #: Set when the central system changes availability during a transaction (applies at its end).
    scheduled_operative: bool | None = None
    #: Token of a remote start that waits for a car to be plugged in.
    remote_tag: str | None = None
    remote_start_id: int | None = None
    remote_profile: dict | None = None
    status: str = ""
    reported_status: str = ""
    offered: float = 0.0
    number_phases: int = 3
    phase_to_use: int | None = None
    current: tuple[float, float, float] = (0.0, 0.0, 0.0)
    energy_wh: float = 0.0


@dataclass
class Outgoing:
    """A message the charger has to send; ``send`` builds it at sending time (so ids known by then are used)."""

    name: str
    send: Callable[[Any], Awaitable[None]]
    #: Transaction messages survive a disconnection; others are dropped when offline.
    keep: bool = False


class SimCharger:
    def __init__(self, config: SimChargerConfig, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock or SimClock()
        mis = config.misbehaviour
        self.store = ProfileStore(
            version=config.version, connectors=config.connectors, phases=config.phases, voltage=config.voltage,
            max_stack_level=mis.max_stack_level, units=frozenset({"W"} if mis.only_watts else {"A", "W"}))
        self.connectors = {i: Connector(i, number_phases=config.phases) for i in range(1, config.connectors + 1)}
        self.password = config.password
        self.meter_interval = config.meter_interval
        self.heartbeat_interval = config.heartbeat_interval
        self.measurands: tuple[str, ...] = DEFAULT_MEASURANDS
        self.connected = False
        self.boot_status: str | None = None
        self.url: str | None = None
        #: Every call the central system made, as (action, payload) - for tests and the demo's log.
        self.received: list[tuple[str, dict]] = []
        self._outbox: collections.deque[Outgoing] = collections.deque()
        self._outbox_changed = asyncio.Event()
        self._allowed_online = asyncio.Event()
        self._allowed_online.set()
        self._connected_changed = asyncio.Event()
        self._proto: ChargePoint16 | ChargePoint201 | None = None
        self._ws: Any = None
        self._tasks: list[asyncio.Task] = []
        self._last_tick: float | None = None
        self._last_sample: float = -math.inf
        self._tx_counter = 0

    @property
    def id(self) -> str:
        return self.config.id

    def __repr__(self) -> str:
        return f"SimCharger({self.id!r}, {self.config.version}, connected={self.connected})"

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self, url: str) -> None:
        """Starts the physics and connection loops against the central system at ``url``.

        ``url`` is the central system's base (``ws://host:port/ocpp``); the charger appends its own id.
        """
        if self._tasks:
            raise RuntimeError(f"charger {self.id} is already running")
        base = url.rstrip("/")
        self.url = base if base.endswith("/" + quote(self.id, safe="")) else f"{base}/{quote(self.id, safe='')}"
        self._tasks = [asyncio.create_task(self._physics(), name=f"{self.id}-physics"),
                       asyncio.create_task(self._connection(), name=f"{self.id}-connection")]

    async def stop(self) -> None:
        """Closes the connection cleanly (close code 1000), then ends every task of the charger."""
        tasks, self._tasks = self._tasks, []
        self._allowed_online.clear()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._ws.close()
        await cancel_and_wait(tasks)
        self._set_connected(False)

    def disconnect(self) -> None:
        """Closes the connection and stays offline until :meth:`reconnect` (for tests and scenarios)."""
        self._allowed_online.clear()
        self.drop_connection()

    def reconnect(self) -> None:
        self._allowed_online.set()

    def drop_connection(self) -> None:
        """Closes the connection now; the connection loop reconnects with its backoff."""
        if self._ws is not None:
            closing = asyncio.get_running_loop().create_task(self._ws.close(), name=f"{self.id}-close")
            self._tasks = [t for t in self._tasks if not t.done()] + [closing]  # owned: stop() awaits it

    async def wait_connected(self, connected: bool = True, timeout: float = 5.0) -> None:
        """Waits until the charger is (or is no longer) connected and booted."""
        async with asyncio.timeout(timeout):
            while self.connected != connected:
                await self._connected_changed.wait()

    def _set_connected(self, value: bool) -> None:
        if self.connected != value:
            self.connected = value
            self._connected_changed.set()
            self._connected_changed = asyncio.Event()

    # ---- what the site and scenarios use --------------------------------------------------------

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
        return self.config.phase_rotation

    def start_session(self, connector: int = 1, id_tag: str | None = None) -> None:
        """Starts a transaction on a plugged-in connector as if a card had been presented."""
        conn = self.connectors[connector]
        if conn.ev is None or conn.session is not None:
            raise RuntimeError(f"charger {self.id} connector {connector}: needs a car plugged in and no session")
        self._begin(conn, id_tag or self.config.id_tag or "SIMTAG0001", authorize=True)

    def stop_session(self, connector: int = 1, reason: str = "Local") -> None:
        conn = self.connectors[connector]
        if conn.session is not None:
            self._end(conn, reason)

    # ---- physics --------------------------------------------------------------------------------

    def offer(self, conn: Connector, now: float) -> tuple[float, int, int | None]:
        """Current per phase, number of phases and phase to use that ``conn`` may draw at ``now``."""
        cfg = self.config
        if not conn.operative or conn.session is None:
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
        elif conn.ev is None:
            status = "Available" if conn.session is None else "Finishing"
        elif conn.session is None:
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
            self._status_changed(conn, previous)

    async def _physics(self) -> None:
        while True:
            self.step()
            now = self.clock.now()
            if self.meter_interval > 0 and now - self._last_sample >= self.meter_interval:
                self._last_sample = now
                for conn in self.connectors.values():
                    if conn.session is not None and self.connected:
                        self._sample(conn, "Sample.Periodic")
            await self.clock.sleep(self.config.tick)

    def _next_local_id(self) -> str:
        self._tx_counter += 1
        return f"{self.id}-{int(self.clock.now())}-{self._tx_counter}"

    def _begin(self, conn: Connector, id_tag: str, authorize: bool = False,
               remote_start_id: int | None = None) -> None:
        now = self.clock.now()
        conn.remote_tag = conn.remote_start_id = conn.remote_profile = None
        sess = Session(self._next_local_id(), id_tag, now, conn.energy_wh, remote_start_id=remote_start_id)
        conn.session = sess
        self.store.transaction_started(conn.id, sess.local_id, now)
        self._session_started(conn, sess, authorize)
        self.step(now)

    def _end(self, conn: Connector, reason: str) -> None:
        sess = conn.session
        if sess is None:
            return
        conn.session = None
        self.store.transaction_ended(conn.id)
        if conn.scheduled_operative is not None:
            conn.operative, conn.scheduled_operative = conn.scheduled_operative, None
        self._session_ended(conn, sess, reason)
        self.step()

    def transaction_id_assigned(self, conn: Connector, sess: Session, transaction_id: str) -> None:
        """The central system named the transaction (1.6 StartTransaction.conf)."""
        sess.transaction_id = transaction_id
        if conn.session is sess:
            self.store.transactions[conn.id] = (transaction_id, sess.started_at)

    def session_by_transaction(self, transaction_id: str) -> Connector | None:
        return next((c for c in self.connectors.values()
                     if c.session is not None and transaction_id in (c.session.transaction_id, c.session.local_id)),
                    None)

    # ---- calls from the central system (version-neutral; the protocol layers translate) ----------

    def install_profile(self, raw: dict, connector: int) -> str:
        """SetChargingProfile: 'Accepted' or 'Rejected', after the misbehaviour knobs and the store's rules."""
        mis = self.config.misbehaviour
        try:
            profile = profile_from_ocpp(raw, connector, self.config.version)
        except (KeyError, ValueError, IndexError) as exc:
            log.warning("%s: unreadable charging profile (%s): %s", self.id, exc, raw)
            return "Rejected"
        if profile.purpose in mis.reject_purposes:
            log.info("%s: rejecting %s profile %d (misbehaviour reject_purposes)", self.id, profile.purpose, profile.id)
            return "Rejected"
        if mis.refuse_max_stack_level and profile.stack_level == mis.max_stack_level:
            log.info("%s: rejecting profile %d at its own max stack level (misbehaviour)", self.id, profile.id)
            return "Rejected"
        result = self.store.set(profile)
        if not result.accepted:
            log.info("%s: rejecting profile %d: %s", self.id, profile.id, result.reason)
            return "Rejected"
        return "Accepted"

    def composite(self, connector: int, duration: float, unit: str) -> CompositeSchedule:
        cap = self.config.max_current
        return self.store.composite_schedule(connector, self.clock.now(), duration, unit, cap=cap)  # type: ignore[arg-type]

    def change_setting(self, name: str, value: str) -> bool:
        """Applies a configuration key / device-model variable; False if the value is not acceptable."""
        try:
            if name == "MeterValueSampleInterval":
                interval = int(value)
                if interval < 0 or 0 < interval < self.config.misbehaviour.min_meter_interval:
                    return False
                self.meter_interval = float(interval)
            elif name == "HeartbeatInterval":
                interval = int(value)
                if interval <= 0:
                    return False
                self.heartbeat_interval = float(interval)
            elif name == "MeterValuesSampledData":
                wanted = tuple(m.strip() for m in value.split(",") if m.strip())
                if not wanted or any(m not in SUPPORTED_MEASURANDS for m in wanted):
                    return False
                self.measurands = wanted
            elif name == "AuthorizationKey":
                if not 16 <= len(value) <= 40:
                    return False
                self.password = value  # used from the next connection on
            else:
                return False
        except ValueError:
            return False
        return True

    def change_availability(self, connector: int, operative: bool) -> str:
        if connector != 0 and connector not in self.connectors:
            return "Rejected"
        targets = self.connectors.values() if connector == 0 else [self.connectors[connector]]
        scheduled = False
        for conn in targets:
            if conn.session is not None and not operative:
                conn.scheduled_operative = False
                scheduled = True
            else:
                conn.operative, conn.scheduled_operative = operative, None
            self._refresh_status(conn)
        return "Scheduled" if scheduled else "Accepted"

    def remote_start(self, connector: int | None, id_tag: str, raw_profile: dict | None = None,
                     remote_start_id: int | None = None) -> Session | bool:
        """RemoteStartTransaction / RequestStartTransaction. Starts now if a car is plugged in, else when one is."""
        if connector is None:
            conn = next((c for c in self.connectors.values() if c.session is None and c.operative), None)
        else:
            conn = self.connectors.get(connector)
        if conn is None or conn.session is not None or not conn.operative:
            return False
        if conn.ev is None:
            conn.remote_tag, conn.remote_start_id, conn.remote_profile = id_tag, remote_start_id, raw_profile
            return True
        self._begin(conn, id_tag, remote_start_id=remote_start_id)
        if raw_profile is not None:
            self._install_remote_profile(conn, raw_profile)
        return conn.session or False

    def _install_remote_profile(self, conn: Connector, raw: dict) -> None:
        raw = dict(raw)
        if self.config.version == "ocpp2.0.1" and conn.session is not None:
            raw.setdefault("transaction_id", conn.session.local_id)
        if self.install_profile(raw, conn.id) != "Accepted":
            log.warning("%s: the profile sent with the remote start was not installed", self.id)

    def remote_stop(self, transaction_id: str) -> bool:
        conn = self.session_by_transaction(transaction_id)
        if conn is None:
            return False
        self._end(conn, "Remote")
        return True

    def abandon(self, conn: Connector, sess: Session) -> None:
        """The central system refused the token: the session never becomes a transaction."""
        if conn.session is sess:
            conn.session = None
            self.store.transaction_ended(conn.id)
            self.step()

    def trigger(self, message: str, connector: int | None) -> bool:
        """TriggerMessage: queues the requested message (sent after the answer)."""
        conns = [self.connectors[connector]] if connector in self.connectors else list(self.connectors.values())
        if message == "StatusNotification":
            for c in conns:
                self.queue(Outgoing(f"status {c.id}", lambda proto, c=c: proto.send_status(c)))
        elif message in ("MeterValues", "TransactionEvent"):
            for c in conns:
                self._sample(c, "Trigger")
        elif message == "Heartbeat":
            self.queue(Outgoing("heartbeat", lambda proto: proto.send_heartbeat()))
        else:
            return False
        return True

    # ---- hooks the protocol layer fills in (version-specific message building) ------------------

    def _status_changed(self, conn: Connector, previous: str) -> None:
        self.queue(Outgoing(f"status {conn.id}", lambda proto, c=conn: proto.send_status(c)))
        if conn.session is not None:
            self.queue(Outgoing(f"state {conn.id}", lambda proto, c=conn: proto.send_state_change(c)))

    def _session_started(self, conn: Connector, sess: Session, authorize: bool) -> None:
        sess.started_offline = not self.connected
        self.queue(Outgoing(f"start {sess.local_id}",
                            lambda proto, c=conn, s=sess, a=authorize: proto.send_start(c, s, a), keep=True))

    def _session_ended(self, conn: Connector, sess: Session, reason: str) -> None:
        meter_stop = conn.energy_wh
        sess.ended_offline = not self.connected
        self.queue(Outgoing(f"stop {sess.local_id}",
                            lambda proto, c=conn, s=sess, r=reason, m=meter_stop: proto.send_stop(c, s, r, m),
                            keep=True))

    def _sample(self, conn: Connector, context: str) -> None:
        sess = conn.session
        self.queue(Outgoing(f"meter {conn.id}",
                            lambda proto, c=conn, s=sess, x=context: proto.send_meter_values(c, s, x)))

    def sampled_values(self, conn: Connector, context: str) -> list[dict]:
        """One sample of the configured measurands in the 1.6 shape (values as strings; the 2.0.1
        layer converts). Phases are the charger's own L1..L3."""
        out: list[dict] = []
        v = self.config.voltage

        def add(measurand: str, value: float, unit: str, phase: str | None = None) -> None:
            sv = {"value": f"{value:.1f}" if unit != "Wh" else f"{value:.0f}", "measurand": measurand,
                  "context": context, "unit": unit, "location": "Outlet"}
            if phase:
                sv["phase"] = phase
            out.append(sv)

        for m in self.measurands:
            if m == "Energy.Active.Import.Register":
                add(m, conn.energy_wh, "Wh")
            elif m == "Current.Import":
                for i in range(self.config.phases):
                    add(m, conn.current[i], "A", f"L{i + 1}")
            elif m == "Current.Offered":
                add(m, conn.offered, "A")
            elif m == "Voltage":
                for i in range(self.config.phases):
                    add(m, v, "V", f"L{i + 1}-N")
            elif m == "Power.Active.Import":
                add(m, sum(conn.current) * v, "W")
            elif m == "SoC" and conn.ev is not None:
                out.append({"value": f"{conn.ev.soc * 100:.0f}", "measurand": m, "context": context,
                            "unit": "Percent", "location": "EV"})
        return out

    # ---- connection -----------------------------------------------------------------------------

    def queue(self, item: Outgoing) -> None:
        if not self.connected and not item.keep:
            return
        self._outbox.append(item)
        self._outbox_changed.set()

    def _auth_header(self) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{self.id}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _connection(self) -> None:
        attempt = 0
        while True:
            await self._allowed_online.wait()
            try:
                async with connect(self.url, subprotocols=[self.config.version],
                                   additional_headers=self._auth_header(), open_timeout=10,
                                   close_timeout=2) as ws:
                    attempt = 0
                    await self._session_on(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                log.info("%s: connection to %s failed or closed: %s", self.id, self.url, exc)
            except Exception:
                log.exception("%s: unexpected error on the connection to %s; reconnecting", self.id, self.url)
            finally:
                self._ws = self._proto = None
                self._set_connected(False)
            attempt += 1
            delay = min(self.config.backoff_max, self.config.backoff_min * 2 ** min(attempt - 1, 10))
            await asyncio.sleep(delay * (0.5 + self.clock.rng.random() / 2))

    async def _session_on(self, ws: Any) -> None:
        from simulators.chargepoint16 import ChargePoint16
        from simulators.chargepoint201 import ChargePoint201

        cls = ChargePoint16 if self.config.version == "ocpp1.6" else ChargePoint201
        proto = cls(self, ws)
        self._ws, self._proto = ws, proto
        tasks = [asyncio.create_task(proto.start(), name=f"{self.id}-recv"),
                 asyncio.create_task(self._online(proto), name=f"{self.id}-online")]
        if self.config.misbehaviour.drop_every:
            tasks.append(asyncio.create_task(self._dropper(self.config.misbehaviour.drop_every)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # re-raises ConnectionClosed and friends for the caller to log
        finally:
            await cancel_and_wait(tasks)

    async def _dropper(self, every: float) -> None:
        await self.clock.sleep(every)
        log.info("%s: dropping the connection (misbehaviour drop_every=%s)", self.id, every)
        await self._ws.close()

    async def _online(self, proto: Any) -> None:
        """Boot until accepted, report every connector, then heartbeat and drain the outbox."""
        while True:
            status, interval = await proto.send_boot()
            self.boot_status = status
            if interval:
                self.heartbeat_interval = interval
            if status == "Accepted":
                break
            await self.clock.sleep(interval or 10)
        self._set_connected(True)
        # Non-transaction messages queued while the loop was offline are stale; report the present instead.
        self._outbox = collections.deque(i for i in self._outbox if i.keep)
        for conn in self.connectors.values():
            conn.reported_status = ""
            await proto.send_status(conn)
        heartbeat = asyncio.create_task(self._heartbeat(proto))
        try:
            await self._drain(proto)
        finally:
            await cancel_and_wait([heartbeat])

    async def _heartbeat(self, proto: Any) -> None:
        while True:
            await self.clock.sleep(self.heartbeat_interval)
            self.queue(Outgoing("heartbeat", lambda p: p.send_heartbeat()))

    async def _drain(self, proto: Any) -> None:
        while True:
            while not self._outbox:
                self._outbox_changed.clear()
                await self._outbox_changed.wait()
            item = self._outbox[0]
            try:
                await item.send(proto)
            except (websockets.ConnectionClosed, TimeoutError):
                raise  # the item stays queued for the next connection
            except Exception:
                # A payload the library refuses (or an answer it cannot parse) would block the outbox forever.
                log.exception("%s: could not send %s; dropped", self.id, item.name)
            self._outbox.popleft()

    async def answer_delay(self) -> None:
        delay = self.config.misbehaviour.answer_delay
        if delay > 0:
            await asyncio.sleep(delay)


async def cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    """Cancels ``tasks`` and waits until every one has ended.

    Cancelling again if needed: on Python 3.11 a cancellation that lands just as ``asyncio.wait_for``
    (which the ``ocpp`` package awaits each reply with) completes is swallowed, and the task runs on.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None and not isinstance(
                t.exception(), (websockets.ConnectionClosed, OSError, TimeoutError)):
            log.debug("task %s ended with %r", t.get_name(), t.exception())


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

    def __iter__(self):
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
