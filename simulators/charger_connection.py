"""A charger's connection to the central system: connect, boot, report, heartbeat, drain the outbox,
and on any loss reconnect with jittered exponential backoff.

Mixed into :class:`~simulators.charger.Charger`; the OCPP face for the configured version comes from
:meth:`ConnectionRunner.face_for`, which the version-picking subclass supplies, so this module never
imports a version.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from abc import abstractmethod
from typing import Any

import websockets
from websockets.asyncio.client import connect

from csms.runtime.aio import cancel_and_wait
from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.connector import Connector
from simulators.face import Face
from simulators.outbox import Outbox, Outgoing

log = logging.getLogger(__name__)

#: Seconds between cancellations of a task that swallowed one (asyncio.wait_for on 3.11 can).
CANCEL_GRACE = 0.5


class ConnectionRunner:
    """The connection loop of a charger and what controls it (the state lives on the charger: see
    ``Charger.__init__``, which also starts and stops this loop)."""

    id: str
    config: SimChargerConfig
    clock: SimClock
    connectors: dict[int, Connector]
    password: str | None
    heartbeat_interval: float
    connected: bool
    boot_status: str | None
    url: str | None
    _outbox: Outbox
    _allowed_online: asyncio.Event
    _connected_changed: asyncio.Event
    _proto: Face | None
    _ws: Any
    _tasks: list[asyncio.Task]

    @abstractmethod
    def face_for(self, ws: Any) -> Face:
        """The OCPP face that speaks the configured version on ``ws``."""

    def disconnect(self) -> None:
        """Closes the connection and stays offline until :meth:`reconnect` (for tests and scenarios)."""
        self._allowed_online.clear()
        self.drop_connection()

    def reconnect(self) -> None:
        self._allowed_online.set()

    async def power_cycle(self, offline_for: float) -> None:
        """Closes the connection, stays offline ``offline_for`` clock seconds, then connects and boots again
        (a reboot after Reset)."""
        self._allowed_online.clear()
        if self._ws is not None:
            await self._ws.close()
        await self.clock.sleep(offline_for)
        self._allowed_online.set()

    def drop_connection(self) -> None:
        """Closes the connection now; the connection loop reconnects with its backoff."""
        if self._ws is not None:
            closing = asyncio.get_running_loop().create_task(self._ws.close(), name=f"{self.id}-close")
            self._tasks = [t for t in self._tasks if not t.done()] + [closing]  # owned: stop() awaits it

    async def wait_connected(self, connected: bool = True, timeout: float = 5.0) -> None:
        """Waits until the charger is (or is no longer) connected and booted."""
        async with asyncio.timeout(timeout):
            while self.connected != connected:
                await self._connected_changed.wait()

    def _set_connected(self, value: bool) -> None:
        if self.connected != value:
            self.connected = value
            self._connected_changed.set()
            self._connected_changed = asyncio.Event()

    def queue(self, item: Outgoing) -> None:
        """Queues a message for the central system; offline, only transaction messages are kept."""
        if not self.connected and not item.keep:
            return
        self._outbox.put(item)

    def _auth_header(self) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{self.id}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _connection(self) -> None:
        attempt = 0
        while True:
            await self._allowed_online.wait()
            try:
                async with connect(self.url, subprotocols=[self.config.version],
                                   additional_headers=self._auth_header(), open_timeout=10,
                                   close_timeout=2) as ws:
                    attempt = 0
                    await self._session_on(ws)
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                log.info("%s: connection to %s failed or closed: %s", self.id, self.url, exc)
            except Exception:
                log.exception("%s: unexpected error on the connection to %s; reconnecting", self.id, self.url)
            finally:
                self._ws = self._proto = None
                self._set_connected(False)
            attempt += 1
            delay = min(self.config.backoff_max, self.config.backoff_min * 2 ** min(attempt - 1, 10))
            await asyncio.sleep(delay * (0.5 + self.clock.rng.random() / 2))

    async def _session_on(self, ws: Any) -> None:
        proto = self.face_for(ws)
        self._ws, self._proto = ws, proto
        tasks = [asyncio.create_task(proto.start(), name=f"{self.id}-recv"),
                 asyncio.create_task(self._online(proto), name=f"{self.id}-online")]
        if self.config.misbehaviour.drop_every:
            tasks.append(asyncio.create_task(self._dropper(self.config.misbehaviour.drop_every)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if not t.cancelled() and t.exception() is not None]  # each one retrieved
            if failed:
                failed[0].result()  # re-raises ConnectionClosed and friends for the caller to log
        finally:
            await cancel_and_wait(tasks, grace=CANCEL_GRACE)
            self._retrieve(tasks)

    def _retrieve(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Stopped while waiting (the simulator shuts down as the central system closes the connection): the
        receiving task may have ended first with the close. That is expected and retrieved here; anything else
        is logged, not left for asyncio to report as "never retrieved"."""
        for t in tasks:
            if t.cancelled() or t.exception() is None:
                continue
            if not isinstance(t.exception(), websockets.ConnectionClosed):
                log.warning("%s: %s failed: %r", self.id, t.get_name(), t.exception())

    async def _dropper(self, every: float) -> None:
        await self.clock.sleep(every)
        log.info("%s: dropping the connection (misbehaviour drop_every=%s)", self.id, every)
        await self._ws.close()

    async def _online(self, proto: Face) -> None:
        """Boot until accepted, report every connector, then heartbeat and drain the outbox."""
        if self.config.misbehaviour.boot_delay > 0:
            await self.clock.sleep(self.config.misbehaviour.boot_delay)
        while True:
            status, interval = await proto.send_boot()
            self.boot_status = status
            if interval:
                self.heartbeat_interval = interval
            if status == "Accepted":
                break
            await self.clock.sleep(interval or 10)
        self._set_connected(True)
        # Non-transaction messages queued while the loop was offline are stale; report the present instead.
        self._outbox.drop_stale()
        for conn in self.connectors.values():
            conn.reported_status = ""
            await proto.send_status(conn)
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            await self._outbox.drain(proto)
        finally:
            await cancel_and_wait([heartbeat], grace=CANCEL_GRACE)

    async def _heartbeat(self) -> None:
        while True:
            await self.clock.sleep(self.heartbeat_interval)
            self.queue(Outgoing("heartbeat", lambda p: p.send_heartbeat()))
