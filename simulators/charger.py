"""The version-neutral simulated charger: one charging station with one or more connectors.

Its physics loop runs on the shared clock whether or not it is connected: it asks its
:class:`~simulators.profile_store.ProfileStore` what each connector may draw, lets the plugged-in
:class:`~simulators.ev.EVModel` follow that offer, and integrates the energy register. Its connection
loop talks OCPP to the central system through an OCPP face for its version, reconnecting with backoff;
what it has to tell the central system goes through an outbox so that transaction messages survive a
disconnection, as a real charger's do. Stored profiles keep applying while it is offline, so expiry to
the fallback is real.

Each concern is a mixin in its own module; this class holds the state they share and starts and stops
the two loops. Which face speaks which version is left to :class:`simulators.chargepoint.SimCharger`,
so nothing here imports a version module.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC
from typing import Any
from urllib.parse import quote

from csms.runtime.aio import cancel_and_wait
from simulators.charger_commands import ChargerCommands
from simulators.charger_config import SimChargerConfig
from simulators.charger_connection import CANCEL_GRACE, ConnectionRunner
from simulators.charger_maintenance import ChargerMaintenance
from simulators.charger_meter_values import DEFAULT_MEASURANDS, MeterValueReporting
from simulators.charger_physics import ChargerPhysics
from simulators.charger_profiles import ProfileHandling
from simulators.charger_reservations import ChargerReservations
from simulators.charger_sessions import ChargerSessions
from simulators.clock import SimClock
from simulators.connector import Connector
from simulators.face import Face
from simulators.outbox import Outbox
from simulators.profile_store import ProfileStore


class Charger(ChargerPhysics, ChargerSessions, MeterValueReporting, ProfileHandling, ChargerCommands,
              ChargerMaintenance, ChargerReservations, ConnectionRunner, ABC):
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
        self.connection_timeout = config.connection_timeout
        #: The local authorization list the central system sent: token → status, and its version (0: none).
        self.local_list: dict[str, str] = {}
        self.local_list_version = 0
        self.measurands: tuple[str, ...] = DEFAULT_MEASURANDS
        self.connected = False
        self.boot_status: str | None = None
        self.url: str | None = None
        #: Every call the central system made, as (action, payload) - for tests and the demo's log.
        self.received: list[tuple[str, dict]] = []
        #: Calls it dropped or refused because its boot was not accepted yet (misbehaviour before_boot).
        self.before_boot: list[str] = []
        self.firmware_version = "sim-1"
        self.boot_reason = "PowerUp"
        self.uploaded: list[tuple[str, bytes]] = []
        self._outbox = Outbox(config.id)
        self._allowed_online = asyncio.Event()
        self._allowed_online.set()
        self._connected_changed = asyncio.Event()
        self._proto: Face | None = None
        self._ws: Any = None
        self._tasks: list[asyncio.Task] = []
        self._last_tick: float | None = None
        self._last_sample: float = -math.inf
        self._tx_counter = 0

    @property
    def id(self) -> str:
        return self.config.id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r}, {self.config.version}, connected={self.connected})"

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
        await cancel_and_wait(tasks, grace=CANCEL_GRACE)
        self._set_connected(False)
