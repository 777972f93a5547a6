"""What the bare comparison servers share: serve on 127.0.0.1, print the port, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from websockets.asyncio.server import serve


async def serve_until_sigterm(handler, port: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with serve(handler, "127.0.0.1", port, subprotocols=["ocpp2.0.1", "ocpp1.6"], max_queue=16,
                     ping_interval=30) as server:
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()


async def until_sigterm(server: asyncio.AbstractServer) -> None:
    """For the bare servers built on other libraries: prints the port, waits for SIGTERM, closes the server."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()
