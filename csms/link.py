"""The version-agnostic commands the central system sends to a station.

The smart-charging delivery speaks only these types; ``csms.link16`` and ``csms.link201`` turn them
into OCPP 1.6 and 2.0.1 messages. Every command has a deadline, because the ``ocpp`` package lets
only one call be outstanding per connection and waits for its lock without a timeout.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger("csms.link")


class Purpose(StrEnum):
    TX = "tx"                    # TxProfile: the running transaction
    TX_DEFAULT = "tx_default"    # TxDefaultProfile
    STATION_MAX = "station_max"  # ChargePointMaxProfile (1.6) / ChargingStationMaxProfile (2.0.1)


class Outcome(StrEnum):
    ACCEPTED = "Accepted"
    REJECTED = "Rejected"
    ERROR = "CallError"
    TIMEOUT = "Timeout"
    OFFLINE = "NotConnected"
    UNKNOWN = "Unknown"  # 2.0.1 ClearChargingProfile: nothing matched

    @property
    def ok(self) -> bool:
        return self is Outcome.ACCEPTED


@dataclass(frozen=True)
class ProfileSpec:
    profile_id: int
    stack_level: int
    purpose: Purpose
    connector: int               # 1.6 connectorId / 2.0.1 evseId; 0 = the whole station
    limit: float                 # in ``unit``: A per phase, or W in total
    unit: str = "A"
    number_phases: int = 3
    phase_to_use: int | None = None   # 2.0.1 only, with number_phases = 1
    transaction_id: str | None = None
    #: Absolute when ``start_schedule`` is set, else Relative (to the start of charging).
    start_schedule: float | None = None
    duration: int | None = None
    valid_to: float | None = None


@dataclass
class Capabilities:
    """What a station says it supports, read at every boot/reconnect."""

    max_stack_level: int | None = None
    rate_units: tuple[str, ...] = ("A", "W")
    max_periods: int | None = None
    max_profiles: int | None = None
    phase_rotation: str | None = None       # e.g. "RST" for the connector/EVSE we control
    phase_switching: bool = False           # 2.0.1 ACPhaseSwitchingSupported (phaseToUse allowed)
    meter_interval: int | None = None
    measurands: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompositeLimit:
    limit: float | None           # A (or W, per ``unit``) in force now; None = no limit
    unit: str
    number_phases: int | None


class StationLink(Protocol):
    id: str

    async def read_capabilities(self, connector: int) -> Capabilities: ...
    async def configure_metering(self, interval: int, measurands: list[str]) -> Outcome: ...
    async def set_profile(self, spec: ProfileSpec) -> Outcome: ...
    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome: ...
    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None: ...
    async def set_availability(self, connector: int, operative: bool) -> Outcome: ...


async def run_command(session: Any, payload: Any, timeout: float, **kw: Any) -> tuple[Outcome, Any]:
    """Sends one call on a station session; the outcome is read from the reply's ``status`` when it has one.

    ``timeout`` covers the wait for the session's call lock as well as the answer. A CALLERROR, or a reply that
    fails validation, is ``Outcome.ERROR``; the reply object (or None) is returned for callers that need more.
    """
    try:
        async with asyncio.timeout(timeout):
            reply = await session.call(payload, suppress=False, **kw)
    except TimeoutError:
        return Outcome.TIMEOUT, None
    except Exception as exc:  # OCPPError from a CALLERROR, or a reply that fails validation
        log.warning("%s: %s failed: %s", session.id, type(payload).__name__, exc)
        return Outcome.ERROR, None
    status = getattr(reply, "status", "Accepted")
    if status == "Accepted":
        return Outcome.ACCEPTED, reply
    return (Outcome.UNKNOWN if status == "Unknown" else Outcome.REJECTED), reply
