"""What both versions' outbound commands share: one call with a deadline, and what its answer means.

A version's command class (:mod:`csms.ocpp.v16.commands`, :mod:`csms.ocpp.v201.commands`) implements
:class:`csms.domain.link.StationLink` for one station; the delivery drives it without knowing the version.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

from csms.domain.link import Outcome, ProfileSpec, Readiness
from csms.ocpp import frames

log = logging.getLogger("csms.ocpp.commands")

#: CALLERROR codes and reply statuses that mean "this station cannot do that", whatever we retry. The ``ocpp``
#: package and many firmwares swap NotImplemented and NotSupported (see the domain notes), so both count.
NOT_SUPPORTED_CODES = frozenset({"NotImplemented", "NotSupported"})
#: Seconds a TriggerMessage may take: it is a nicety, and while a call is unanswered nothing else can be sent.
TRIGGER_TIMEOUT = 3.0


#: The range of a :class:`ProfileSpec` over which ``tests/ocpp/test_profile_payloads.py`` holds both versions'
#: SetChargingProfile payloads to their schemas: OCPP's integers (int32), limits from 0 to a GW, times up to 2100.
MAX_INT = 2**31 - 1
MAX_LIMIT = 1e9
MAX_TIME = 4102444800.0
_NUMBERS = (int, float)


def proven(spec: ProfileSpec) -> bool:
    """Whether ``spec`` lies in that range: its payload goes out without its schema checked again (the check was
    a fifth of what a profile cost the server besides the socket); one outside it is checked as any other."""
    tid, phase, duration = spec.transaction_id, spec.phase_to_use, spec.duration
    return (type(spec.profile_id) is int and 0 <= spec.profile_id <= MAX_INT
            and type(spec.stack_level) is int and 0 <= spec.stack_level <= MAX_INT
            and type(spec.connector) is int and 0 <= spec.connector <= MAX_INT
            and type(spec.limit) in _NUMBERS and 0 <= spec.limit <= MAX_LIMIT  # NaN is neither
            and (spec.unit == "A" or spec.unit == "W")
            and type(spec.number_phases) is int and 1 <= spec.number_phases <= 3
            and (phase is None or (type(phase) is int and 1 <= phase <= 3))
            and (tid is None or (type(tid) is str and 0 < len(tid) <= 36))
            and (duration is None or (type(duration) is int and 0 <= duration <= MAX_INT))
            and _time(spec.start_schedule) and _time(spec.valid_to))


def _time(t: float | None) -> bool:
    return t is None or (type(t) in _NUMBERS and 0 <= t <= MAX_TIME)


def int_setting(value: str | None) -> int | None:
    """A configuration value a station reported as a number (both versions report strings); None when it did not
    report one or it is no integer."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class NumberSettings:
    """Reads number-valued settings from what a station reported, keeping the ones that were no number.

    A firmware that reports ``ProfileStackLevel="abc"`` gets the defaults, and the operator is told which value
    was ignored (:attr:`csms.domain.link.Capabilities.ignored`) instead of guessing why the defaults were used.
    A blank value is the station not saying, not nonsense."""

    def __init__(self, reported: Mapping[str, str | None]) -> None:
        self.reported = reported
        self.ignored: dict[str, str] = {}

    def get(self, key: str) -> int | None:
        value = self.reported.get(key)
        number = int_setting(value)
        if number is None and value is not None and value.strip():
            self.ignored[key] = value
        return number


class Session(Protocol):
    """What commands need of a station's session (:class:`csms.ocpp.station.Station` has it)."""

    id: str
    ready: Readiness
    ready_reason: str
    boots: int
    #: Replaced, never changed in place: an empty frozenset is shared, a set would cost 216 bytes per station.
    unsupported: frozenset[str]

    async def call(self, payload: Any, skip_schema_validation: bool = False, timeout: float | None = None) -> Any: ...
    def log_event(self, kind: str, **detail: Any) -> None: ...


class Commands(ABC):
    """The station's side of :class:`csms.domain.link.StationLink`: its id, readiness and what it cannot do."""

    __slots__ = ("station", "id", "timeout")  # one per connected station: no per-instance dict

    def __init__(self, station: Session, timeout: float):
        self.station = station
        self.id = station.id
        self.timeout = timeout

    @property
    def ready(self) -> Readiness:
        return self.station.ready

    @property
    def ready_reason(self) -> str:
        return self.station.ready_reason

    @property
    def boots(self) -> int:
        return self.station.boots

    @property
    def unsupported(self) -> frozenset[str]:
        return self.station.unsupported

    def mark_unsupported(self, key: str, why: str) -> None:
        """Remembers that the station cannot do ``key``; logs it and stores an event, once per connection."""
        if key in self.unsupported:
            return
        self.station.unsupported |= {key}
        log.warning("%s: %s answered %s; not sent again on this connection (until it reconnects or reboots)",
                    self.id, key, why)
        self.station.log_event("command_not_supported", command=key, answer=why)

    @abstractmethod
    def _profile_call(self, spec: ProfileSpec) -> tuple[Any, str]:
        """The version's SetChargingProfile for ``spec``, and the key its "not supported" is remembered by
        (each version's command class builds its own)."""

    async def set_profile(self, spec: ProfileSpec) -> Outcome:
        payload, key = self._profile_call(spec)
        outcome, _ = await self.run(payload, key=key)
        return outcome

    async def run(self, payload: Any, timeout: float | None = None, key: str | None = None,
                  **kw: Any) -> tuple[Outcome, Any]:
        """Sends one call; the outcome is read from the reply's ``status`` when it has one.

        ``timeout`` (default: the server's call timeout) covers the wait for the connection's call lock as
        well as the answer. A CALLERROR, or a reply that fails validation, is ``Outcome.ERROR``; the reply
        object (or None) is returned for callers that need more. A CALLERROR NotImplemented/NotSupported,
        or a reply status NotSupported/NotImplemented, is ``Outcome.NOT_SUPPORTED``, and the command's
        ``key`` (default: the action; callers pass a finer key when the answer depends on the content, e.g.
        ``SetChargingProfile:TxProfile``) is not sent again on this connection: later calls return
        ``NOT_SUPPORTED`` at once.
        """
        action = frames.action_of(payload)
        key = key or action
        if key in self.unsupported:
            return Outcome.NOT_SUPPORTED, None
        try:
            reply = await self.station.call(payload, timeout=self.timeout if timeout is None else timeout, **kw)
        except TimeoutError:
            return Outcome.TIMEOUT, None
        except Exception as exc:  # OCPPError from a CALLERROR, or a reply its schema or dataclass refuses
            code = getattr(exc, "code", None)
            if code in NOT_SUPPORTED_CODES:
                self.mark_unsupported(key, f"CALLERROR {code}")
                return Outcome.NOT_SUPPORTED, None
            log.warning("%s: %s failed: %s", self.id, action, exc)
            return Outcome.ERROR, None
        status = getattr(reply, "status", "Accepted")
        if status == "Accepted":
            return Outcome.ACCEPTED, reply
        if status in NOT_SUPPORTED_CODES:
            self.mark_unsupported(key, f"status {status}")
            return Outcome.NOT_SUPPORTED, reply
        return (Outcome.UNKNOWN if status == "Unknown" else Outcome.REJECTED), reply
