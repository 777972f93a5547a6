"""The listening side of :mod:`csms.ocpp.transport`: accepts TCP (or TLS) connections, lets each answer its
handshake, hands each accepted websocket to the handler (or to ``adopt``), and on stop closes them all and awaits
the handlers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from wsproto.frame_protocol import CloseReason

from csms.ocpp.socket_writes import WriteBatch
from csms.ocpp.transport import Accept, ConnectionClosed, Options, WebSocket
from csms.runtime.aio import cancel_and_wait

log = logging.getLogger("csms.ocpp.transport")

#: Serves one accepted connection, as a task; the connection is closed when it returns.
Handler = Callable[[WebSocket], Awaitable[None]]
#: Takes one accepted connection in the turn it opened, and owns it from then on (nothing is run for it).
Adopt = Callable[[WebSocket], None]


@dataclass
class WebSocketServer:
    """Listens, answers handshakes with ``accept``, and runs ``handler`` once per accepted connection, or gives
    the connection to ``adopt`` when there is one (a server of many mostly silent connections, which should not
    hold a task for each)."""
    accept: Accept
    handler: Handler | None
    options: Options
    adopt: Adopt | None = None
    _server: asyncio.Server | None = None
    _connections: set[WebSocket] = field(default_factory=set)
    _tasks: set[asyncio.Task] = field(default_factory=set)
    writes: WriteBatch = field(init=False)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        self.writes = WriteBatch(loop)
        self._server = await loop.create_server(
            lambda: WebSocket(self), host, port, ssl=ssl_context,
            ssl_handshake_timeout=self.options.open_timeout if ssl_context else None)

    async def stop(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stops listening, closes every connection (the closing handshake, bounded by ``close_timeout``) and
        awaits every handler."""
        if self._server is None:
            return
        self._server.close()
        await asyncio.gather(*(ws.close(code, reason) for ws in list(self._connections)), return_exceptions=True)
        await cancel_and_wait(list(self._tasks))
        await self._server.wait_closed()
        self._server = None

    def opened(self, ws: WebSocket) -> None:
        self._connections.add(ws)
        if self.adopt is not None:
            try:
                self.adopt(ws)
            except Exception:
                log.exception("the handler of %s failed", ws.remote_address)
                self._track(ws.close(CloseReason.INTERNAL_ERROR, "internal error"))
            return
        self._track(self._run(ws))

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, ws: WebSocket) -> None:
        self._connections.discard(ws)

    async def _run(self, ws: WebSocket) -> None:
        assert self.handler is not None
        try:
            await self.handler(ws)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("the handler of %s failed", ws.remote_address)
            await ws.close(CloseReason.INTERNAL_ERROR, "internal error")
        finally:
            await ws.close(1000, "")
