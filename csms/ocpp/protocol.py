"""OCPP-J as a sans-I/O state machine: frames in, events and frames out, time as an input.

Modelled on python-websockets' ``Protocol``: :meth:`Protocol.receive_data` takes one text frame,
:meth:`Protocol.events_received` hands out what it meant, :meth:`Protocol.data_to_send` the frames to
write. Nothing here reads a clock, awaits or touches a socket, so every rule of the message layer (the
error a bad frame gets, schema checks both ways, one outstanding CALL, the reply that answers it, its
deadline) is tested by feeding frames (``tests/ocpp/test_protocol.py``). :mod:`csms.ocpp.connection`
drives it over a websocket.

Frames the protocol can answer alone (unparsable, unknown or unsupported actions, payloads its schema
refuses) are answered here; only a valid CALL for a supported action reaches the application, as
:class:`CallReceived`, and the application answers it with :meth:`Protocol.send_result` or
:meth:`Protocol.send_error`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType

from csms.domain.state import Version
from csms.ocpp import frames
from csms.ocpp.errors import error_code, malformed_call, unreadable_frame
from csms.ocpp.schemas import MessageValidator


@dataclass(frozen=True, slots=True)
class CallReceived:
    """A valid CALL the application must answer (payload as received: camelCase)."""
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallRefused:
    """A frame from the station answered with a CALLERROR by the protocol itself (or not answered, if it
    was a broken reply). ``action`` is the action, or "(unknown)"/"(unparsable)"."""
    unique_id: str
    action: str
    code: str
    description: str
    details: dict[str, Any] = field(default_factory=dict)
    answered: bool = True


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The reply to our outstanding CALL, valid against its schema (or not checked, if asked so)."""
    unique_id: str
    action: str
    payload: dict[str, Any]


