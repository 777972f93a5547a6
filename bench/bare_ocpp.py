"""The baseline: a bare central system on the ``ocpp`` package, trivial handlers, no storage.

Schema validation is left as the package ships it (on, in its thread pool), which is what a
central system built on the package gets. Run: ``python bench/bare_ocpp.py --port 0`` (prints
``PORT <n>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from datetime import datetime, timezone

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as CP16, call_result as r16
from ocpp.v201 import ChargePoint as CP201, call_result as r201
from bare_common import serve_until_sigterm


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Bare16(CP16):
    @on("BootNotification")
    def boot(self, **kw):
        return r16.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **kw):
        return r16.Heartbeat(current_time=now())

    @on("MeterValues")
    def meter_values(self, **kw):
        return r16.MeterValues()


class Bare201(CP201):
    @on("BootNotification")
    def boot(self, **kw):
        return r201.BootNotification(current_time=now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def heartbeat(self, **kw):
        return r201.Heartbeat(current_time=now())

    @on("MeterValues")
    def meter_values(self, **kw):
        return r201.MeterValues()


async def handler(ws) -> None:
    cls = {"ocpp1.6": Bare16, "ocpp2.0.1": Bare201}[ws.subprotocol]
    cp = cls(ws.request.path.rsplit("/", 1)[-1], ws)
    try:
        await cp.start()
    except websockets.ConnectionClosed:
        pass


async def main(port: int) -> None:
    await serve_until_sigterm(handler, port)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    asyncio.run(main(p.parse_args().port))
