"""The thin asyncio layer that drives a :class:`csms.ocpp.protocol.Protocol` over one websocket.

It owns what needs a loop: reading the socket (and not reading it, to throttle a flood by TCP
back-pressure), awaiting handlers, serialising our CALLs and waiting for their replies until the
protocol's deadline. Every rule about frames lives in the protocol; every rule about what a message
means lives in the handlers (:mod:`csms.ocpp.v16`, :mod:`csms.ocpp.v201`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol as TypingProtocol

from ocpp.exceptions import OCPPError

from csms.ocpp import frames
from csms.ocpp.protocol import (
    CallAnswered, CallFailed, CallReceived, CallRefused, CallTimedOut, Event, Protocol, ReplyDropped,
)
from csms.ocpp.routing import Route, invoke
from csms.runtime.deadlines import Bound, bound

log = logging.getLogger("csms.ocpp.connection")

#: Called as ``observer(station_id, direction, action, outcome)`` for every CALL a connection handles
#: (direction "in": outcome "ok" or the CALLERROR code it answered) or sends ("out": "ok", the CALLERROR
#: code received, "Timeout" or "Cancelled"). Must be quick and must not raise.
MessageObserver = Callable[[str, str, str, str], None]


class Socket(TypingProtocol):
    """What a connection needs of a websocket (:class:`csms.ocpp.transport.WebSocket` has it)."""
    def listen(self, readable: Callable[[], None]) -> None: ...
    def receive_nowait(self) -> str | bytes | None: ...
    async def send(self, message: str) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...


#: Called once when a connection has ended: with the socket's ``ConnectionClosed``, the ``CancelledError`` of a
#: server that stops, or the exception that broke the session.
Ended = Callable[[BaseException], None]


class TokenBucket:
    """Allows ``rate`` messages a second with bursts of ``burst``; :meth:`delay` says how long to wait."""

    __slots__ = ("rate", "burst", "_clock", "_tokens", "_at")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self._tokens, self._at = float(burst), clock()

    def delay(self) -> float:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class Connection:
    """One station's OCPP-J connection: ``handler`` answers its CALLs (methods named by ``routes``), and
    :meth:`call` sends ours, one at a time, returning the reply as the ``ocpp`` package's dataclass from
    ``call_results``."""

    # One per connected station, 10,000 on a large site: no per-instance dict.
    __slots__ = ("id", "socket", "protocol", "timeout", "throttled", "unsolicited_replies", "_handler", "_routes",
                 "_call_results", "_bucket", "_observe", "_on_answered", "_call_lock", "_reply", "_hooks", "_reader",
                 "_ended", "_on")

    def __init__(self, station_id: str, socket: Socket, protocol: Protocol, handler: Any,
                 routes: dict[str, Route], call_results: ModuleType, *, timeout: float, rate: float, burst: int,
                 observe: MessageObserver | None = None, on_answered: Callable[[str], None] | None = None):
        self.id = station_id
        self.socket = socket
        self.protocol = protocol
        self.timeout = timeout
        self.throttled = 0
        self.unsolicited_replies = 0
        self._handler = handler
        self._routes = routes
        self._call_results = call_results
        self._bucket = TokenBucket(rate, burst)
        self._observe = observe or (lambda *_: None)
        self._on_answered = on_answered or (lambda _: None)
        self._call_lock = asyncio.Lock()
        self._reply: asyncio.Future[Event] | None = None
        self._hooks: set[asyncio.Task] | None = None  # after-hooks still running; a set only while there are some
        self._reader: asyncio.Task | None = None  # handles what has come; only while something has
        self._ended: Ended | None = None
        self._on: Bound | None = None  # the loop it runs on and its deadlines, asked for once

    # -- reading -----------------------------------------------------------------------------------

    def start(self, ended: Ended) -> None:
        """Handles the station's frames, in order, from now until the socket closes; then calls ``ended`` once.

        No task waits for a silent station (10,000 of them would hold 10,000 tasks and their coroutines, about
        2 KB each): the socket says when something has come, and a task handles it and what comes meanwhile,
        and ends once the station has nothing more to say."""
        self._ended = ended
        self.socket.listen(self._readable)
        self._readable()  # what came before the session started

    @property
    def reading(self) -> asyncio.Task | None:
        """The task handling the station's frames, while there is one."""
        return self._reader

    def _readable(self) -> None:
        if self._reader is None and self._ended is not None:
            loop, _ = self._on or self._bind()
            self._reader = loop.create_task(self._read(), name=f"ocpp-{self.id}")

    async def _read(self) -> None:
        """Handles frames until none is waiting; at the socket's close, ends the connection."""
        receive_nowait = self.socket.receive_nowait
        debug = log.isEnabledFor(logging.DEBUG)
        try:
            while (raw := receive_nowait()) is not None:
                if debug:
                    log.debug("%s: receive %.500s", self.id, raw)
                await self.receive(raw)
        except BaseException as exc:  # the socket's ConnectionClosed, or what broke the session
            self._end(exc)
            if not isinstance(exc, Exception):
                raise  # cancelled (the server stops), or the interpreter exits
        finally:
            self._reader = None

    def _end(self, exc: BaseException) -> None:
        ended, self._ended = self._ended, None
        for task in self._hooks or ():
            task.cancel()
        if ended is not None:
            ended(exc)

    async def receive(self, raw: str | bytes) -> None:
        """Handles one frame (after the throttle's wait, if the station sends too fast)."""
        wait = self._bucket.delay()
        if wait > 0:
            # Not reading the socket while we wait is the throttle: TCP back-pressure slows the station.
            self.throttled += 1
            if self.throttled == 1:
                log.warning("%s: sending faster than %.0f msg/s, throttled", self.id, self._bucket.rate)
            await asyncio.sleep(wait)
        self.protocol.receive_data(raw)
        events = self.protocol.events_received()
        for event in events:
            if type(event) is not CallReceived:
                self._note(event)  # before any await: a reply reaches its caller in the turn the protocol took it
        await self._flush()
        for event in events:
            if type(event) is CallReceived:
                await self._answer(event)

    async def _flush(self) -> None:
        for frame in self.protocol.data_to_send():
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s: send %.500s", self.id, frame)
            await self.socket.send(frame)

    def _note(self, event: Event) -> None:
        if isinstance(event, CallRefused):
            self._observe(self.id, "in", event.action, event.code)
            if event.action == "(unparsable)":
                log.warning("%s: unparsable frame (%s)%s", self.id, event.description,
                            "" if event.answered else ", a reply: not answered")
            else:
                log.info("%s: %s rejected: %s %r", self.id, event.action, event.code, event.details)
        elif isinstance(event, ReplyDropped):
            self.unsolicited_replies += 1
            self._observe(self.id, "in", "(reply)", "Unsolicited")
            if self.unsolicited_replies == 1:
                log.warning("%s: dropped an unsolicited reply (MessageId %.64r answers no call we await); "
                            "further ones are only counted (csms_ocpp_messages_total{action=\"(reply)\","
                            "outcome=\"Unsolicited\"})", self.id, event.unique_id)
        elif self._reply is not None and not self._reply.done():
            self._reply.set_result(event)

    async def _answer(self, call: CallReceived) -> None:
        route = self._routes[call.action]
        payload = frames.to_snake(call.payload)
        try:
            reply = invoke(getattr(self._handler, route.handler), payload, call.unique_id, route.wants_unique_id)
            if inspect.isawaitable(reply):
                reply = await reply
        except OCPPError as error:
            log.info("%s: %s handler refused: %s %r", self.id, call.action, error.code, error.details)
            self._observe(self.id, "in", call.action,
                          self.protocol.send_error(call.unique_id, error.code, error.description, error.details))
            await self._flush()
            return
        except Exception:
            log.exception("%s: %s handler failed on %.300r", self.id, call.action, call.payload)
            self._observe(self.id, "in", call.action,
                          self.protocol.send_error(call.unique_id, "InternalError", "An unexpected error occurred."))
            await self._flush()
            return
        refused = self.protocol.send_result(call, frames.to_payload(reply))
        await self._flush()
        if refused is not None:
            # Our reply, not the station's message, is at fault: say so instead of blaming the station.
            log.error("%s: our %s reply fails its schema (%s): %.300r", self.id, call.action,
                      refused.details.get("cause"), reply)
            self._observe(self.id, "in", call.action, "InternalError")
            return
        self._observe(self.id, "in", call.action, "ok")
        self._on_answered(call.action)
        if route.after is not None:
            hook = getattr(self._handler, route.after)(**payload)
            if inspect.isawaitable(hook):
                task = asyncio.ensure_future(hook)
                if self._hooks is None:
                    self._hooks = set()
                self._hooks.add(task)
                task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task) -> None:
        if self._hooks is not None:
            self._hooks.discard(task)
            if not self._hooks:
                self._hooks = None

    # -- calls the central system makes ------------------------------------------------------------

    async def call(self, payload: Any, skip_schema_validation: bool = False, timeout: float | None = None) -> Any:
        """Sends ``payload`` (a ``call`` dataclass of the ``ocpp`` package, or a :class:`frames.Outbound`) and
        returns the reply dataclass.

        ``timeout`` (default: the connection's) covers the wait for an earlier call of ours to end as well
        as the wait for the reply. Raises the ``OCPPError`` of a CALLERROR or of a payload (ours or the
        reply) its schema refuses, and ``TimeoutError`` when no reply comes in time."""
        if type(payload) is frames.Outbound:
            action, body, check = payload.action, payload.body, payload.checked
        else:
            action, body, check = type(payload).__name__, frames.to_payload(payload), True
        loop, timers = self._on or self._bind()
        timeout = self.timeout if timeout is None else timeout
        deadline = loop.time() + timeout
        if self._call_lock.locked():
            try:
                async with asyncio.timeout_at(deadline):
                    await self._call_lock.acquire()
            except TimeoutError:
                self._observe(self.id, "out", action, "Timeout")
                raise TimeoutError(f"waited {timeout} s for the connection's previous call to end") from None
        else:
            await self._call_lock.acquire()  # free: taken without suspending
        try:
            now = loop.time()
            unique_id = self.protocol.send_call(action, body, now, deadline - now,
                                                validate=not skip_schema_validation, check=check)
            self._reply = reply = loop.create_future()
            # A deadline per call on the loop's shared timer (csms.runtime.deadlines), not an asyncio.timeout
            # context around the wait. At the deadline the protocol gives the call up at once: a reply read
            # later, even in the same turn of the loop, answers no call (dropped, counted), and the caller gets
            # TimeoutError, never CancelledError.
            timer = timers.at(deadline, self._expire, unique_id, reply)
            try:
                await self._flush()  # the reply may be handled while this waits: the deadline is not read back
                event = await reply
            except asyncio.CancelledError:
                self._forget(unique_id)
                self._observe(self.id, "out", action, "Cancelled")  # e.g. the caller's own deadline passed
                raise
            except BaseException:
                self._forget(unique_id)  # e.g. the socket closed while the frame was being sent
                raise
            finally:
                timers.cancel(timer)
                self._reply = None
        finally:
            self._call_lock.release()
        if type(event) is CallTimedOut:
            self._observe(self.id, "out", action, "Timeout")
            raise TimeoutError(f"waited {timeout} s for the reply to {action}")
        if isinstance(event, CallFailed):
            self._observe(self.id, "out", action, event.error.code)
            log.warning("%s: %s answered with %s %r", self.id, action, event.error.code, event.error.description)
            raise event.error
        assert isinstance(event, CallAnswered)
        self._observe(self.id, "out", action, "ok")
        return getattr(self._call_results, action)(**frames.to_snake(event.payload))

    def _bind(self) -> Bound:
        self._on = on = bound()
        return on

    def _expire(self, unique_id: str, reply: asyncio.Future[Event]) -> None:
        """The call's deadline: unless its reply came first, the protocol gives it up and the caller hears so."""
        pending = self.protocol.pending
        if reply.done() or pending is None or pending.unique_id != unique_id:
            return
        self.protocol.expire(pending.deadline)
        for event in self.protocol.events_received():  # the CallTimedOut just made: this is its handling
            if type(event) is CallTimedOut and event.unique_id == unique_id:
                reply.set_result(event)

    def _forget(self, unique_id: str) -> None:
        """Forgets our CALL in the protocol if it is still outstanding (its caller gave up): a late reply is then
        dropped as unsolicited."""
        pending = self.protocol.pending
        if pending is not None and pending.unique_id == unique_id:
            self.protocol.abandon()
