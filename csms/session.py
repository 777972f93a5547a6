"""What every station session shares, whatever its OCPP version: the fast, spec-conformant message path.

:class:`SessionMixin` sits before the ``ocpp`` package's ChargePoint in the MRO and takes over the
package's message path, keeping its handlers (``@on``/``@after``) and its ``call()`` contract:

* Every frame gets the CALLERROR the spec names: the package sends nothing for malformed JSON, gives
  the reverse of the spec's NotImplemented/NotSupported, and ``FormatViolation`` on 1.6 where the
  spec says ``FormationViolation``. The session carries on after any of them.
* Every inbound and outbound payload is validated against the package's schemas by validators
  compiled once (:mod:`csms.validation`), on the event loop: no thread-pool hop, and no second
  validation by the package. Rejections carry the package's own error, so bad input is answered
  exactly as before.
* JSON and key-case conversion go through :mod:`csms.fastjson`; a handler's signature is inspected
  once per class, not once per message.
* A station that floods is throttled by not reading its socket (TCP back-pressure).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, CallResult, MessageType

from csms import fastjson
from csms.state import Version
from csms.validation import MessageValidator, validator_for

log = logging.getLogger("csms.session")

#: Called as ``observer(session, direction, action, outcome)`` for every CALL a session handles (direction
#: "in": outcome "ok" or the CALLERROR code it answered) or sends ("out": "ok", the CALLERROR code received,
#: "Timeout" or "Cancelled"). The operator view's /metrics counts OCPP messages with it (csms.web.metrics).
#: Observers must be quick and must not raise.
MessageObserver = Callable[[Any, str, str, str], None]
MESSAGE_OBSERVERS: list[MessageObserver] = []


def _observe(session: Any, direction: str, action: str, outcome: str) -> None:
    for observer in MESSAGE_OBSERVERS:
        try:
            observer(session, direction, action, outcome)
        except Exception:
            log.exception("message observer failed")


class TokenBucket:
    """Allows ``rate`` messages a second with bursts of ``burst``; :meth:`delay` says how long to wait."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._tokens, self._at = float(burst), clock()

    def delay(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


def _error_code(code: str, version: Version) -> str:
    if version is Version.V16:
        return {"FormatViolation": "FormationViolation",
                "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}.get(code, code)
    return {"FormationViolation": "FormatViolation",
            "OccurenceConstraintViolation": "OccurrenceConstraintViolation"}.get(code, code)


_WANTS_UNIQUE_ID: dict[Callable, bool] = {}


def _wants_unique_id(handler: Callable) -> bool:
    """Whether a handler declares ``call_unique_id`` (the package inspects this on every message)."""
    key = getattr(handler, "__func__", handler)
    wants = _WANTS_UNIQUE_ID.get(key)
    if wants is None:
        wants = _WANTS_UNIQUE_ID[key] = "call_unique_id" in inspect.signature(handler).parameters
    return wants


def _invoke(handler: Callable, payload: dict[str, Any], unique_id: str) -> Any:
    if _wants_unique_id(handler):
        return handler(**payload, call_unique_id=unique_id)
    return handler(**payload)


class SessionMixin:
    """Mixed into the ``ocpp`` package's ChargePoint classes (before them in the MRO)."""

    version: Version
    known_actions: frozenset[str]  # every action name the version defines

    def setup_session(self, rate: float, burst: int) -> None:
        self._bucket = TokenBucket(rate, burst)
        self.throttled = 0
        self._throttle_logged = False
        self._validator: MessageValidator = validator_for(self._ocpp_version)
        #: The MessageId of the CALL we await a reply to; any other reply is dropped on arrival.
        self._awaited_id: str | None = None
        self.unsolicited_replies = 0

    # -- the receive loop --------------------------------------------------------------------------

    async def start(self) -> None:
        """The package's receive loop, without formatting a log line per frame when nobody reads it."""
        recv, route, debug = self._connection.recv, self.route_message, log.isEnabledFor(logging.DEBUG)
        while True:
            message = await recv()
            if debug:
                log.debug("%s: receive %.500s", self.id, message)
            await route(message)

    async def _send(self, message: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: send %.500s", self.id, message)
        await self._connection.send(message)

    async def _send_error(self, unique_id: str, code: str, description: str, details: dict | None = None) -> None:
        await self._send(fastjson.call_error_frame(unique_id, _error_code(code, self.version), description,
                                                   _jsonable(details or {})))

    async def route_message(self, raw_msg: str | bytes) -> None:
        wait = self._bucket.delay()
        if wait > 0:
            # Not reading the socket while we wait is the throttle: TCP back-pressure slows the station.
            self.throttled += 1
            if not self._throttle_logged:
                log.warning("%s: sending faster than %.0f msg/s, throttled", self.id, self._bucket.rate)
                self._throttle_logged = True
            await asyncio.sleep(wait)
        try:
            msg = fastjson.unpack(raw_msg)
        except OCPPError as exc:
            await self._reply_unparsable(raw_msg, exc)
            return
        if msg.message_type_id == MessageType.Call:
            await self._route_call(msg)
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            if msg.unique_id == self._awaited_id:
                self._response_queue.put_nowait(msg)
            else:
                self._drop_unsolicited(msg)

    def _drop_unsolicited(self, msg: CallResult | CallError) -> None:
        """A reply to nothing we await (late, duplicated or invented) is counted and forgotten at once.

        The package would queue it until the next call, which then logs each at ERROR and recurses once
        per reply: a station could grow our memory and log without bound and break the next call.
        """
        self.unsolicited_replies += 1
        _observe(self, "in", "(reply)", "Unsolicited")
        if self.unsolicited_replies == 1:
            log.warning("%s: dropped an unsolicited reply (MessageId %.64r answers no call we await); further "
                        "ones are only counted (csms_ocpp_messages_total{action=\"(reply)\",outcome=\"Unsolicited\"})",
                        self.id, msg.unique_id)

    async def _reply_unparsable(self, raw_msg: str | bytes, exc: OCPPError) -> None:
        """A frame we cannot read as OCPP-J: answer with the spec's error, messageId "-1" when unreadable."""
        if isinstance(exc, fastjson.FrameRefused):
            await self._reply_refused(raw_msg, exc)
            return
        unique_id = "-1"
        try:
            frame = json.loads(raw_msg)  # safe: fastjson.unpack has bounded its depth and numbers
        except ValueError:
            frame = None
        if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str) and frame[1]:
            unique_id = frame[1]
        if isinstance(frame, list) and frame and frame[0] not in (2, 3, 4):
            code = "MessageTypeNotSupported" if self.version is Version.V201 else "FormationViolation"
            description = f"MessageTypeId {frame[0]!r} is not 2, 3 or 4"
        elif frame is None:
            code = "RpcFrameworkError" if self.version is Version.V201 else "FormationViolation"
            description = "message is not valid JSON"
        elif not isinstance(frame, list):
            code = "RpcFrameworkError" if self.version is Version.V201 else "FormationViolation"
            description = "message must be a JSON array [MessageTypeId, MessageId, ...]"
        else:
            code = "RpcFrameworkError" if self.version is Version.V201 else "ProtocolError"
            description = "message is missing elements"
        log.warning("%s: unparsable frame (%s): %.200r", self.id, description, raw_msg)
        if frame is not None and isinstance(frame, list) and frame and frame[0] in (3, 4):
            return  # never answer a reply, even a broken one
        await self._send_error(unique_id, code, description, {"cause": str(exc.details.get("cause", ""))[:200]})

    async def _reply_refused(self, raw_msg: str | bytes, exc: fastjson.FrameRefused) -> None:
        """A frame too deep or with too long a number: a format violation with the MessageId read from
        the frame's start (else "-1"), one log line, and the session carries on."""
        cause = exc.details["cause"]
        kind, unique_id = fastjson.frame_head(raw_msg)
        log.warning("%s: refused a frame of %d bytes (%s): %.120r", self.id, len(raw_msg), cause, raw_msg)
        _observe(self, "in", "(unparsable)", _error_code("FormatViolation", self.version))
        if kind in (3, 4):
            return  # never answer a reply, even a broken one
        await self._send_error(unique_id or "-1", "FormatViolation", cause, {"cause": cause})

    async def _route_call(self, msg: Call) -> None:
        if not isinstance(msg.unique_id, str) or not isinstance(msg.action, str) or not isinstance(msg.payload, dict):
            uid = msg.unique_id if isinstance(msg.unique_id, str) else "-1"
            code = "RpcFrameworkError" if self.version is Version.V201 else "FormationViolation"
            if isinstance(msg.unique_id, str) and isinstance(msg.action, str):
                code = "FormationViolation" if self.version is Version.V16 else "FormatViolation"
            await self._send_error(uid, code, "CALL must be [2, \"<id>\", \"<Action>\", {payload}]")
            return
        handlers = self.route_map.get(msg.action)
        if handlers is None or "_on_action" not in handlers:
            # Spec (1.6 OCPP-J table 7, 2.0.1 part 4): NotImplemented = action not known,
            # NotSupported = known but not supported here.
            if msg.action in self.known_actions:
                _observe(self, "in", msg.action, "NotSupported")
                await self._send_error(msg.unique_id, "NotSupported", f"{msg.action} is not supported by a central system")
            else:
                _observe(self, "in", "(unknown)", "NotImplemented")
                await self._send_error(msg.unique_id, "NotImplemented", f"unknown action {msg.action!r}")
            return
        try:
            await self._handle_call(msg)
        except OCPPError as error:
            _observe(self, "in", msg.action, _error_code(error.code, self.version))
            log.info("%s: %s rejected: %s %r", self.id, msg.action, error.code, error.details)
            details = {k: v for k, v in (error.details or {}).items() if k != "ocpp_message"}
            await self._send_error(msg.unique_id, error.code, error.description, details)

    async def _handle_call(self, msg: Call) -> None:
        """The package's ``_handle_call``: validate, call the handler, validate and send its reply, then
        schedule any ``@after`` hook. A payload the schema refuses raises the package's OCPPError."""
        handlers = self.route_map[msg.action]
        validate = not handlers.get("_skip_schema_validation", False)
        if validate:
            self._validator.validate(msg)
        payload = fastjson.to_snake(msg.payload)
        try:
            reply = _invoke(handlers["_on_action"], payload, msg.unique_id)
            if inspect.isawaitable(reply):
                reply = await reply
        except OCPPError as error:
            log.info("%s: %s handler refused: %s %r", self.id, msg.action, error.code, error.details)
            _observe(self, "in", msg.action, _error_code(error.code, self.version))
            await self._send_error(msg.unique_id, error.code, error.description, error.details)
            return
        except Exception:
            log.exception("%s: %s handler failed on %.300r", self.id, msg.action, msg.payload)
            _observe(self, "in", msg.action, "InternalError")
            await self._send_error(msg.unique_id, "InternalError", "An unexpected error occurred.")
            return
        result = msg.create_call_result(fastjson.to_payload(reply))
        if validate:
            try:
                self._validator.validate(result)
            except OCPPError as error:
                # Our reply, not the station's message, is at fault: say so instead of blaming the station.
                log.error("%s: our %s reply fails its schema (%s): %.300r", self.id, msg.action, error.details.get(
                    "cause"), result.payload)
                _observe(self, "in", msg.action, "InternalError")
                await self._send_error(msg.unique_id, "InternalError", "An unexpected error occurred.")
                return
        await self._send(fastjson.call_result_frame(msg.unique_id, result.payload))
        _observe(self, "in", msg.action, "ok")
        other = getattr(self, "_other_message", None)
        if other is not None:
            other(msg.action)
        after = handlers.get("_after_action")
        if after is not None:
            hook = _invoke(after, payload, msg.unique_id)
            if inspect.isawaitable(hook):
                asyncio.ensure_future(hook)

    # -- calls the central system makes ----------------------------------------------------------

    async def call(self, payload: Any, suppress: bool = True, unique_id: str | None = None,
                   skip_schema_validation: bool = False) -> Any:
        """The package's ``call()`` (same arguments, lock, timeout and errors) on the fast path."""
        message = Call(unique_id if unique_id is not None else str(self._unique_id_generator()),
                       type(payload).__name__, fastjson.to_payload(payload))
        if not skip_schema_validation:
            self._validator.validate(message)
        async with self._call_lock:
            self._awaited_id = message.unique_id
            try:
                await self._send(fastjson.call_frame(message.unique_id, message.action, message.payload))
                response = await asyncio.wait_for(self._response_queue.get(), self._response_timeout)
            except asyncio.CancelledError:
                _observe(self, "out", message.action, "Cancelled")  # e.g. the caller's own deadline passed
                raise
            except asyncio.TimeoutError:
                _observe(self, "out", message.action, "Timeout")
                raise asyncio.TimeoutError(f"Waited {self._response_timeout}s for response on "
                                           f"{fastjson.call_frame(message.unique_id, message.action, message.payload)}.")
            finally:
                self._awaited_id = None
                while not self._response_queue.empty():  # a reply that raced a timeout or cancellation
                    self._response_queue.get_nowait()
        if response.message_type_id == MessageType.CallError:
            _observe(self, "out", message.action, response.error_code)
            log.warning("%s: %s answered with CALLERROR %r %r", self.id, message.action, response.error_code,
                        response.error_description)
            if suppress:
                return None
            raise response.to_exception()
        if not skip_schema_validation:
            response.action = message.action
            self._validator.validate(response)
        _observe(self, "out", message.action, "ok")
        return getattr(self._call_result, message.action)(**fastjson.to_snake(response.payload))


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        fastjson.dumps(details)
        return details
    except (TypeError, ValueError):
        return {k: str(v) for k, v in details.items()}
