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

Times are POSIX seconds (floats).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from simulators.profiles import Kind, Period, Profile, Purpose, Unit, Version


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
