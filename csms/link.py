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
    #: False when the station did not answer the query (timeout, CALLERROR): the values are defaults.
    read: bool = True


@dataclass(frozen=True)
class CompositeLimit:
    limit: float | None           # A (or W, per ``unit``) in force now; None = no limit
    unit: str
    number_phases: int | None


class StationLink(Protocol):
    id: str

    #: Set once the station may be set up: its BootNotification was accepted, or it sent another message
    #: (it had booted before this connection). See :class:`csms.session.SessionMixin`.
    ready: asyncio.Event
    #: Commands (or command:variant keys) the station answered "not implemented/supported" on this connection.
    unsupported: set[str]

    async def read_capabilities(self, connector: int) -> Capabilities: ...
    async def set_measurands(self, measurands: list[str]) -> Outcome: ...
    async def set_meter_interval(self, interval: int) -> Outcome: ...
    async def trigger_meter_values(self, connector: int) -> Outcome: ...
    async def set_profile(self, spec: ProfileSpec) -> Outcome: ...
    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome: ...
    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None: ...
    async def set_availability(self, connector: int, operative: bool) -> Outcome: ...


#: CALLERROR codes and reply statuses that mean "this station cannot do that", whatever we retry. The ``ocpp``
#: package and many firmwares swap NotImplemented and NotSupported (see the domain notes), so both count.
NOT_SUPPORTED_CODES = frozenset({"NotImplemented", "NotSupported"})
#: Seconds a TriggerMessage may take: it is a nicety, and while a call is unanswered nothing else can be sent.
TRIGGER_TIMEOUT = 3.0


def mark_unsupported(session: Any, key: str, why: str) -> None:
    """Remembers that ``session``'s station cannot do ``key``; logs it and stores an event, once per connection."""
    unsupported = getattr(session, "unsupported", None)
    if unsupported is None or key in unsupported:
        return
    unsupported.add(key)
    log.warning("%s: %s answered %s; not sent again on this connection (until it reconnects or reboots)",
                session.id, key, why)
    record = getattr(session, "_log", None)
    if record is not None:
        record("command_not_supported", command=key, answer=why)


async def run_command(session: Any, payload: Any, timeout: float, key: str | None = None,
                      **kw: Any) -> tuple[Outcome, Any]:
    """Sends one call on a station session; the outcome is read from the reply's ``status`` when it has one.

    ``timeout`` covers the wait for the session's call lock as well as the answer. A CALLERROR, or a reply that
    fails validation, is ``Outcome.ERROR``; the reply object (or None) is returned for callers that need more.
    A CALLERROR NotImplemented/NotSupported, or a reply status NotSupported/NotImplemented, is
    ``Outcome.NOT_SUPPORTED``, and the command's ``key`` (default: the action; callers pass a finer key when the
    answer depends on the content, e.g. ``SetChargingProfile:TxProfile``) is not sent again on this connection:
    later calls return ``NOT_SUPPORTED`` at once.
    """
    action = type(payload).__name__
    key = key or action
    if key in (getattr(session, "unsupported", None) or ()):
        return Outcome.NOT_SUPPORTED, None
    try:
        async with asyncio.timeout(timeout):
            reply = await session.call(payload, suppress=False, **kw)
    except TimeoutError:
        return Outcome.TIMEOUT, None
    except Exception as exc:  # OCPPError from a CALLERROR, or a reply that fails validation
        code = getattr(exc, "code", None)
        if code in NOT_SUPPORTED_CODES:
            mark_unsupported(session, key, f"CALLERROR {code}")
            return Outcome.NOT_SUPPORTED, None
        log.warning("%s: %s failed: %s", session.id, action, exc)
        return Outcome.ERROR, None
    status = getattr(reply, "status", "Accepted")
    if status == "Accepted":
        return Outcome.ACCEPTED, reply
    if status in NOT_SUPPORTED_CODES:
        mark_unsupported(session, key, f"status {status}")
        return Outcome.NOT_SUPPORTED, reply
    return (Outcome.UNKNOWN if status == "Unknown" else Outcome.REJECTED), reply
