"""A tiny central system for testing the simulated chargers: real websockets on 127.0.0.1, the ``ocpp``
package's server-side classes, Basic auth checked per station, every message recorded."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CP16, call_result as r16
from ocpp.v201 import ChargePoint as CP201, call_result as r201
from websockets.asyncio.server import serve
from websockets.headers import parse_authorization_basic


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class _Recorder:
    stub: StubCsms

    def record(self, action: str, payload: dict) -> None:
        self.stub.record(self.id, action, payload)


class Station16(_Recorder, CP16):
    @on("BootNotification")
    def boot(self, **kw: Any):
        self.record("BootNotification", kw)
        return r16.BootNotification(current_time=_now(), interval=self.stub.heartbeat, status=self.stub.boot_status)

    @on("Heartbeat")
    def heartbeat(self, **kw: Any):
        self.record("Heartbeat", kw)
        return r16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def status(self, **kw: Any):
        self.record("StatusNotification", kw)
        return r16.StatusNotification()

    @on("Authorize")
    def authorize(self, id_tag: str, **kw: Any):
        self.record("Authorize", {"id_tag": id_tag})
        return r16.Authorize(id_tag_info={"status": "Invalid" if id_tag in self.stub.reject_tags else "Accepted"})

    @on("StartTransaction")
    def start_tx(self, **kw: Any):
        tx = next(self.stub.tx_ids)
        self.record("StartTransaction", {**kw, "assigned": tx})
        return r16.StartTransaction(transaction_id=tx, id_tag_info={"status": "Accepted"})

    @on("StopTransaction")
    def stop_tx(self, **kw: Any):
        self.record("StopTransaction", kw)
        return r16.StopTransaction()

    @on("MeterValues")
    def meter_values(self, **kw: Any):
        self.record("MeterValues", kw)
        return r16.MeterValues()


class Station201(_Recorder, CP201):
    @on("BootNotification")
    def boot(self, **kw: Any):
        self.record("BootNotification", kw)
        return r201.BootNotification(current_time=_now(), interval=self.stub.heartbeat, status=self.stub.boot_status)

    @on("Heartbeat")
    def heartbeat(self, **kw: Any):
        self.record("Heartbeat", kw)
        return r201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def status(self, **kw: Any):
        self.record("StatusNotification", kw)
        return r201.StatusNotification()

    @on("Authorize")
    def authorize(self, id_token: dict, **kw: Any):
        self.record("Authorize", {"id_token": id_token})
        ok = id_token["id_token"] not in self.stub.reject_tags
        return r201.Authorize(id_token_info={"status": "Accepted" if ok else "Invalid"})

    @on("TransactionEvent")
    def transaction_event(self, **kw: Any):
        self.record("TransactionEvent", kw)
        if "id_token" in kw:
            return r201.TransactionEvent(id_token_info={"status": "Accepted"})
        return r201.TransactionEvent()

    @on("MeterValues")
    def meter_values(self, **kw: Any):
        self.record("MeterValues", kw)
        return r201.MeterValues()


class StubCsms:
    """``async with StubCsms(passwords={"CP1": "..."}) as csms:`` then ``csms.url``, ``csms.station(id)``."""

    def __init__(self, passwords: dict[str, str] | None = None, heartbeat: int = 60,
                 boot_status: str = "Accepted") -> None:
        self.passwords = passwords or {}
        self.heartbeat = heartbeat
        self.boot_status = boot_status
        self.reject_tags: set[str] = set()
        self.tx_ids = itertools.count(1001)
        self.log: list[tuple[str, str, dict]] = []
        self.stations: dict[str, CP16 | CP201] = {}
        self.refused: list[tuple[str, int]] = []
        self._changed = asyncio.Condition()
        self._server: Any = None
        self.url = ""

    async def __aenter__(self) -> StubCsms:
        self._server = await serve(self._handler, "127.0.0.1", 0, subprotocols=["ocpp2.0.1", "ocpp1.6"],
                                   process_request=self._check_auth)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    def _check_auth(self, connection: Any, request: Any) -> Any:
        station = unquote(urlsplit(request.path).path.rsplit("/", 1)[-1])
        expected = self.passwords.get(station)
        if expected is None:
            return None
        header = request.headers.get("Authorization")
        try:
            user, password = parse_authorization_basic(header) if header else (None, None)
        except websockets.InvalidHeader:
            user = password = None
        if (user, password) != (station, expected):
            self.refused.append((station, 401))
            return connection.respond(HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        return None

    async def _handler(self, ws: Any) -> None:
        station = unquote(urlsplit(ws.request.path).path.rsplit("/", 1)[-1])
        cls = Station201 if ws.subprotocol == "ocpp2.0.1" else Station16
        cp = cls(station, ws, response_timeout=5)
        cp.stub = self
        self.stations[station] = cp
        with contextlib.suppress(websockets.ConnectionClosed):
            await cp.start()

    def record(self, station: str, action: str, payload: dict) -> None:
        self.log.append((station, action, payload))

        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def messages(self, station: str, action: str) -> list[dict]:
        return [p for s, a, p in self.log if s == station and a == action]

    async def wait_for(self, station: str, action: str, where: Callable[[dict], bool] = lambda p: True,
                       timeout: float = 3.0, count: int = 1) -> dict:
        """The ``count``-th message ``action`` from ``station`` matching ``where`` (waiting for it)."""
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    found = [p for p in self.messages(station, action) if where(p)]
                    if len(found) >= count:
                        return found[count - 1]
                    await self._changed.wait()

    async def call(self, station: str, payload: Any, **kw: Any) -> Any:
        return await self.stations[station].call(payload, **kw)
