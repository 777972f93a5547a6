"""What a charger measures and reports: the configured measurands sampled per connector, periodically
during transactions and on demand (TriggerMessage).

Mixed into :class:`~simulators.charger.Charger`; the samples are built in the 1.6 shape and each OCPP
face sends them in its own.
"""

from __future__ import annotations


from simulators.charger_config import SimChargerConfig
from simulators.connector import Connector
from simulators.outbox import Outgoing

#: Measurands a charger samples unless the central system configures others.
DEFAULT_MEASURANDS = ("Energy.Active.Import.Register", "Current.Import", "Current.Offered", "Voltage",
                      "Power.Active.Import")
SUPPORTED_MEASURANDS = frozenset(DEFAULT_MEASURANDS) | {"SoC"}


class MeterValueReporting:
    """Sampling and the periodic MeterValues / TransactionEvent(Updated) reports (the state lives on the charger)."""

    config: SimChargerConfig
    connectors: dict[int, Connector]
    connected: bool
    meter_interval: float
    measurands: tuple[str, ...]
    _last_sample: float

    def _report_due_samples(self, now: float) -> None:
        """Samples every connector in a transaction once the meter interval has passed (while connected)."""
        if self.meter_interval > 0 and now - self._last_sample >= self.meter_interval:
            self._last_sample = now
            for conn in self.connectors.values():
                if conn.session is not None and self.connected:
                    self._sample(conn, "Sample.Periodic")

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
