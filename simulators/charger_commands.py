"""A charger's version-neutral answers to the central system's settings, availability, trigger, reset, unlock
and vendor calls; the OCPP faces translate the wire format to and from these.

Mixed into :class:`~simulators.charger.Charger`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.charger_meter_values import SUPPORTED_MEASURANDS
from simulators.connector import Connector
from simulators.outbox import Outgoing

log = logging.getLogger(__name__)


class ChargerCommands:
    """ChangeConfiguration / SetVariables, ChangeAvailability, TriggerMessage, Reset, UnlockConnector and
    DataTransfer (the state lives on the charger)."""

    config: SimChargerConfig
    connectors: dict[int, Connector]
    password: str | None
    meter_interval: float
    heartbeat_interval: float
    connection_timeout: float
    measurands: tuple[str, ...]
    _tasks: list[asyncio.Task]
    id: str
    clock: SimClock

    if TYPE_CHECKING:  # provided by ChargerSessions and ConnectionRunner on the charger
        def stop_session(self, connector: int = 1, reason: str = "Local") -> None: ...
        async def power_cycle(self, offline_for: float) -> None: ...

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
                supported = self.config.misbehaviour.measurands or SUPPORTED_MEASURANDS
                if not wanted or any(m not in supported for m in wanted):
                    return False  # like real firmwares: one unsupported member refuses the whole setting
                self.measurands = wanted
            elif name == "ConnectionTimeOut":
                timeout = int(value)
                if timeout <= 0:
                    return False
                self.connection_timeout = float(timeout)
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

    def trigger(self, message: str, connector: int | None) -> str:
        """TriggerMessage: queues the requested message (sent after the answer); returns the answer's status."""
        mode = self.config.misbehaviour.trigger
        if mode == "refuse":
            return "Rejected"
        if mode == "not-implemented":
            return "NotImplemented"
        if mode == "ignore":
            return "Accepted"
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
            return "NotImplemented"
        return "Accepted"

    def unlock(self, connector: int, stop_first: bool) -> str:
        """UnlockConnector, answered with 2.0.1's names (the 1.6 face maps them): a connector with a running
        transaction has it stopped first (1.6, reason UnlockCommand) or is refused (2.0.1,
        OngoingAuthorizedTransaction); a fixed cable is NotSupported, a jammed lock UnlockFailed."""
        mode = self.config.misbehaviour.unlock
        if connector not in self.connectors:
            return "UnknownConnector"
        if mode == "not-supported":
            return "NotSupported"
        conn = self.connectors[connector]
        if conn.session is not None:
            if not stop_first:
                return "OngoingAuthorizedTransaction"
            self.stop_session(connector, "UnlockCommand")
        return "UnlockFailed" if mode == "fail" else "Unlocked"

    def reset(self, when_idle: bool) -> str:
        """Reset: Scheduled when it is to wait for running transactions (2.0.1 OnIdle), else Accepted. The
        reboot itself is :meth:`reboot_after_reset`, started once the answer is sent."""
        busy = any(c.session is not None for c in self.connectors.values())
        return "Scheduled" if when_idle and busy else "Accepted"

    def reboot_after_reset(self, when_idle: bool, reason: str) -> None:
        """Stops every transaction with ``reason`` (or waits for them to end, ``when_idle``), then goes
        offline for the misbehaviour's ``reboot_time`` and reconnects and boots as after a power cycle.
        Profiles, availability and settings survive (they are kept in non-volatile memory)."""
        self._spawn(self._reboot(when_idle, reason), f"{self.id}-reboot")

    async def _reboot(self, when_idle: bool, reason: str) -> None:
        while when_idle and any(c.session is not None for c in self.connectors.values()):
            await self.clock.sleep(0.5)
        for conn in self.connectors.values():
            if conn.session is not None:
                self.stop_session(conn.id, reason)
        await self.clock.sleep(0.3)  # time for the stop messages to go out, as a graceful reset allows
        log.info("%s: rebooting (reset)", self.id)
        await self.power_cycle(self.config.misbehaviour.reboot_time)

    def send_local_list(self, version: int, full: bool, entries: dict[str, str | None]) -> str:
        """SendLocalList as chargers apply it: a full list replaces the old one; a differential update needs a
        newer version than the one held (else VersionMismatch) and removes the entries without a status."""
        if not full and version <= self.local_list_version:
            return "VersionMismatch"
        held = {} if full else dict(self.local_list)
        for token, status in entries.items():
            if status is None:
                held.pop(token, None)
            else:
                held[token] = status
        self.local_list, self.local_list_version = held, version
        return "Accepted"

    def data_transfer(self, vendor_id: str, message_id: str | None, data: object) -> tuple[str, object]:
        """DataTransfer: the charger knows its own vendor id and one message, "Echo" (answers the data back)."""
        if vendor_id != self.config.vendor:
            return "UnknownVendorId", None
        if message_id != "Echo":
            return "UnknownMessageId", None
        return "Accepted", data

    def remote_start_waits(self, connector: int | None) -> None:
        """A remote start was accepted with no car plugged in: like a real charger, it waits
        ``connection_timeout`` seconds for one, then forgets it (a car plugged in later needs a new start)."""
        waiting = [c for c in self.connectors.values() if c.remote_tag is not None and c.session is None
                   and (connector is None or c.id == connector)]
        for conn in waiting:
            self._spawn(self._lapse_remote_start(conn, conn.remote_tag), f"{self.id}-remote-start-timeout")

    async def _lapse_remote_start(self, conn: Connector, tag: str) -> None:
        await self.clock.sleep(self.connection_timeout)
        if conn.session is None and conn.remote_tag == tag:
            log.info("%s: connector %s: no car within %.0f s, remote start for %s lapsed", self.id, conn.id,
                     self.connection_timeout, tag)
            conn.remote_tag = conn.remote_start_id = conn.remote_profile = None

    def _spawn(self, coro, name: str) -> None:
        """Runs ``coro`` as one of the charger's tasks (so :meth:`stop` ends it), forgetting finished ones."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
