"""The ceiling: a bare ``websockets`` server that answers every CALL with a canned OCPP reply.

It parses each frame (any server must) and sends back a fixed payload for the action, with no
validation, routing or storage: what Python and ``websockets`` alone cost on this machine.
Run: ``python bench/bare_ws.py --port 0`` (prints ``PORT <n>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime, timezone

import websockets
from bare_common import serve_until_sigterm

NOW = datetime.now(timezone.utc).isoformat()
CANNED = {"BootNotification": {"currentTime": NOW, "interval": 300, "status": "Accepted"},
          "Heartbeat": {"currentTime": NOW}}


async def handler(ws) -> None:
    try:
        async for raw in ws:
            msg = json.loads(raw)
            if msg[0] == 2:
                await ws.send(json.dumps([3, msg[1], CANNED.get(msg[2], {})], separators=(",", ":")))
    except websockets.ConnectionClosed:
        pass


async def main(port: int) -> None:
    await serve_until_sigterm(handler, port)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    asyncio.run(main(p.parse_args().port))
