"""A charger's smart-charging profile store, as the OCPP 1.6 and 2.0.1 specs describe it (no I/O).

The simulated chargers keep their profiles here and ask it, every tick, how much they may draw. The
rules follow the specs rather than any one firmware, so that a test against the simulator says what a
conformant charger would do:

* purposes: the station maximum (1.6 ChargePointMaxProfile / 2.0.1 ChargingStationMaxProfile, connector
  0 only) limits the station as a whole; a TxProfile (needs a running transaction on its connector, is
  dropped when it ends) overrides the TxDefaultProfile; the effective limit is the minimum of the two.
* stacking: at each moment the profile that counts within a purpose is the one with the highest
  stackLevel whose validity window contains the moment *and* whose schedule has a period then (a
  schedule past its ``duration`` no longer prevails, so the next level down shows through - the
  fallback a central system relies on). A connector-specific TxDefaultProfile beats a connector-0 one of
  the same stack level.
* replacement: 1.6 replaces by id, or by the same stackLevel + purpose + connector; 2.0.1 replaces by id
  only and rejects a different id with the same stackLevel + purpose + EVSE and overlapping validity
  (K01.FR.06/39).
* units: a limit in A is per phase, in W is the total; W becomes A with the nominal voltage and the
  number of phases in use.

Times are POSIX seconds (floats); the protocol layers convert from and to ISO 8601.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal

from csms.isotime import iso_millis as format_time, parse_iso as parse_time  # the wire format's times

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


@dataclass(frozen=True)
class EffectiveLimit:
    """What a connector may draw now: A per phase (None = no profile limits it) on how many phases."""

    amps: float | None
    number_phases: int = 3
    phase_to_use: int | None = None


@dataclass(frozen=True)
class CompositePeriod:
    start: float
    limit: float
    number_phases: int = 3


@dataclass(frozen=True)
class CompositeSchedule:
    connector: int
    start: float
    duration: float
    unit: Unit
    periods: tuple[CompositePeriod, ...]


@dataclass(frozen=True)
class SetResult:
    accepted: bool
    reason: str = ""


@dataclass
class ProfileStore:
    """Installed profiles of one charger plus the transactions their TxProfiles hang on.

    ``max_stack_level``, ``max_periods``, ``max_profiles`` and ``units`` are the limits the charger
    advertises (ChargeProfileMaxStackLevel, ChargingScheduleMaxPeriods, MaxChargingProfilesInstalled,
    ChargingScheduleAllowedChargingRateUnit); ``phases`` and ``voltage`` convert W to A.
    """

    version: Version = "ocpp1.6"
    connectors: int = 1
    phases: int = 3
    voltage: float = 230.0
    max_stack_level: int = 8
    max_periods: int = 24
    max_profiles: int = 16
    units: frozenset[str] = frozenset({"A", "W"})
    profiles: dict[int, Profile] = field(default_factory=dict)
    #: Running transaction per connector: (transaction id, start time).
    transactions: dict[int, tuple[str, float]] = field(default_factory=dict)

    # ---- installing and removing ----------------------------------------------------------------

    def check(self, profile: Profile) -> str:
        """Why ``profile`` cannot be installed as it stands ('' if it can)."""
        v201 = self.version == "ocpp2.0.1"
        p, s = profile, profile.schedule
        if not 0 <= p.connector <= self.connectors:
            return f"connector/EVSE {p.connector} does not exist (this charger has {self.connectors})"
        if not 0 <= p.stack_level <= self.max_stack_level:
            return f"stackLevel {p.stack_level} is above ChargeProfileMaxStackLevel {self.max_stack_level}"
        if s.unit not in self.units:
            return f"rate unit {s.unit} is not supported (allowed: {', '.join(sorted(self.units))})"
        if not s.periods or len(s.periods) > self.max_periods:
            return f"a schedule needs 1..{self.max_periods} periods, got {len(s.periods)}"
        starts = [q.start for q in s.periods]
        if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
            return "startPeriod values must begin at 0 and increase"
        if any(q.limit < 0 for q in s.periods):
            return "a limit is negative"
        if p.purpose is Purpose.STATION_MAX and p.connector != 0:
            return "the station maximum profile must be set on connector/EVSE 0"
        if p.purpose is Purpose.TX and p.connector == 0:
            return "a TxProfile needs a specific connector/EVSE"
        if (p.kind is Kind.RECURRING) != (p.recurrency is not None):
            return "recurrencyKind goes with, and only with, kind Recurring"
        if v201:
            if p.purpose is Purpose.STATION_MAX and p.kind is Kind.RELATIVE:
                return "ChargingStationMaxProfile cannot be Relative (K01.FR.38)"
            if p.kind in (Kind.ABSOLUTE, Kind.RECURRING) and s.start is None:
                return "Absolute and Recurring profiles need startSchedule (K01.FR.40)"
            if p.kind is Kind.RELATIVE and s.start is not None:
                return "a Relative profile must not have startSchedule (K01.FR.41)"
        if p.purpose is Purpose.TX:
            running = self.transactions.get(p.connector)
            if running is None:
                return f"a TxProfile needs a running transaction on connector/EVSE {p.connector}"
            if (v201 or p.transaction_id is not None) and p.transaction_id != running[0]:
                return f"transactionId {p.transaction_id!r} is not the running transaction {running[0]!r}"
        return ""

    def set(self, profile: Profile) -> SetResult:
        reason = self.check(profile)
        if reason:
            return SetResult(False, reason)
        replaced = {profile.id} & self.profiles.keys()
        for other in self.profiles.values():
            same_slot = (other.stack_level, other.purpose, other.connector) == (
                profile.stack_level, profile.purpose, profile.connector)
            if other.id == profile.id or not same_slot:
                continue
            if self.version == "ocpp1.6":
                replaced.add(other.id)
            elif _overlap(other, profile):
                return SetResult(False, f"profile {other.id} already holds stackLevel {other.stack_level} "
                                        f"for {other.purpose.value} on EVSE {other.connector} (K01.FR.06)")
        if len(self.profiles) - len(replaced) + 1 > self.max_profiles:
            return SetResult(False, f"MaxChargingProfilesInstalled ({self.max_profiles}) reached")
        for pid in replaced:
            del self.profiles[pid]
        self.profiles[profile.id] = profile
        return SetResult(True)

    def clear(self, id: int | None = None, connector: int | None = None,
              purpose: Purpose | None = None, stack_level: int | None = None) -> list[int]:
        """Removes matching profiles; returns their ids. An id overrides the other criteria (both versions);
        the rest combine with AND; no criteria at all clears everything."""
        if id is not None:
            gone = [id] if id in self.profiles else []
        else:
            gone = [p.id for p in self.profiles.values()
                    if (connector is None or p.connector == connector)
                    and (purpose is None or p.purpose is purpose)
                    and (stack_level is None or p.stack_level == stack_level)]
        for pid in gone:
            del self.profiles[pid]
        return gone

    def transaction_started(self, connector: int, transaction_id: str, at: float) -> None:
        self.transactions[connector] = (transaction_id, at)

    def transaction_ended(self, connector: int) -> None:
        """TxProfiles live as long as their transaction."""
        self.transactions.pop(connector, None)
        for pid in [p.id for p in self.profiles.values() if p.purpose is Purpose.TX and p.connector == connector]:
            del self.profiles[pid]

    # ---- evaluating -----------------------------------------------------------------------------

    def _prevailing(self, purpose: Purpose, connectors: tuple[int, ...], t: float,
                    tx_start: float | None) -> tuple[Profile, Period] | None:
        best: tuple[tuple[int, int], Profile, Period] | None = None
        for p in self.profiles.values():
            if p.purpose is not purpose or p.connector not in connectors:
                continue
            period = p.period_at(t, tx_start)
            if period is None:
                continue
            rank = (p.stack_level, p.connector)  # same level: the connector-specific one wins
            if best is None or rank > best[0]:
                best = (rank, p, period)
        return None if best is None else (best[1], best[2])

    def _to_amps(self, period: Period, unit: Unit) -> tuple[float, int]:
        phases = min(period.number_phases or 3, self.phases)
        amps = period.limit if unit == "A" else period.limit / (self.voltage * phases)
        return amps, phases

    def _limit(self, candidates: list[tuple[Profile, Period] | None]) -> EffectiveLimit:
        amps: float | None = None
        phases, phase_to_use = self.phases, None
        for found in candidates:
            if found is None:
                continue
            profile, period = found
            a, n = self._to_amps(period, profile.schedule.unit)
            if amps is None or a < amps:
                amps = a
            phases = min(phases, n)
            phase_to_use = period.phase_to_use if n == 1 else phase_to_use
        return EffectiveLimit(amps, phases, phase_to_use if phases == 1 else None)

    def station_limit_at(self, t: float) -> EffectiveLimit:
        """The station maximum in force at ``t`` (limits all connectors together)."""
        return self._limit([self._prevailing(Purpose.STATION_MAX, (0,), t, None)])

    def connector_limit_at(self, connector: int, t: float, tx_start: float | None = None) -> EffectiveLimit:
        """The TxProfile, else TxDefaultProfile, in force on ``connector`` (station maximum not included)."""
        if tx_start is None and connector in self.transactions:
            tx_start = self.transactions[connector][1]
        tx = self._prevailing(Purpose.TX, (connector,), t, tx_start) if connector in self.transactions else None
        if tx is None:
            tx = self._prevailing(Purpose.TX_DEFAULT, (0, connector), t, tx_start)
        return self._limit([tx])

    def limit_at(self, connector: int, t: float, tx_start: float | None = None) -> EffectiveLimit:
        """Composite limit of one connector: min(station maximum, TxProfile else TxDefaultProfile).

        Connector 0 gives the station maximum alone. With several connectors charging, the station
        maximum is their shared budget; the charger divides it (see ``SimCharger``).
        """
        if tx_start is None and connector in self.transactions:
            tx_start = self.transactions[connector][1]
        station = self._prevailing(Purpose.STATION_MAX, (0,), t, None)
        if connector == 0:
            return self._limit([station])
        tx = self._prevailing(Purpose.TX, (connector,), t, tx_start) if connector in self.transactions else None
        if tx is None:
            tx = self._prevailing(Purpose.TX_DEFAULT, (0, connector), t, tx_start)
        return self._limit([station, tx])

    def composite_schedule(self, connector: int, now: float, duration: float, unit: Unit | None = None,
                           cap: float | None = None) -> CompositeSchedule:
        """The composite schedule from ``now`` for ``duration`` s, as GetCompositeSchedule answers it.

        ``cap`` is the charger's own maximum in A: it fills gaps where no profile limits the connector
        and caps every period. Consecutive equal periods are merged.
        """
        unit = unit or "A"
        running = self.transactions.get(connector) if connector else None
        tx_start = running[1] if running else now  # a Relative schedule would start now
        end = now + duration
        points = {now}
        for p in self.profiles.values():
            if p.connector in (0, connector):
                points |= p.breakpoints(now, end, tx_start)
        periods: list[CompositePeriod] = []
        for t in sorted(points):
            lim = self.limit_at(connector, t, tx_start)
            amps = lim.amps if lim.amps is not None else cap
            if amps is None:
                continue  # no profile and no cap: nothing to report for this moment
            if cap is not None:
                amps = min(amps, cap)
            value = amps if unit == "A" else amps * self.voltage * lim.number_phases
            value = round(value, 1)
            if periods and periods[-1].limit == value and periods[-1].number_phases == lim.number_phases:
                continue
            periods.append(CompositePeriod(round(t - now), value, lim.number_phases))
        return CompositeSchedule(connector, now, duration, unit, tuple(periods))


def _overlap(a: Profile, b: Profile) -> bool:
    a0, a1 = a.valid_from or -math.inf, a.valid_to or math.inf
    b0, b1 = b.valid_from or -math.inf, b.valid_to or math.inf
    return a0 < b1 and b0 < a1


# ---- reading the wire format ----------------------------------------------------------------------


def _schedule(raw: dict) -> Schedule:
    periods = tuple(
        Period(float(p["start_period"]), float(p["limit"]), p.get("number_phases"), p.get("phase_to_use"))
        for p in raw["charging_schedule_period"])
    return Schedule(
        periods=periods, unit=raw["charging_rate_unit"], start=parse_time(raw.get("start_schedule")),
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
        recurrency=raw.get("recurrency_kind"), valid_from=parse_time(raw.get("valid_from")),
        valid_to=parse_time(raw.get("valid_to")), transaction_id=None if tx is None else str(tx))


def with_schedule(profile: Profile, **changes) -> Profile:
    """A copy of ``profile`` whose schedule has ``changes`` (handy in tests and scenarios)."""
    return replace(profile, schedule=replace(profile.schedule, **changes))
