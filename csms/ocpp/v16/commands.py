"""OCPP 1.6 side of :mod:`csms.domain.link`: configuration keys, charging profiles, availability."""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v16 import call

from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose
from csms.ocpp.commands import TRIGGER_TIMEOUT, Commands, NumberSettings, proven
from csms.ocpp.frames import Outbound
from csms.runtime.isotime import iso_seconds

log = logging.getLogger("csms.ocpp.v16.commands")

PURPOSE = {Purpose.TX: "TxProfile", Purpose.TX_DEFAULT: "TxDefaultProfile", Purpose.STATION_MAX: "ChargePointMaxProfile"}
CAPABILITY_KEYS = ["ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
                   "MaxChargingProfilesInstalled", "ConnectorPhaseRotation", "MeterValuesSampledData",
                   "MeterValueSampleInterval"]


def rotation_for(value: str | None, connector: int) -> str | None:
    """``0.RST,1.RTS`` → the entry for ``connector`` (or a bare ``RST`` that applies to all)."""
    if not value:
        return None
    entries = [e.strip() for e in value.split(",") if e.strip()]
    for entry in entries:
        if "." in entry:
            cid, _, rot = entry.partition(".")
            if cid == str(connector):
                return rot
        elif len(entries) == 1:
            return entry
    return None


def set_profile_call(spec: ProfileSpec) -> Outbound:
    """The SetChargingProfile that installs ``spec``, as it goes on the wire (the hot path of every decision)."""
    period = {"startPeriod": 0, "limit": round(spec.limit, 1), "numberPhases": spec.number_phases}
    schedule: dict[str, Any] = {"chargingRateUnit": spec.unit, "chargingSchedulePeriod": [period]}
    if spec.duration is not None:
        schedule["duration"] = spec.duration
    if spec.start_schedule is not None:
        schedule["startSchedule"] = iso_seconds(spec.start_schedule)
    profile: dict[str, Any] = {
        "chargingProfileId": spec.profile_id,
        "stackLevel": spec.stack_level,
        "chargingProfilePurpose": PURPOSE[spec.purpose],
        "chargingProfileKind": "Absolute" if spec.start_schedule is not None else "Relative",
        "chargingSchedule": schedule,
    }
    if spec.transaction_id is not None:
        profile["transactionId"] = int(spec.transaction_id)
    if spec.valid_to is not None:
        profile["validTo"] = iso_seconds(spec.valid_to)
    return Outbound("SetChargingProfile", {"connectorId": spec.connector, "csChargingProfiles": profile},
                    checked=not proven(spec))


class Commands16(Commands):
    """:class:`csms.domain.link.StationLink` over OCPP 1.6."""

    __slots__ = ()

    async def read_capabilities(self, connector: int) -> Capabilities:
        outcome, reply = await self.run(call.GetConfiguration(key=CAPABILITY_KEYS))
        raw = {k["key"]: k.get("value") for k in (reply.configuration_key or [])} if reply else {}
        read = outcome.ok and reply is not None
        units = raw.get("ChargingScheduleAllowedChargingRateUnit") or "Current,Power"
        allowed = tuple(u for u, word in (("A", "Current"), ("W", "Power")) if word in units)
        numbers = NumberSettings(raw)
        return Capabilities(
            max_stack_level=numbers.get("ChargeProfileMaxStackLevel"),
            rate_units=allowed or ("A",),
            max_periods=numbers.get("ChargingScheduleMaxPeriods"),
            max_profiles=numbers.get("MaxChargingProfilesInstalled"),
            phase_rotation=rotation_for(raw.get("ConnectorPhaseRotation"), connector),
            phase_switching=False,
            meter_interval=numbers.get("MeterValueSampleInterval"),
            measurands=raw.get("MeterValuesSampledData"),
            raw={k: v for k, v in raw.items() if v is not None},
            read=read,
            unanswered=outcome.unanswered,
            ignored=numbers.ignored,
        )

    async def _change(self, key: str, value: str) -> Outcome:
        outcome, _ = await self.run(call.ChangeConfiguration(key=key, value=value),
                                         key=f"ChangeConfiguration:{key}")
        if not outcome.ok:
            log.info("%s: ChangeConfiguration %s=%s: %s", self.id, key, value, outcome)
        return outcome

    async def set_measurands(self, measurands: list[str]) -> Outcome:
        return await self._change("MeterValuesSampledData", ",".join(measurands))

    async def set_meter_interval(self, interval: int) -> Outcome:
        return await self._change("MeterValueSampleInterval", str(interval))

    async def trigger_meter_values(self, connector: int) -> Outcome:
        # A short deadline: while it is unanswered no other call (a decrease) can go out on this connection.
        payload = call.TriggerMessage(requested_message="MeterValues", connector_id=connector)
        outcome, _ = await self.run(payload, min(self.timeout, TRIGGER_TIMEOUT),
                                       key="TriggerMessage:MeterValues")
        return outcome

    def _profile_call(self, spec: ProfileSpec) -> tuple[Outbound, str]:
        return set_profile_call(spec), f"SetChargingProfile:{PURPOSE[spec.purpose]}"

    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome:
        outcome, _ = await self.run(call.ClearChargingProfile(
            id=profile_id, connector_id=connector, stack_level=stack_level,
            charging_profile_purpose=PURPOSE[purpose] if purpose else None))
        return outcome

    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None:
        # Chargers report limits with more than one decimal; the schema's multipleOf would refuse them.
        outcome, reply = await self.run(
            call.GetCompositeSchedule(connector_id=connector, duration=duration, charging_rate_unit=unit),
            skip_schema_validation=True)
        if not outcome.ok or not reply:
            return None
        periods = (reply.charging_schedule or {}).get("charging_schedule_period") or []
        if not periods:
            return CompositeLimit(None, unit, None)
        first = periods[0]
        return CompositeLimit(float(first["limit"]), reply.charging_schedule.get("charging_rate_unit", unit),
                              first.get("number_phases"))

    async def set_availability(self, connector: int, operative: bool) -> Outcome:
        outcome, reply = await self.run(
            call.ChangeAvailability(connector_id=connector, type="Operative" if operative else "Inoperative"))
        # "Scheduled": the charger applies it when its running transaction ends.
        return Outcome.ACCEPTED if reply is not None and reply.status == "Scheduled" else outcome
