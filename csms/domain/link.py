"""The version-agnostic commands the central system sends to a station: the port the delivery drives.

The smart-charging delivery speaks only these types; :mod:`csms.ocpp.v16.commands` and
:mod:`csms.ocpp.v201.commands` turn them into OCPP 1.6 and 2.0.1 messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol


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
    #: The peer does not implement or support this (a CALLERROR NotImplemented / NotSupported, or a reply
    #: status saying so). Permanent for that command on this connection: it is not sent again until the
    #: station reconnects or reboots.
    NOT_SUPPORTED = "NotSupported"

    @property
    def ok(self) -> bool:
        return self is Outcome.ACCEPTED

    @property
    def permanent(self) -> bool:
        return self is Outcome.NOT_SUPPORTED

    @property
    def unanswered(self) -> bool:
        """No answer came (a timeout, the connection or the bus away): unlike a refusal, worth asking again."""
        return self is Outcome.TIMEOUT or self is Outcome.OFFLINE


class ProfileSpec(NamedTuple):
    """One charging profile to install, in the station's own terms. Immutable; a named tuple because one is
    built per charger and decision (a frozen dataclass's ``__init__`` cost three times as much)."""

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
    #: False when the station did not answer the query (timeout, CALLERROR): the values are defaults.
    read: bool = True
    #: True when no answer came at all (timeout, connection or bus away): unlike a refusal, worth asking again.
    unanswered: bool = False
    #: Number-valued settings the station reported as something else (name as reported: value); defaults are used.
    ignored: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompositeLimit:
    limit: float | None           # A (or W, per ``unit``) in force now; None = no limit
    unit: str
    number_phases: int | None


class Readiness(Protocol):
    """What a waiter needs of a flag (an :class:`asyncio.Event` has it)."""

    def is_set(self) -> bool: ...
    async def wait(self) -> bool: ...


class StationLink(Protocol):
    id: str

    #: Set once the station may be set up: its BootNotification was accepted, or it sent another message
    #: (it had booted before this connection). See :class:`csms.ocpp.station.Station`.
    ready: Readiness
    #: Commands (or command:variant keys) the station answered "not implemented/supported" on this connection.
    unsupported: frozenset[str]

    async def read_capabilities(self, connector: int) -> Capabilities: ...
    async def set_measurands(self, measurands: list[str]) -> Outcome: ...
    async def set_meter_interval(self, interval: int) -> Outcome: ...
    async def trigger_meter_values(self, connector: int) -> Outcome: ...
    async def set_profile(self, spec: ProfileSpec) -> Outcome: ...
    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome: ...
    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None: ...
    async def set_availability(self, connector: int, operative: bool) -> Outcome: ...
