"""A charger's version-neutral answers to the central system's settings, availability and trigger calls;
the OCPP faces translate the wire format to and from these.

Mixed into :class:`~simulators.charger.Charger`.
"""

from __future__ import annotations

from simulators.charger_config import SimChargerConfig
from simulators.charger_meter_values import SUPPORTED_MEASURANDS
from simulators.connector import Connector
from simulators.outbox import Outgoing


class ChargerCommands:
    """ChangeConfiguration / SetVariables, ChangeAvailability and TriggerMessage (the state lives on the charger)."""

    config: SimChargerConfig
    connectors: dict[int, Connector]
    password: str | None
    meter_interval: float
    heartbeat_interval: float
    measurands: tuple[str, ...]

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
