"""Websockets for the OCPP server: wsproto (h11's sans-I/O websocket sibling) under a plain asyncio protocol.

Why not the ``websockets`` library's server, which the central system used before: at 10,000 stations it held
221 MB before the central system held anything, and its keepalive pinged every connection opened in the same
seconds at the same moment, which made the tail of every reply (``bench/RESULTS.md``, issue 14). Here a station
costs its wsproto state and one protocol object, and a keepalive ping goes only to a connection that has been
silent for a whole interval, at a moment spread by when it last spoke.

The handshake stays the server's: :class:`UpgradeRequest` carries the path, the headers, the peer's address and
its TLS certificate, and the server's ``accept`` answers it with a :class:`Refusal` (an HTTP status) or a
subprotocol, before anything is upgraded. What a session needs of a connection is small (:meth:`WebSocket.recv`,
:meth:`WebSocket.send`, :meth:`WebSocket.close`); :mod:`csms.ocpp.connection` drives OCPP-J over it, and :mod:`csms.ocpp.listener`
accepts the connections.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast

from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, RejectConnection, RejectData, Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

from csms.ocpp.deflate import BoundedDeflate
from csms.ocpp.socket_writes import WriteBatch, text_frame

log = logging.getLogger("csms.ocpp.transport")


class ConnectionClosed(ConnectionError):
    """The websocket is closed: ``code`` and ``reason`` are the first close frame, the peer's or ours (``code``
    None: none was sent either way, the socket just went)."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(f"websocket closed ({code if code is not None else 'no close frame'}{': ' if reason else ''}"
                         f"{reason})")
        self.code, self.reason = code, reason


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """What a station asked for, with what the server knows of it before answering."""
    path: str
    headers: dict[str, str]           # lower-case names; a repeated header keeps its last value
    subprotocols: tuple[str, ...]
    remote_address: Any               # the socket's peer name, e.g. ("127.0.0.1", 53312)
    peercert: dict | None = None      # the TLS client certificate, when one was verified


@dataclass(frozen=True, slots=True)
class Refusal:
    """An HTTP answer instead of the upgrade."""
    status: int
    text: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Options:
    subprotocols: tuple[str, ...]      # in the server's order of preference
    max_size: int = 65536              # the largest message taken, in characters (a larger one closes with 1009)
    compression: bool = True           # permessage-deflate, when the station offers it...
    compression_threshold: int = 128   # ...for messages of at least this many bytes (shorter ones gain nothing)
    max_queue: int = 16                # messages received and not yet read before the socket is not read
    open_timeout: float = 10.0
    ping_interval: float = 30.0        # a connection silent this long is pinged...
    ping_timeout: float = 30.0         # ...and closed if nothing comes back this soon
    close_timeout: float = 5.0


#: Answers an upgrade request: a Refusal, or the subprotocol to accept (None: none of the offered).
Accept = Callable[[UpgradeRequest], "Refusal | str | None"]


class Host(Protocol):
    """What a connection needs of its server (:class:`csms.ocpp.listener.WebSocketServer`)."""
    options: Options
    writes: WriteBatch

    def accept(self, request: UpgradeRequest) -> Refusal | str | None: ...
    def opened(self, ws: WebSocket) -> None: ...
    def forget(self, ws: WebSocket) -> None: ...


