"""What a smart-charging profile is, as the OCPP 1.6 and 2.0.1 specs describe it (no I/O), and how one
is read from the wire.

A :class:`Profile` knows its own validity window, schedule start (absolute, relative to the transaction,
or recurring) and the period in force at a moment; how profiles stack and combine is the store's
business (:mod:`simulators.profile_store`).

Times are POSIX seconds (floats); the protocol layers convert from and to ISO 8601.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from csms.runtime.isotime import iso_millis, parse_iso

Version = Literal["ocpp1.6", "ocpp2.0.1"]
Unit = Literal["A", "W"]

DAY = 86400.0
WEEK = 7 * DAY


class Purpose(StrEnum):
    """Profile purposes, named version-neutrally; :func:`purpose_from_ocpp` reads both spellings."""

    STATION_MAX = "StationMax"
    TX_DEFAULT = "TxDefaultProfile"
    TX = "TxProfile"

    def ocpp_name(self, version: Version) -> str:
        if self is Purpose.STATION_MAX:
            return "ChargePointMaxProfile" if version == "ocpp1.6" else "ChargingStationMaxProfile"
        return self.value


def purpose_from_ocpp(name: str) -> Purpose:
    if name in ("ChargePointMaxProfile", "ChargingStationMaxProfile"):
        return Purpose.STATION_MAX
    return Purpose(name)


class Kind(StrEnum):
    ABSOLUTE = "Absolute"
    RELATIVE = "Relative"
    RECURRING = "Recurring"


@dataclass(frozen=True)
class Period:
    start: float
    limit: float
    number_phases: int | None = None
    phase_to_use: int | None = None


@dataclass(frozen=True)
class Schedule:
    periods: tuple[Period, ...]
    unit: Unit = "A"
    start: float | None = None
    duration: float | None = None
    min_rate: float | None = None
    id: int | None = None


@dataclass(frozen=True)
class Profile:
    id: int
    stack_level: int
    purpose: Purpose
    kind: Kind
    schedule: Schedule
    connector: int = 0
    recurrency: Literal["Daily", "Weekly"] | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: str | None = None

    def valid_at(self, t: float) -> bool:
        return (self.valid_from is None or self.valid_from <= t) and (self.valid_to is None or t < self.valid_to)

    def schedule_start(self, t: float, tx_start: float | None) -> float | None:
        """When the schedule that applies at ``t`` started, or None if it has not started."""
        if self.kind is Kind.RELATIVE:
            return tx_start if tx_start is not None else t
        start = self.schedule.start
        if start is None:  # 1.6 tolerates an Absolute profile without startSchedule: relative to charging
            return tx_start if tx_start is not None else t
        if self.kind is Kind.RECURRING and t >= start:
            period = DAY if self.recurrency == "Daily" else WEEK
            start += math.floor((t - start) / period) * period
        return start if t >= start else None

    def period_at(self, t: float, tx_start: float | None) -> Period | None:
        """The schedule period in force at ``t``, or None before the start or after the duration."""
        if not self.valid_at(t):
            return None
        start = self.schedule_start(t, tx_start)
        if start is None:
            return None
        offset = t - start
        if self.schedule.duration is not None and offset >= self.schedule.duration:
            return None
        current = None
        for p in self.schedule.periods:
            if p.start <= offset:
                current = p
            else:
                break
        return current

    def breakpoints(self, t0: float, t1: float, tx_start: float | None) -> set[float]:
        """Moments in [t0, t1) where this profile's contribution may change."""
        out = {x for x in (self.valid_from, self.valid_to) if x is not None and t0 <= x < t1}
        if self.kind is Kind.RECURRING and self.schedule.start is not None:
            step = DAY if self.recurrency == "Daily" else WEEK
            first = self.schedule.start + math.floor((t0 - self.schedule.start) / step) * step
            starts = [first + k * step for k in range(int((t1 - first) // step) + 2)]
        else:
            s = self.schedule_start(t0, tx_start)
            starts = [s if s is not None else self.schedule.start or t0]
        for s in starts:
            offsets = [p.start for p in self.schedule.periods]
            if self.schedule.duration is not None:
                offsets.append(self.schedule.duration)
            out |= {s + o for o in offsets if t0 <= s + o < t1}
        return out


# ---- reading the wire format ----------------------------------------------------------------------


def _schedule(raw: dict) -> Schedule:
    periods = tuple(
        Period(float(p["start_period"]), float(p["limit"]), p.get("number_phases"), p.get("phase_to_use"))
        for p in raw["charging_schedule_period"])
    return Schedule(
        periods=periods, unit=raw["charging_rate_unit"], start=parse_iso(raw.get("start_schedule")),
        duration=raw.get("duration"), min_rate=raw.get("min_charging_rate"), id=raw.get("id"))


def profile_from_ocpp(raw: dict, connector: int, version: Version) -> Profile:
    """A profile from the snake_case dict the ``ocpp`` package hands a handler (1.6 csChargingProfiles /
    2.0.1 chargingProfile). 2.0.1 may carry up to three schedules; only ISO 15118 uses more than one, so
    the first is the one that counts here."""
    if version == "ocpp1.6":
        sched = raw["charging_schedule"]
        pid = raw["charging_profile_id"]
        tx = raw.get("transaction_id")
    else:
        sched = raw["charging_schedule"][0]
        pid = raw["id"]
        tx = raw.get("transaction_id")
    return Profile(
        id=pid, stack_level=raw["stack_level"], purpose=purpose_from_ocpp(raw["charging_profile_purpose"]),
        kind=Kind(raw["charging_profile_kind"]), schedule=_schedule(sched), connector=connector,
        recurrency=raw.get("recurrency_kind"), valid_from=parse_iso(raw.get("valid_from")),
        valid_to=parse_iso(raw.get("valid_to")), transaction_id=None if tx is None else str(tx))


def profile_to_ocpp201(profile: Profile) -> dict:
    """An installed profile as a 2.0.1 ``chargingProfile`` (snake_case, as the ``ocpp`` package sends it): what
    the charger reports in ReportChargingProfiles."""
    s = profile.schedule
    periods = []
    for p in s.periods:
        period: dict = {"start_period": int(p.start), "limit": p.limit}
        if p.number_phases is not None:
            period["number_phases"] = p.number_phases
        if p.phase_to_use is not None:
            period["phase_to_use"] = p.phase_to_use
        periods.append(period)
    schedule: dict = {"id": s.id if s.id is not None else 1, "charging_rate_unit": s.unit,
                      "charging_schedule_period": periods}
    if s.start is not None:
        schedule["start_schedule"] = iso_millis(s.start)
    if s.duration is not None:
        schedule["duration"] = int(s.duration)
    if s.min_rate is not None:
        schedule["min_charging_rate"] = s.min_rate
    out: dict = {"id": profile.id, "stack_level": profile.stack_level,
                 "charging_profile_purpose": profile.purpose.ocpp_name("ocpp2.0.1"),
                 "charging_profile_kind": profile.kind.value, "charging_schedule": [schedule]}
    for key, value in (("recurrency_kind", profile.recurrency), ("transaction_id", profile.transaction_id),
                       ("valid_from", profile.valid_from), ("valid_to", profile.valid_to)):
        if value is not None:
            out[key] = iso_millis(value) if key.startswith("valid") else value
    return out


def with_schedule(profile: Profile, **changes) -> Profile:
    """A copy of ``profile`` whose schedule has ``changes`` (handy in tests and scenarios)."""
    return replace(profile, schedule=replace(profile.schedule, **changes))
