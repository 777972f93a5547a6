"""A TCP proxy on 127.0.0.1 that a test can freeze: a server that hangs without closing anything.

Stopping a server closes its connections, so the client learns at once; a hung one (a frozen VM, a network
partition without resets) just stops answering. ``freeze()`` holds every byte in both directions and leaves new
connections accepted but unanswered; ``thaw()`` lets bytes through again (held ones are dropped, as a
partition would lose them, and their connections closed).
"""

from __future__ import annotations

import asyncio
import contextlib


class FreezableProxy:
    """``async with FreezableProxy(port) as proxy:`` forwards ``proxy.port`` to ``target_port``."""

    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.host = host
        self.target_port = target_port
        self.port = 0
        self.frozen = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FreezableProxy:
        self._server = await asyncio.start_server(self._client, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self._drop_all()
        self.frozen = False

    def _drop_all(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        self._writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                while self.frozen:
                    await asyncio.sleep(0.01)
                if dst.transport.is_closing():
                    return
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
