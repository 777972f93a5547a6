"""Helpers to run the central system in-process and talk to it as raw OCPP-J or as library clients."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import ssl
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import connect

from csms.config import SiteConfig, parse_config
from csms.runtime.app import CentralSystemApp

PASSWORDS = {"CP0001": "0123456789abcdef", "CP0002": "fedcba9876543210", "CP0003": "a1b2c3d4e5f60718"}


def site_config(tmp_path: Path, *, profile: int = 1, tls: dict | None = None, **server: Any) -> SiteConfig:
    data = {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": profile, **(tls or {}), **server},
        "storage": {"database": str(tmp_path / "csms.sqlite")},
        "organisations": [{"id": "org", "name": "Org"}, {"id": "strict", "name": "Strict", "authorization": "list"}],
        "id_tokens": [{"organisation": "strict", "token": "GOOD"},
                      {"organisation": "strict", "token": "OLD", "expiry": "2020-01-01T00:00:00Z"},
                      {"organisation": "strict", "token": "LOST", "status": "Blocked"},
                      {"organisation": "strict", "token": "KID", "parent": "FAMILY"}],
        "chargers": [
            {"id": "CP0001", "password": PASSWORDS["CP0001"], "organisation": "org"},
            {"id": "CP0002", "password": PASSWORDS["CP0002"], "organisation": "org"},
            {"id": "CP0003", "password": PASSWORDS["CP0003"], "organisation": "strict"},
        ],
    }
    return parse_config(data, "test.toml")


def basic_auth(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextlib.asynccontextmanager
async def raw_station(app: CentralSystemApp, station_id: str = "CP0001", *, subprotocol: str = "ocpp1.6",
                      password: str | None = None, ssl_ctx: ssl.SSLContext | None = None, **kw: Any):
    """A bare websocket to the CSMS; send frames with ``send_call``/``ws.send``."""
    scheme = "wss" if ssl_ctx else "ws"
    headers = basic_auth(station_id, password if password is not None else PASSWORDS.get(station_id, ""))
    async with connect(f"{scheme}://127.0.0.1:{app.port}/ocpp/{station_id}", subprotocols=[subprotocol],
                       additional_headers=headers, ssl=ssl_ctx, open_timeout=5, **kw) as ws:
        yield RawStation(ws)


class RawStation:
    _ids = itertools.count(1)

    def __init__(self, ws: websockets.ClientConnection):
        self.ws = ws

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5) -> list:
        uid = f"m{next(self._ids)}"
        await self.ws.send(json.dumps([2, uid, action, payload]))
        return await self.recv_for(uid, timeout)

    async def send_raw(self, text: str | bytes, timeout: float = 5) -> list:
        """Sends a frame and returns the next reply (CALLs the CSMS makes meanwhile are skipped)."""
        import asyncio

        await self.ws.send(text)
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame[0] != 2:
                return frame

    async def recv_for(self, uid: str, timeout: float = 5) -> list:
        import asyncio

        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame[0] != 2 and frame[1] == uid:
                return frame
