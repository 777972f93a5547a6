"""A TCP load balancer on 127.0.0.1 for tests: what stands in front of several gateways in a real deployment.

Chargers know one URL. A site with several OCPP gateways puts a TCP balancer (HAProxy, a cloud load balancer,
DNS with health checks) in front of them: each new connection goes to the next backend that accepts it, and a
connection whose backend died is closed, so the charger reconnects and lands on a live one. This is that, in
asyncio, bounded to loopback: each accepted connection tries the backends round-robin from the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools


class TcpBalancer:
    """``async with TcpBalancer([port_a, port_b]) as lb:`` listens on ``lb.port`` until the block ends."""

    def __init__(self, backends: list[int], connect_timeout: float = 2.0):
        self.backends = list(backends)
        self.connect_timeout = connect_timeout
        self.port = 0
        #: Connections handed to each backend port so far (what a test asserts the spread on).
        self.handed: dict[int, int] = {p: 0 for p in self.backends}
        self._next = itertools.count()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> "TcpBalancer":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):  # both ends of every pipe closed: each connection's task ends itself
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            backend = await self._connect()
            if backend is None:
                return
            b_reader, b_writer = backend
            self._writers.add(b_writer)
            pipes = [asyncio.create_task(self._pipe(reader, b_writer)), asyncio.create_task(self._pipe(b_reader, writer))]
            try:
                await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)  # either side gone: both go
            finally:
                for pipe in pipes:
                    pipe.cancel()
                await asyncio.gather(*pipes, return_exceptions=True)
                b_writer.close()
                self._writers.discard(b_writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        start = next(self._next)
        for k in range(len(self.backends)):
            port = self.backends[(start + k) % len(self.backends)]
            try:
                pair = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), self.connect_timeout)
            except (OSError, TimeoutError):
                continue
            self.handed[port] += 1
            return pair
        return None

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
