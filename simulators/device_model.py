"""A simulated 2.0.1 station's device model: the variables GetVariables, SetVariables and GetBaseReport see.

Built from the charger's live settings, so a SetVariables the charger accepted shows in the next report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.charger import Charger

@dataclass(frozen=True)
class Variable:
    value: str
    mutability: str = "ReadOnly"  # ReadOnly | ReadWrite | WriteOnly
    #: The 1.6-style setting name :meth:`SimCharger.change_setting` applies (for ReadWrite ones).
    setting: str | None = None


#: Most variables in one NotifyReport.
REPORT_PART = 8


def report_item(key: tuple[str, int | None, str, str | None], var: Variable) -> dict[str, Any]:
    """One device-model variable as a NotifyReport item (a write-only one without its value)."""
    component, evse, name, instance = key
    comp: dict[str, Any] = {"name": component, **({"evse": {"id": evse}} if evse is not None else {})}
    variable: dict[str, Any] = {"name": name, **({"instance": instance} if instance is not None else {})}
    attribute: dict[str, Any] = {"type": "Actual", "mutability": var.mutability}
    if var.mutability != "WriteOnly":
        attribute["value"] = var.value
    return {"component": comp, "variable": variable, "variable_attribute": [attribute],
            "variable_characteristics": {"data_type": "string", "supports_monitoring": False}}


def device_model(sim: Charger) -> dict[tuple[str, int | None, str, str | None], Variable]:
    """(component, evse id, variable, instance) -> variable, built from the charger's live settings."""
    cfg, mis = sim.config, sim.config.misbehaviour
    dm = {
        ("SmartChargingCtrlr", None, "Enabled", None): Variable("true"),
        ("SmartChargingCtrlr", None, "Available", None): Variable("true"),
        ("SmartChargingCtrlr", None, "ProfileStackLevel", None): Variable(str(mis.max_stack_level)),
        ("SmartChargingCtrlr", None, "RateUnit", None): Variable("W" if mis.only_watts else "A,W"),
        ("SmartChargingCtrlr", None, "PeriodsPerSchedule", None): Variable(str(sim.store.max_periods)),
        ("SmartChargingCtrlr", None, "Entries", "ChargingProfiles"): Variable(str(len(sim.store.profiles))),
        ("SmartChargingCtrlr", None, "ACPhaseSwitchingSupported", None): Variable("false"),
        ("SampledDataCtrlr", None, "TxUpdatedInterval", None):
            Variable(str(int(sim.meter_interval)), "ReadWrite", "MeterValueSampleInterval"),
        ("SampledDataCtrlr", None, "TxUpdatedMeasurands", None):
            Variable(",".join(sim.measurands), "ReadWrite", "MeterValuesSampledData"),
        ("OCPPCommCtrlr", None, "HeartbeatInterval", None):
            Variable(str(int(sim.heartbeat_interval)), "ReadWrite", "HeartbeatInterval"),
        ("TxCtrlr", None, "EVConnectionTimeOut", None):
            Variable(str(int(sim.connection_timeout)), "ReadWrite", "ConnectionTimeOut"),
        ("SecurityCtrlr", None, "BasicAuthPassword", None): Variable("", "WriteOnly", "AuthorizationKey"),
        ("ChargingStation", None, "PhaseRotation", None): Variable(cfg.phase_rotation),
    }
    for evse in sim.connectors:
        dm[("EVSE", evse, "PhaseRotation", None)] = Variable(cfg.phase_rotation)
    return dm
