"""The same ceiling as ``bare_ws.py`` on ``wsproto`` (h11's sans-I/O websocket sibling) under a plain asyncio
protocol, instead of ``websockets``.

It answers every CALL with the same canned OCPP reply. Unlike picows' listener factory, the handshake here is
ours: the ``Request`` event arrives with the asyncio transport at hand, so the peer address (the per-address
back-off) and the TLS peer certificate (security profile 3) are there before the upgrade is answered.
``wsproto`` is not a dependency of the central system: ``pip install wsproto`` to run it
(``bench_throughput.py --only wsproto`` and ``bench_scale.py --only wsproto`` skip it when it is missing).
Run: ``python bench/bare_wsproto.py --port 0`` (prints ``PORT <n>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bare_common import until_sigterm
from bare_ws import CANNED
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, Ping, Request, TextMessage

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")


class Station(asyncio.Protocol):
    __slots__ = ("ws", "transport", "parts")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.ws = WSConnection(ConnectionType.SERVER)
        self.parts: list[str] = []

    def data_received(self, data: bytes) -> None:
        ws = self.ws
        ws.receive_data(data)
        out = []
        for event in ws.events():
            if isinstance(event, Request):
                chosen = next((p for p in SUBPROTOCOLS if p in event.subprotocols), None)
                out.append(ws.send(AcceptConnection(subprotocol=chosen)))
            elif isinstance(event, TextMessage):
                self.parts.append(event.data)
                if event.message_finished:
                    msg = json.loads("".join(self.parts))
                    self.parts.clear()
                    if msg[0] == 2:
                        reply = json.dumps([3, msg[1], CANNED.get(msg[2], {})], separators=(",", ":"))
                        out.append(ws.send(Message(data=reply)))
            elif isinstance(event, Ping):
                out.append(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                out.append(ws.send(event.response()))
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.transport.write(b"".join(out))


async def main(port: int) -> None:
    await until_sigterm(await asyncio.get_running_loop().create_server(Station, "127.0.0.1", port))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    asyncio.run(main(p.parse_args().port))
