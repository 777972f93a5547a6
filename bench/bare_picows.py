"""The same ceiling as ``bare_ws.py`` on ``picows`` (a Cython websocket library) instead of ``websockets``.

It answers every CALL with the same canned OCPP reply, so the difference between the two is what the websocket
library costs. ``picows`` is not a dependency of the central system: ``pip install picows`` to run it
(``bench_throughput.py --only picows`` skips it when it is missing).
Run: ``python bench/bare_picows.py --port 0`` (prints ``PORT <n>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bare_common import until_sigterm
from bare_ws import CANNED
from picows import WSListener, WSMsgType, WSTransport, WSUpgradeRequest, WSUpgradeResponse
from picows import WSUpgradeResponseWithListener, ws_create_server

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")


class Station(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            msg = json.loads(frame.get_payload_as_bytes())
            if msg[0] == 2:
                reply = json.dumps([3, msg[1], CANNED.get(msg[2], {})], separators=(",", ":"))
                transport.send(WSMsgType.TEXT, reply.encode())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


def accept(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
    offered = [p.strip() for p in (request.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
    chosen = next((p for p in SUBPROTOCOLS if p in offered), None)
    headers = {"Sec-WebSocket-Protocol": chosen} if chosen else None
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_101_response(extra_headers=headers), Station())


async def main(port: int) -> None:
    await until_sigterm(await ws_create_server(accept, "127.0.0.1", port, enable_auto_pong=True))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    asyncio.run(main(p.parse_args().port))
