"""What every station session shares, whatever its OCPP version.

The ``ocpp`` package answers a few inputs off-spec (nothing at all for malformed JSON, the reverse
of the spec's NotImplemented/NotSupported, ``FormatViolation`` on 1.6 where the spec says
``FormationViolation``). :class:`SessionMixin` routes frames itself so that every bad input gets the
CALLERROR the spec names and the session carries on. It also throttles a station that floods.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallError, MessageType, unpack

from csms.state import Version

log = logging.getLogger("csms.session")

#: Called as ``observer(session, direction, action, outcome)`` for every CALL a session handles
#: (direction "in": outcome "ok" or the CALLERROR code sent) or sends ("out": outcome "ok", the
#: CALLERROR code received, "Timeout" or "Cancelled"). Observers must be quick and must not raise;
#: the operator view counts OCPP messages with this.
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


class SessionMixin:
    """Mixed into the ``ocpp`` package's ChargePoint classes (before them in the MRO)."""

    version: Version
    known_actions: frozenset[str]  # every action name the version defines

    def setup_session(self, rate: float, burst: int) -> None:
        self._bucket = TokenBucket(rate, burst)
        self.throttled = 0
        self._throttle_logged = False

    async def _send_error(self, unique_id: str, code: str, description: str, details: dict | None = None) -> None:
        frame = CallError(unique_id, _error_code(code, self.version), description, details or {})
        await self._send(frame.to_json())

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
            msg = unpack(raw_msg)
        except OCPPError as exc:
            await self._reply_unparsable(raw_msg, exc)
            return
        if msg.message_type_id == MessageType.Call:
            await self._route_call(msg)
        elif msg.message_type_id in (MessageType.CallResult, MessageType.CallError):
            self._response_queue.put_nowait(msg)

    async def _reply_unparsable(self, raw_msg: str | bytes, exc: OCPPError) -> None:
        """A frame we cannot read as OCPP-J: answer with the spec's error, messageId "-1" when unreadable."""
        unique_id = "-1"
        try:
            frame = json.loads(raw_msg)
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

    async def _route_call(self, msg: Call) -> None:
        if not isinstance(msg.unique_id, str) or not isinstance(msg.action, str) or not isinstance(msg.payload, dict):
            uid = msg.unique_id if isinstance(msg.unique_id, str) else "-1"
            code = "RpcFrameworkError" if self.version is Version.V201 else "FormationViolation"
            if isinstance(msg.unique_id, str) and isinstance(msg.action, str):
                code = "FormationViolation" if self.version is Version.V16 else "FormatViolation"
            await self._send_error(uid, code, "CALL must be [2, \"<id>\", \"<Action>\", {payload}]")
            return
        if msg.action not in self.route_map or "_on_action" not in self.route_map[msg.action]:
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
            log.info("%s: %s rejected: %s %s", self.id, msg.action, error.code, error.details)
            details = {k: v for k, v in (error.details or {}).items() if k != "ocpp_message"}
            await self._send_error(msg.unique_id, error.code, error.description, _jsonable(details))
        else:
            _observe(self, "in", msg.action, "ok")

    async def call(self, payload: Any, *args: Any, **kwargs: Any) -> Any:
        """The ``ocpp`` package's call, reported to :data:`MESSAGE_OBSERVERS` with its outcome."""
        if not MESSAGE_OBSERVERS:
            return await super().call(payload, *args, **kwargs)
        action, outcome = type(payload).__name__, "ok"
        try:
            reply = await super().call(payload, *args, **kwargs)
            if reply is None:
                outcome = "CallError"  # suppress=True turns a CALLERROR into None
            return reply
        except OCPPError as error:
            outcome = error.code
            raise
        except asyncio.TimeoutError:
            outcome = "Timeout"
            raise
        except asyncio.CancelledError:
            outcome = "Cancelled"  # e.g. the caller's own deadline ran out first
            raise
        except Exception:
            outcome = "Error"
            raise
        finally:
            _observe(self, "out", action, outcome)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    try:
        json.dumps(details)
        return details
    except (TypeError, ValueError):
        return {k: str(v) for k, v in details.items()}