class InvalidReply(OCPPError):
    """The station's CALLRESULT failed its schema: our verdict on its answer (code and description are the
    schema check's), not a CALLERROR the station sent."""

    def __init__(self, error: OCPPError):
        cause = (error.details or {}).get("cause")  # which field and why: what an operator can act on
        super().__init__(str(cause) if cause else error.description, error.details)
        self.code = error.code


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our outstanding CALL got a CALLERROR, or a reply its schema refuses: ``error`` says which."""
    unique_id: str
    action: str
    error: OCPPError


@dataclass(frozen=True, slots=True)
class CallTimedOut:
    unique_id: str
    action: str


@dataclass(frozen=True, slots=True)
class ReplyDropped:
    """A reply to no CALL we await (late, duplicated or invented): counted and forgotten."""
    unique_id: str


Event = CallReceived | CallRefused | CallAnswered | CallFailed | CallTimedOut | ReplyDropped


@dataclass(frozen=True, slots=True)
class PendingCall:
    unique_id: str
    action: str
    deadline: float
    validate: bool


class Protocol:
    """One OCPP-J connection's message layer, seen from the central system.

    ``handlers`` maps each action the application answers to whether its payloads are schema-checked;
    ``known_actions`` is every action the version defines (an action known but not handled is
    NotSupported, an unknown one NotImplemented, as the spec says and the package does not).

    Our CALLs' MessageIds are ``new_id()``'s or, by default, a random prefix and a counter (``3f9a0c1e-17``):
    unique on the connection as OCPP-J asks, and unlike uuid4 no system call per CALL.
    """

    __slots__ = ("version", "validator", "handlers", "known_actions", "pending", "_events", "_out", "_new_id",
                 "_id_prefix", "_calls")

    def __init__(self, version: Version, validator: MessageValidator, handlers: Mapping[str, bool],
                 known_actions: frozenset[str], new_id: Callable[[], str] | None = None):
        self.version = version
        self.validator = validator
        self.handlers = handlers
        self.known_actions = known_actions
        self.pending: PendingCall | None = None
        self._events: list[Event] = []
        self._out: list[str] = []
        self._new_id = new_id
        self._id_prefix = ""  # drawn at the first CALL
        self._calls = 0

    # -- what the driver collects ------------------------------------------------------------------

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[str]:
        out, self._out = self._out, []
        return out

    # -- frames from the station -------------------------------------------------------------------

    def receive_data(self, raw: str | bytes) -> None:
        try:
            msg = frames.unpack(raw)
        except frames.FrameRefused as exc:
            self._refuse_frame(raw, exc)
            return
        except OCPPError as exc:
            self._refuse_unreadable(raw, exc)
            return
        if msg.message_type_id == MessageType.Call:
            self._receive_call(msg)
        else:
            self._receive_reply(msg)

    def _refuse_frame(self, raw: str | bytes, exc: frames.FrameRefused) -> None:
        """Too deep or a number too long: a format violation with the MessageId read from the frame's start."""
        cause = exc.details["cause"]
        kind, unique_id = frames.frame_head(raw)
        self._refused(unique_id or "-1", "(unparsable)", error_code("FormatViolation", self.version), cause,
                      {"cause": cause}, answer=kind not in (3, 4))

    def _refuse_unreadable(self, raw: str | bytes, exc: OCPPError) -> None:
        """Not OCPP-J: the spec's error, with MessageId "-1" when none can be read. A broken reply is never
        answered."""
        try:
            frame = json.loads(raw)  # safe: frames.unpack has bounded its depth and numbers
        except ValueError:
            frame = None
        unique_id = "-1"
        if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) and frame[1]:
            unique_id = frame[1]
        code, description = unreadable_frame(frame, self.version)
        is_reply = isinstance(frame, list) and bool(frame) and frame[0] in (3, 4)
        self._refused(unique_id, "(unparsable)", code, description,
                      {"cause": str(exc.details.get("cause", ""))[:200]}, answer=not is_reply)
        pending = self.pending
        if is_reply and pending is not None and unique_id == pending.unique_id:
            # A broken answer to our call (e.g. [4, "<id>"]) is its answer: fail the call now, not at its deadline.
            self.pending = None
            self._events.append(CallFailed(pending.unique_id, pending.action, InvalidReply(exc)))

    def _receive_call(self, msg: Call) -> None:
        if not isinstance(msg.unique_id, str) or not isinstance(msg.action, str) or not isinstance(msg.payload, dict):
            uid = msg.unique_id if isinstance(msg.unique_id, str) else "-1"
            self._refused(uid, "(unparsable)", malformed_call(msg.unique_id, msg.action, self.version),
                          'CALL must be [2, "<id>", "<Action>", {payload}]')
            return
        validate = self.handlers.get(msg.action)
        if validate is None:
            # Spec (1.6 OCPP-J table 7, 2.0.1 part 4): NotImplemented = action not known,
            # NotSupported = known but not supported here.
            if msg.action in self.known_actions:
                self._refused(msg.unique_id, msg.action, "NotSupported",
                              f"{msg.action} is not supported by a central system")
            else:
                self._refused(msg.unique_id, "(unknown)", "NotImplemented", f"unknown action {msg.action!r}")
            return
        if validate:
            try:
                self.validator.validate(msg)
            except OCPPError as error:
                details = {k: v for k, v in (error.details or {}).items() if k != "ocpp_message"}
                self._refused(msg.unique_id, msg.action, error_code(error.code, self.version), error.description,
                              details)
                return
        self._events.append(CallReceived(msg.unique_id, msg.action, msg.payload))

    def _receive_reply(self, msg: CallResult | CallError) -> None:
        pending = self.pending
        if pending is None or msg.unique_id != pending.unique_id:
            self._events.append(ReplyDropped(str(msg.unique_id)[:64]))
            return
        self.pending = None
        if msg.message_type_id == MessageType.CallError:
            self._events.append(CallFailed(pending.unique_id, pending.action, msg.to_exception()))
            return
        if pending.validate:
            msg.action = pending.action
            try:
                self.validator.validate(msg)
            except OCPPError as error:
                self._events.append(CallFailed(pending.unique_id, pending.action, InvalidReply(error)))
                return
        self._events.append(CallAnswered(pending.unique_id, pending.action, msg.payload))

    def _refused(self, unique_id: str, action: str, code: str, description: str,
                 details: dict[str, Any] | None = None, answer: bool = True) -> None:
        details = details or {}
        if answer:
            self._out.append(frames.call_error_frame(unique_id, code, description, _jsonable(details)))
        self._events.append(CallRefused(unique_id, action, code, description, details, answer))

    # -- our answers -------------------------------------------------------------------------------

    def send_result(self, call: CallReceived, payload: dict[str, Any]) -> OCPPError | None:
        """Answers ``call``. A reply that fails its schema is our bug, not the station's: the station gets
        an InternalError instead, and the schema's error is returned for the log."""
        if self.handlers.get(call.action):
            try:
                self.validator.validate(CallResult(call.unique_id, payload, call.action))
            except OCPPError as error:
                self.send_error(call.unique_id, "InternalError", "An unexpected error occurred.")
                return error
        self._out.append(frames.call_result_frame(call.unique_id, payload))
        return None

    def send_error(self, unique_id: str, code: str, description: str, details: dict[str, Any] | None = None) -> str:
        """Answers a CALL with a CALLERROR; returns the code as this version spells it."""
        code = error_code(code, self.version)
        self._out.append(frames.call_error_frame(unique_id, code, description, _jsonable(details or {})))
        return code

    # -- our calls ---------------------------------------------------------------------------------

    def send_call(self, action: str, payload: dict[str, Any], now: float, timeout: float,
                  validate: bool = True, check: bool = True) -> str:
        """Sends a CALL and awaits its reply until ``now + timeout``; returns its MessageId.

        OCPP-J allows one outstanding CALL per direction: the driver serialises calls. A payload its schema
        refuses raises that ``OCPPError`` and nothing is sent. ``validate`` False checks neither the payload nor
        the reply; ``check`` False only the payload (one its builder is proven to keep to the schema)."""
        if self.pending is not None:
            raise RuntimeError(f"a CALL ({self.pending.action}) is still outstanding")
        unique_id = self._new_id() if self._new_id is not None else self._next_id()
        if validate and check:
            self.validator.validate(Call(unique_id, action, payload))
        self.pending = PendingCall(unique_id, action, now + timeout, validate)
        self._out.append(frames.call_frame(unique_id, action, payload))
        return unique_id

    def _next_id(self) -> str:
        if not self._id_prefix:
            self._id_prefix = secrets.token_hex(4)
        self._calls += 1
        return f"{self._id_prefix}-{self._calls}"

    def expire(self, now: float) -> None:
        """Gives up on the outstanding CALL once its deadline has passed (a late reply is then dropped)."""
        if self.pending is not None and now >= self.pending.deadline:
            pending, self.pending = self.pending, None
            self._events.append(CallTimedOut(pending.unique_id, pending.action))

    def abandon(self) -> None:
        """Forgets the outstanding CALL (its caller gave up); a late reply is then dropped."""
        self.pending = None


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        frames.dumps(details)
        return details
    except (TypeError, ValueError):
        return {k: str(v) for k, v in details.items()}
