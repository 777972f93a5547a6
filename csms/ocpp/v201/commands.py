"""OCPP 2.0.1 side of :mod:`csms.domain.link`: device-model variables, charging profiles, availability."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v201 import call

from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose
from csms.ocpp.commands import TRIGGER_TIMEOUT, Commands, NumberSettings, proven
from csms.ocpp.frames import Outbound
from csms.runtime.isotime import iso_seconds

log = logging.getLogger("csms.ocpp.v201.commands")

PURPOSE = {Purpose.TX: "TxProfile", Purpose.TX_DEFAULT: "TxDefaultProfile",
           Purpose.STATION_MAX: "ChargingStationMaxProfile"}


def _var(component: str, variable: str, evse: int | None = None, instance: str | None = None) -> dict[str, Any]:
    comp: dict[str, Any] = {"name": component}
    if evse is not None:
        comp["evse"] = {"id": evse}
    var: dict[str, Any] = {"name": variable}
    if instance:
        var["instance"] = instance
    return {"component": comp, "variable": var}


def set_profile_call(spec: ProfileSpec) -> Outbound:
    """The SetChargingProfile that installs ``spec``, as it goes on the wire (the hot path of every decision)."""
    period: dict[str, Any] = {"startPeriod": 0, "limit": spec.limit, "numberPhases": spec.number_phases}
    if spec.phase_to_use is not None and spec.number_phases == 1:
        period["phaseToUse"] = spec.phase_to_use
    schedule: dict[str, Any] = {"id": spec.profile_id, "chargingRateUnit": spec.unit,
                                "chargingSchedulePeriod": [period]}
    if spec.duration is not None:
        schedule["duration"] = spec.duration
    if spec.start_schedule is not None:
        schedule["startSchedule"] = iso_seconds(spec.start_schedule)
    profile: dict[str, Any] = {
        "id": spec.profile_id,
        "stackLevel": spec.stack_level,
        "chargingProfilePurpose": PURPOSE[spec.purpose],
        "chargingProfileKind": "Absolute" if spec.start_schedule is not None else "Relative",
        "chargingSchedule": [schedule],
    }
    if spec.transaction_id is not None:
        profile["transactionId"] = spec.transaction_id
    if spec.valid_to is not None:
        profile["validTo"] = iso_seconds(spec.valid_to)
    return Outbound("SetChargingProfile", {"evseId": spec.connector, "chargingProfile": profile},
                    checked=not proven(spec))


class Commands201(Commands):
    """:class:`csms.domain.link.StationLink` over OCPP 2.0.1."""

    __slots__ = ()

    async def read_capabilities(self, connector: int) -> Capabilities:
        wanted = [
            ("ProfileStackLevel", _var("SmartChargingCtrlr", "ProfileStackLevel")),
            ("RateUnit", _var("SmartChargingCtrlr", "RateUnit")),
            ("PeriodsPerSchedule", _var("SmartChargingCtrlr", "PeriodsPerSchedule")),
            ("Entries", _var("SmartChargingCtrlr", "Entries", instance="ChargingProfiles")),
            ("ACPhaseSwitchingSupported", _var("SmartChargingCtrlr", "ACPhaseSwitchingSupported")),
            ("PhaseRotation", _var("EVSE", "PhaseRotation", evse=connector)),
            ("TxUpdatedInterval", _var("SampledDataCtrlr", "TxUpdatedInterval")),
            ("TxUpdatedMeasurands", _var("SampledDataCtrlr", "TxUpdatedMeasurands")),
        ]
        outcome, reply = await self.run(call.GetVariables(get_variable_data=[v for _, v in wanted]))
        read = outcome.ok and reply is not None
        raw: dict[str, str] = {}
        for result in (reply.get_variable_result if reply else []) or []:
            if result.get("attribute_status") != "Accepted":
                continue
            name = result["variable"]["name"]
            if name == "Entries" and result["variable"].get("instance") != "ChargingProfiles":
                continue
            raw[name] = result.get("attribute_value")
        units = raw.get("RateUnit") or "A,W"
        allowed = tuple(u for u in ("A", "W") if u in units.split(","))
        numbers = NumberSettings(raw)
        return Capabilities(
            max_stack_level=numbers.get("ProfileStackLevel"),
            rate_units=allowed or ("A",),
            max_periods=numbers.get("PeriodsPerSchedule"),
            max_profiles=numbers.get("Entries"),
            phase_rotation=raw.get("PhaseRotation") or None,
            phase_switching=(raw.get("ACPhaseSwitchingSupported") or "").lower() == "true",
            meter_interval=numbers.get("TxUpdatedInterval"),
            measurands=raw.get("TxUpdatedMeasurands"),
            raw={k: v for k, v in raw.items() if v is not None},
            read=read,
            unanswered=outcome.unanswered,
            ignored=numbers.ignored,
        )

    async def _set_variable(self, component: str, variable: str, value: str) -> Outcome:
        outcome, reply = await self.run(call.SetVariables(
            set_variable_data=[{"attribute_value": value, **_var(component, variable)}]))
        if reply is None:
            return outcome
        status = next((r.get("attribute_status") for r in reply.set_variable_result), "Rejected")
        if status in ("Accepted", "RebootRequired"):
            return Outcome.ACCEPTED
        log.info("%s: SetVariables %s.%s=%s: %s", self.id, component, variable, value, status)
        if status in ("UnknownComponent", "UnknownVariable", "NotSupportedAttributeType"):
            return Outcome.NOT_SUPPORTED
        return Outcome.REJECTED

    async def set_measurands(self, measurands: list[str]) -> Outcome:
        return await self._set_variable("SampledDataCtrlr", "TxUpdatedMeasurands", ",".join(measurands))

    async def set_meter_interval(self, interval: int) -> Outcome:
        return await self._set_variable("SampledDataCtrlr", "TxUpdatedInterval", str(interval))

    async def trigger_meter_values(self, connector: int) -> Outcome:
        # A short deadline: while it is unanswered no other call (a decrease) can go out on this connection.
        payload = call.TriggerMessage(requested_message="MeterValues", evse={"id": connector})
        outcome, _ = await self.run(payload, min(self.timeout, TRIGGER_TIMEOUT),
                                       key="TriggerMessage:MeterValues")
        return outcome

    def _profile_call(self, spec: ProfileSpec) -> tuple[Outbound, str]:
        return set_profile_call(spec), f"SetChargingProfile:{PURPOSE[spec.purpose]}"

    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome:
        criteria = None
        if profile_id is None:
            criteria = {k: v for k, v in (("evse_id", connector), ("stack_level", stack_level),
                                          ("charging_profile_purpose", PURPOSE[purpose] if purpose else None))
                        if v is not None}
        outcome, _ = await self.run(call.ClearChargingProfile(charging_profile_id=profile_id,
                                                                   charging_profile_criteria=criteria or None))
        return outcome

    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None:
        outcome, reply = await self.run(call.GetCompositeSchedule(duration=duration, evse_id=connector,
                                                                       charging_rate_unit=unit))
        if not outcome.ok or not reply:
            return None
        periods = (reply.schedule or {}).get("charging_schedule_period") or []
        if not periods:
            return CompositeLimit(None, unit, None)
        first = periods[0]
        return CompositeLimit(float(first["limit"]), (reply.schedule or {}).get("charging_rate_unit", unit),
                              first.get("number_phases"))

    async def set_availability(self, connector: int, operative: bool) -> Outcome:
        evse = {"id": connector} if connector else None
        outcome, reply = await self.run(call.ChangeAvailability(
            operational_status="Operative" if operative else "Inoperative", evse=evse))
        return Outcome.ACCEPTED if reply is not None and reply.status == "Scheduled" else outcome