class WebSocket(asyncio.Protocol):
    """One connection, from the TCP accept to its close.

    A session reads it either with :meth:`recv` or, holding no task while the station is silent, by
    :meth:`listen`ing for messages and taking them with :meth:`receive_nowait`."""

    # One per connected station, 10,000 on a large site: no per-instance dict, and what only some connections
    # ever need (a waiter, a fragmented message's parts, a future for whoever awaits the close) made when needed.
    __slots__ = ("_server", "_options", "_loop", "_ws", "_transport", "_messages", "_waiter", "_listener", "_parts",
                 "_size", "_reading_paused", "_writing_paused", "_drained", "_gone", "_gone_waiter", "_close_code",
                 "_close_reason", "_timer", "_pinged", "_last_received", "_deflate", "_unsent", "path",
                 "subprotocol", "remote_address")

    def __init__(self, server: Host):
        self._server = server
        self._options = server.options
        self._loop = asyncio.get_running_loop()
        #: The handshake and then, once accepted, only the connection it made (the HTTP state is dropped).
        self._ws: WSConnection | Connection = WSConnection(ConnectionType.SERVER)
        self._deflate: BoundedDeflate | None = None  # once permessage-deflate is agreed
        self._transport: asyncio.Transport | None = None
        self._unsent: bytes | None = None  # written this turn of the loop, sent at the start of the next
        self._messages: list[str | bytes] = []  # at most max_queue; a deque would cost 600 bytes more
        self._waiter: asyncio.Future[None] | None = None
        self._listener: Callable[[], None] | None = None
        self._parts: list[str | bytes] | None = None
        self._size = 0
        self._reading_paused = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._gone = False  # the TCP connection is closed
        self._gone_waiter: asyncio.Future[None] | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._timer: asyncio.TimerHandle | None = None
        self._pinged = False
        self._last_received = 0.0
        self.path = ""
        self.subprotocol: str | None = None
        self.remote_address: Any = None

    # -- asyncio's side ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports (``csms serve --uvloop``) have asyncio.Transport's
        # methods without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self.remote_address = transport.get_extra_info("peername")
        self._timer = self._loop.call_later(self._options.open_timeout, self._abort)

    def data_received(self, data: bytes) -> None:
        self._last_received = self._loop.time()
        self._feed(data)

    def eof_received(self) -> bool | None:
        return None  # closes the transport: a station that half-closes is gone

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._gone = True
        self._unsent = None
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self._gone_waiter is not None and not self._gone_waiter.done():
            self._gone_waiter.set_result(None)
        self._server.forget(self)

    # -- what a session uses -------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """The next message; raises :class:`ConnectionClosed` once the connection is closed and read out."""
        while (message := self.receive_nowait()) is None:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return message

    def listen(self, readable: Callable[[], None]) -> None:
        """Calls ``readable()`` whenever a message has come or the connection is closing; :meth:`receive_nowait`
        then reads (instead of a task awaiting :meth:`recv`)."""
        self._listener = readable

    def receive_nowait(self) -> str | bytes | None:
        """The next message, or None while none has come; raises :class:`ConnectionClosed` once the connection
        is closed and read out."""
        if not self._messages:
            if self._gone or self._ws.state is not ConnectionState.OPEN:
                raise ConnectionClosed(self._close_code, self._close_reason)
            return None
        message = self._messages.pop(0)
        if self._reading_paused and len(self._messages) < self._options.max_queue:
            self._reading_paused = False
            if self._transport is not None:
                self._transport.resume_reading()
        return message

    async def send(self, message: str) -> None:
        """Writes one text message; waits only while the station does not read (TCP back-pressure)."""
        if self._ws.state is not ConnectionState.OPEN or self._gone:
            raise ConnectionClosed(self._close_code, self._close_reason)
        self._write(text_frame(message.encode(), self._deflate, self._options.compression_threshold))
        if self._writing_paused:
            self._drained = self._drained if self._drained and not self._drained.done() else self._loop.create_future()
            await self._drained
            if self._gone:
                raise ConnectionClosed(self._close_code, self._close_reason)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Starts the closing handshake (if it has not started) and waits until the connection is gone."""
        if not self._gone:
            if self._ws.state is ConnectionState.OPEN:
                if self._close_code is None:  # what a reader of this connection is told it ended with
                    self._close_code, self._close_reason = code, reason
                self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
                self._arm(self._options.close_timeout, self._abort)
                self._wake()
            elif self._ws.state is ConnectionState.CONNECTING and self._transport is not None:
                self._transport.abort()
        if not self._gone:
            if self._gone_waiter is None:
                self._gone_waiter = self._loop.create_future()
            await asyncio.shield(self._gone_waiter)

    # -- wsproto's side ------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> bool:
        """Hands ``data`` to wsproto and handles what it meant; whether the connection is still usable."""
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                if not self._handle(event):
                    return False
        except RemoteProtocolError as exc:  # a request that is not a websocket upgrade
            hint = exc.event_hint
            if isinstance(hint, RejectConnection) and self._ws.state is ConnectionState.CONNECTING:
                self._write(self._ws.send(hint))
            self._close_transport()
            return False
        return True

    def _handle(self, event: object) -> bool:
        kind = type(event)
        if kind is TextMessage or kind is BytesMessage:
            return self._take(event)  # type: ignore[arg-type]
        if kind is Request:
            return self._answer(event)  # type: ignore[arg-type]
        if kind is Ping:
            self._write(self._ws.send(event.response()))  # type: ignore[attr-defined]
        elif kind is Pong:
            self._pinged = False
        elif kind is CloseConnection:
            self._closing(event)  # type: ignore[arg-type]
            return False
        return True

    def _answer(self, request: Request) -> bool:
        transport = self._transport
        assert transport is not None
        self.path = request.target
        upgrade = UpgradeRequest(
            path=request.target,
            headers={name.decode("latin-1").lower(): value.decode("latin-1") for name, value in request.extra_headers},
            subprotocols=tuple(request.subprotocols),
            remote_address=self.remote_address,
            peercert=transport.get_extra_info("peercert"),
        )
        try:
            answer = self._server.accept(upgrade)
        except Exception:
            log.exception("the handshake of %s failed", self.remote_address)
            answer = Refusal(500, "internal error\n")
        if isinstance(answer, Refusal):
            body = answer.text.encode()
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
            headers += [(name.encode(), value.encode()) for name, value in answer.headers]
            self._write(self._ws.send(RejectConnection(status_code=answer.status, headers=headers, has_body=True)))
            self._write(self._ws.send(RejectData(data=body, body_finished=True)))
            self._close_transport()
            return False
        self.subprotocol = answer
        offered = self._options.compression and any(
            offer.split(";")[0].strip() == BoundedDeflate.name for offer in request.extensions)
        deflate = BoundedDeflate(self._options.max_size) if offered else None
        handshake = self._ws
        assert isinstance(handshake, WSConnection)
        self._write(handshake.send(AcceptConnection(subprotocol=answer, extensions=[deflate] if deflate else [])))
        self._deflate = deflate if deflate is not None and deflate.enabled() else None
        assert handshake.connection is not None
        self._ws = handshake.connection
        self._arm(self._first_ping_delay(), self._keepalive)
        self._server.opened(self)
        return True

    def _take(self, event: TextMessage | BytesMessage) -> bool:
        data = event.data
        self._size += len(data)
        if self._size > self._options.max_size:
            self._fail(CloseReason.MESSAGE_TOO_BIG, f"message over {self._options.max_size} characters")
            return False
        if not event.message_finished:
            if self._parts is None:
                self._parts = []
            self._parts.append(data)
            return True
        if self._parts:
            self._parts.append(data)
            data = "".join(self._parts) if isinstance(data, str) else b"".join(self._parts)  # type: ignore[arg-type]
            self._parts = None
        self._size = 0
        self._messages.append(data)
        if len(self._messages) >= self._options.max_queue and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake()
        return True

    def _closing(self, event: CloseConnection) -> None:
        """A close frame came (or wsproto found the stream broken and says why with one)."""
        if self._close_code is None:
            self._close_code, self._close_reason = event.code, event.reason or ""
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            self._write(self._ws.send(event.response()))
        elif state is ConnectionState.OPEN:  # a framing error found here: tell the station why
            self._write(self._ws.send(CloseConnection(code=event.code, reason=event.reason)))
        self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        log.info("closing the connection of %s: %s", self.remote_address, reason)
        if self._ws.state is ConnectionState.OPEN:
            self._write(self._ws.send(CloseConnection(code=code, reason=reason)))
            self._arm(self._options.close_timeout, self._abort)
            self._wake()
        else:
            self._close_transport()

    # -- keepalive and plumbing ----------------------------------------------------------------------

    def _first_ping_delay(self) -> float:
        # Stations that connected in the same seconds (after a restart, say) would otherwise be pinged together.
        return self._options.ping_interval * random.uniform(0.5, 1.0)

    def _keepalive(self) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            return
        options = self._options
        if self._pinged:
            if self._loop.time() - self._last_received >= options.ping_timeout:
                self._fail(CloseReason.INTERNAL_ERROR, "keepalive ping timeout")
                return
        silent = self._loop.time() - self._last_received
        if silent >= options.ping_interval:
            self._pinged = True
            self._write(self._ws.send(Ping()))
            self._arm(options.ping_timeout, self._keepalive)
        else:
            self._pinged = False
            self._arm(options.ping_interval - silent, self._keepalive)

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)

    def _write(self, data: bytes) -> None:
        """Queues ``data`` for the start of the next turn of the loop (:mod:`csms.ocpp.socket_writes`)."""
        if data and self._transport is not None and not self._transport.is_closing():
            if self._unsent is None:
                self._unsent = data
                self._server.writes.queue(self)
            else:
                self._unsent += data

    def write_out(self) -> None:
        data, self._unsent = self._unsent, None
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._listener is not None:
            self._listener()

    def _close_transport(self) -> None:
        self.write_out()  # what was queued goes first (a close frame, say)
        if self._transport is not None:
            self._transport.close()

    def _abort(self) -> None:
        self._unsent = None
        if self._transport is not None:
            self._transport.abort()
