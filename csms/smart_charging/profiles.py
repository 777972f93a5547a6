"""The profiles the delivery installs, as the charger can express them: pure shapes and units, no sending."""

from __future__ import annotations

from collections.abc import Callable

from csms.config import SmartChargingConfig
from csms.domain.link import Capabilities, ProfileSpec, Purpose

from .chain import chain_of
from .channel import ChargerChannel

FALLBACK_ID = 1
DYNAMIC_ID = {Purpose.TX: 10, Purpose.TX_DEFAULT: 11, Purpose.STATION_MAX: 12}
NOMINAL_VOLTAGE = 230.0
#: The offline fallback starts a day in the past, so no clock skew can leave a gap before it.
FALLBACK_START_BEFORE = 86400


def fallback_shape(ch: ChargerChannel) -> tuple[int, int | None, tuple[int, ...]]:
    """(numberPhases, phaseToUse, building phases) of the offline fallback this charger can express."""
    caps = ch.caps or Capabilities()
    if ch.cfg.phases == 1:
        return 1, None, ch.phases_wired
    if ch.cfg.offline_phase in ch.phases_wired:
        idx = ch.phases_wired.index(ch.cfg.offline_phase) + 1
        if caps.phase_switching and ch.version == "ocpp2.0.1":
            return 1, idx, (ch.cfg.offline_phase,)
        if idx == 1:
            return 1, None, (ch.cfg.offline_phase,)  # 1.6 numberPhases=1 charges on the charger's L1
    return 3, None, ch.phases_wired


def in_unit(ch: ChargerChannel, amps: float, number_phases: int,
            volts: Callable[[ChargerChannel], float]) -> tuple[float, str]:
    """A limit in the charger's rate unit: A when it takes them, W at ``volts(ch)`` per phase otherwise (asked
    only then: it reads the latest sample, a cost on every limit sent)."""
    caps = ch.caps or Capabilities()
    if "A" in caps.rate_units:
        return round(amps, 1), "A"
    return round(amps * volts(ch) * number_phases), "W"


def fallback_specs(ch: ChargerChannel, limit: float, unit: str, now: float) -> list[ProfileSpec]:
    """The offline fallback as a TxDefault profile and as a station maximum, in the order to try them (the
    chain's first purpose first)."""
    n, phase_to_use, _ = fallback_shape(ch)
    tries = [
        ProfileSpec(FALLBACK_ID, 0, Purpose.TX_DEFAULT, 0, limit, unit, n, phase_to_use),
        station_max_fallback(ch, limit, unit, now),
    ]
    if chain_of(ch)[0] is Purpose.STATION_MAX:
        tries.reverse()
    return tries


def station_max_fallback(ch: ChargerChannel, limit: float, unit: str, now: float) -> ProfileSpec:
    n, phase_to_use, _ = fallback_shape(ch)
    return ProfileSpec(FALLBACK_ID, 0, Purpose.STATION_MAX, 0, limit, unit, n, phase_to_use,
                       start_schedule=now - FALLBACK_START_BEFORE)


def dynamic_spec(ch: ChargerChannel, limit: float, unit: str, purpose: Purpose, level: int,
                 transaction_id: str | None, now: float, s: SmartChargingConfig) -> ProfileSpec:
    """The dynamic limit: valid for ``failsafe_ttl`` unless refreshed, so a charger that stops hearing from us
    falls back by itself; it starts ``clock_skew_allowance`` early so a charger's clock behind ours applies it."""
    ttl = s.failsafe_ttl
    return ProfileSpec(DYNAMIC_ID[purpose], level, purpose, 0 if purpose is Purpose.STATION_MAX else ch.connector,
                       limit, unit, ch.cfg.phases,
                       transaction_id=transaction_id if purpose is Purpose.TX else None,
                       start_schedule=now - s.clock_skew_allowance, duration=int(ttl + s.clock_skew_allowance),
                       valid_to=now + ttl)
