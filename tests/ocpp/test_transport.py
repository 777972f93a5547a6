"""The websocket transport (wsproto under asyncio) against real clients on 127.0.0.1: the handshake's answers,
compression and its size limit, keepalive, back-pressure, and an orderly shutdown.

Tests that are about keepalive set its intervals; every other test runs the transport's defaults."""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
import zlib

import pytest
import websockets
from websockets.asyncio.client import connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request

from csms.ocpp.listener import WebSocketServer
from csms.ocpp.transport import ConnectionClosed, Options, Refusal, UpgradeRequest, WebSocket

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")


class Echo:
    """A server whose handler echoes messages (or does what a test sets), recording what it saw."""

    def __init__(self, options: Options | None = None, handler=None):
        self.requests: list[UpgradeRequest] = []
        self.closed: list[ConnectionClosed] = []
        self.handler_done = asyncio.Event()
        self._handler = handler
        self.server = WebSocketServer(self.accept, self.handle, options or Options(subprotocols=SUBPROTOCOLS))

    def accept(self, request: UpgradeRequest) -> Refusal | str | None:
        self.requests.append(request)
        if request.path == "/refuse":
            return Refusal(429, "later\n", (("Retry-After", "7"),))
        if request.path == "/boom":
            raise RuntimeError("a bug in the handshake")
        return next((p for p in SUBPROTOCOLS if p in request.subprotocols), None)

    async def handle(self, ws: WebSocket) -> None:
        try:
            if self._handler is not None:
                await self._handler(ws)
                return
            while True:
                await ws.send(await ws.recv())
        except ConnectionClosed as exc:
            self.closed.append(exc)
            raise
        finally:
            self.handler_done.set()

    async def __aenter__(self) -> Echo:
        await self.server.start("127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop()

    def url(self, path: str = "/CP1") -> str:
        return f"ws://127.0.0.1:{self.server.port}{path}"


async def raw_client(port: int, path: str = "/CP1"):
    """A wsproto client over plain streams, for what ``websockets`` would not do (stay silent, send garbage)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    ws = WSConnection(ConnectionType.CLIENT)
    writer.write(ws.send(Request(host="127.0.0.1", target=path, subprotocols=["ocpp1.6"])))
    while True:
        ws.receive_data(await asyncio.wait_for(reader.read(65536), 5))
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            return reader, writer, ws


async def test_echo_with_subprotocol_and_request_details():
    async with Echo() as srv:
        async with connect(srv.url("/CP%201?x=1"), subprotocols=["ocpp1.6"],
                           additional_headers={"Authorization": "Basic Q1A6eA=="}) as ws:
            assert ws.subprotocol == "ocpp1.6"
            await ws.send('[2,"1","Heartbeat",{}]')
            assert await ws.recv() == '[2,"1","Heartbeat",{}]'
        request = srv.requests[0]
        assert request.path == "/CP%201?x=1"
        assert request.headers["authorization"] == "Basic Q1A6eA=="
        assert request.subprotocols == ("ocpp1.6",)
        assert request.remote_address[0] == "127.0.0.1"


async def test_refusal_is_an_http_answer_with_its_headers():
    async with Echo() as srv:
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(srv.url("/refuse"), subprotocols=["ocpp1.6"]):
                pass
        assert info.value.response.status_code == 429
        assert info.value.response.headers["Retry-After"] == "7"
        assert info.value.response.body == b"later\n"
        with pytest.raises(websockets.InvalidStatus) as info:  # a bug in accept: 500, the server lives on
            async with connect(srv.url("/boom"), subprotocols=["ocpp1.6"]):
                pass
        assert info.value.response.status_code == 500
        async with connect(srv.url(), subprotocols=["ocpp1.6"]) as ws:
            await ws.send("still here")
            assert await ws.recv() == "still here"


async def test_plain_http_request_gets_400_and_a_closed_socket():
    async with Echo() as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(b"GET /CP1 HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 400")
        writer.close()


async def test_compression_round_trip_and_deflate_bomb_closed_with_1009():
    options = Options(subprotocols=SUBPROTOCOLS)  # the defaults: compression on, 64 KiB messages
    async with Echo(options) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"], compression="deflate",
                           max_size=None) as ws:
            assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
            text = "[2,\"1\",\"DataTransfer\",{\"data\":\"" + "x" * 50_000 + "\"}]"
            await ws.send(text)
            assert await ws.recv() == text
            # 64 MiB of spaces deflate to ~64 KiB: the server must refuse it without inflating it whole.
            await ws.send(" " * (64 * 1024 * 1024))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1009


async def deflate_client(port: int, path: str = "/CP1"):
    """A station written by hand, with permessage-deflate agreed: it sends frames compressed or not, as it
    chooses (RFC 7692 lets either side send any message uncompressed), and reads the server's with their RSV1."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: ocpp1.6\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b" 101 " in head and b"permessage-deflate" in head
    return reader, writer


def client_frame(text: str, compressed: bool) -> bytes:
    """A client's text frame, masked with the all-zero key, its payload deflated without context if asked."""
    data = text.encode()
    if compressed:
        deflate = zlib.compressobj(wbits=-15)
        data = (deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH))[:-4]
    first, size = (0xC1 if compressed else 0x81), len(data)
    if size < 126:
        head = bytes([first, 0x80 | size])
    else:
        head = bytes([first, 0x80 | (126 if size < 65536 else 127)]) + size.to_bytes(2 if size < 65536 else 8, "big")
    return head + b"\0\0\0\0" + data


async def server_frame(reader: asyncio.StreamReader) -> tuple[bool, str]:
    """The next frame from the server: whether it was compressed (RSV1), and its text."""
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    assert second & 0x80 == 0  # a server's frames are not masked
    size = second & 0x7F
    if size >= 126:
        size = int.from_bytes(await reader.readexactly(2 if size == 126 else 8), "big")
    data = await reader.readexactly(size)
    compressed = bool(first & 0x40)
    if compressed:
        data = zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff")
    return compressed, data.decode()


async def test_short_messages_go_out_uncompressed_and_longer_ones_compressed():
    """Deflate makes a message under about 100 bytes no shorter, for as much CPU as a profile: on a compressing
    connection only messages of ``compression_threshold`` bytes or more are compressed. What the station sends
    is inflated or taken as it is, as its RSV1 bit says, message by message."""
    options = Options(subprotocols=SUBPROTOCOLS, max_size=2**20)  # messages past 64 KiB even compressed
    threshold = options.compression_threshold
    noise = "".join(random.Random(1).choices(string.ascii_letters, k=100_000))
    async with Echo(options) as srv:
        reader, writer = await deflate_client(srv.server.port)
        texts = ['[3,"1",{}]', *('[2,"2","DataTransfer",{"data":"' + noise[:size - 34] + '"}]'
                                 for size in (threshold - 1, threshold, 4 * threshold, 100_000))]
        assert [len(t) for t in texts[1:]] == [threshold - 1, threshold, 4 * threshold, 100_000]
        for text in texts:
            for compressed in (True, False):
                writer.write(client_frame(text, compressed))
                assert await server_frame(reader) == (len(text) >= threshold, text)
        writer.close()


async def test_compression_can_be_off():
    async with Echo(Options(subprotocols=SUBPROTOCOLS, compression=False, max_size=2**20)) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"], compression="deflate", max_size=2**20) as ws:
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            for text in ("plain", "p" * 1000, "p" * 100_000):  # the three lengths of a frame's length field
                await ws.send(text)
                assert await ws.recv() == text


async def test_silent_peer_is_pinged_and_closed_when_it_does_not_answer():
    options = Options(subprotocols=SUBPROTOCOLS, ping_interval=0.2, ping_timeout=0.2)
    async with Echo(options) as srv:
        reader, writer, client = await raw_client(srv.server.port)
        seen: list = []
        while not any(isinstance(e, CloseConnection) for e in seen):  # never answers a ping
            client.receive_data(await asyncio.wait_for(reader.read(65536), 3))
            seen += client.events()
        assert isinstance(seen[0], Ping)
        assert seen[-1].code == 1011  # keepalive ping timeout
        await asyncio.wait_for(srv.handler_done.wait(), 3)
        writer.close()


async def test_idle_peer_that_answers_pings_stays():
    options = Options(subprotocols=SUBPROTOCOLS, ping_interval=0.1, ping_timeout=0.2)
    async with Echo(options) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"]) as ws:  # websockets answers pings itself
            await asyncio.sleep(1.0)
            await ws.send("alive")
            assert await ws.recv() == "alive"


async def test_unread_messages_stop_reading_the_socket():
    """A handler that does not read: after ``max_queue`` messages the socket is no longer read, so the
    station's own send buffer fills (TCP back-pressure), instead of the server's memory."""
    release = asyncio.Event()
    got: list[str | bytes] = []

    async def slow(ws: WebSocket) -> None:
        await release.wait()
        while True:
            got.append(await ws.recv())

    async with Echo(handler=slow) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"], compression=None, write_limit=2**16) as ws:
            sent = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    while sent < 5000:
                        await ws.send("y" * 60_000)
                        sent += 1
            assert sent < 5000  # the server stopped reading; the client could not send them all
            release.set()
            while len(got) < sent:
                await asyncio.sleep(0.05)
            assert all(m == "y" * 60_000 for m in got)


async def test_broken_frame_closed_with_1002():
    async with Echo() as srv:
        reader, writer, _ = await raw_client(srv.server.port)
        writer.write(b"\x81\x05hello")  # a client frame without a mask
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[:2] == b"\x88" + bytes([len(data) - 2]) and int.from_bytes(data[2:4], "big") == 1002
        writer.close()


async def test_stop_closes_every_connection_with_1001_and_awaits_handlers():
    async with Echo() as srv:
        url = srv.url()
        clients = [await connect(srv.url(f"/CP{i}"), subprotocols=["ocpp1.6"]) for i in range(5)]
        await srv.server.stop()
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1001
        assert len(srv.closed) == 5
    with pytest.raises(OSError):
        await connect(url, subprotocols=["ocpp1.6"], open_timeout=2)


async def test_handler_failure_closes_with_1011():
    async def broken(ws: WebSocket) -> None:
        await ws.recv()
        raise RuntimeError("bug")

    async with Echo(handler=broken) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"]) as ws:
            await ws.send("x")
            with pytest.raises(websockets.ConnectionClosed) as info:
                await ws.recv()
            assert info.value.rcvd.code == 1011


async def test_handshake_not_finished_in_time_is_dropped():
    async with Echo(Options(subprotocols=SUBPROTOCOLS, open_timeout=0.3)) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.server.port)
        writer.write(b"GET /CP1 HTTP/1.1\r\n")  # and nothing more
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


def test_deflate_bomb_premise():
    """The bomb above is small on the wire: what the slicing in the transport guards against."""
    assert len(zlib.compress(b" " * (64 * 1024 * 1024))) < 100_000


@pytest.mark.parametrize("offer, answer", [
    ("permessage-deflate",
     "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
    ("permessage-deflate; client_max_window_bits",
     "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=15"),
    ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=11",
     "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11"),
    ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
     "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12"),
    ("permessage-deflate; server_max_window_bits=8", None),      # zlib cannot compress with 8 bits
    ("permessage-deflate; server_max_window_bits=16", None),
    ("permessage-deflate; server_max_window_bits=x", None),
    ("permessage-deflate; client_no_context_takeover; client_no_context_takeover", None),
    ("permessage-deflate; mystery=1", None),
])
def test_deflate_negotiation(offer, answer):
    from csms.ocpp.deflate import BoundedDeflate
    ext = BoundedDeflate(65536)
    assert ext.accept(offer) == answer
    assert ext.enabled() is (answer is not None)


async def test_deflate_keeps_no_context_between_messages():
    """Many messages both ways on one compressed connection, as a station's day goes: each is inflated and
    deflated afresh, and the station (a ``websockets`` client) follows the response's parameters."""
    async with Echo() as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"], compression="deflate") as ws:
            answer = ws.response.headers["Sec-WebSocket-Extensions"]
            assert "client_no_context_takeover" in answer and "server_max_window_bits=12" in answer
            for i in range(200):
                text = f'[2,"{i}","MeterValues",{{"connectorId":1,"meterValue":[{{"sampledValue":[{{"value":"{i}"}}]}}]}}]'
                await ws.send(text)
                assert await ws.recv() == text


def engines():
    """Python's zlib and what the server compresses with (zlib-ng where it is installed)."""
    from csms.ocpp.deflate import ENGINE
    return [zlib] if ENGINE is zlib else [zlib, ENGINE]


def inflate_within_window(wire: bytes, bits: int) -> bytes:
    """A message inflated as a station with a ``2**bits``-byte window inflates it. Taken 16 bytes at a time, so
    that zlib must look up what a back reference names in its window, not in the output it just produced:
    one that reaches further back than the window is refused ("invalid distance too far back")."""
    inflater, data, out = zlib.decompressobj(-bits), wire + b"\x00\x00\xff\xff", []
    while data:
        out.append(inflater.decompress(data, 16))
        data = inflater.unconsumed_tail
    return b"".join(out)


def test_an_inflater_fed_in_steps_refuses_a_reference_past_its_window():
    """The premise of the check above: a 15-bit compressor's reference 800 bytes back is refused by a 9-bit
    inflater fed in steps (in one call zlib would find it in its output and not complain)."""
    piece = b"".join(random.Random(1).choice(string.ascii_letters).encode() for _ in range(200))
    message = piece + bytes(range(256)) * 3 + piece
    wide = zlib.compressobj(1, zlib.DEFLATED, -15)
    wire = (wide.compress(message) + wide.flush(zlib.Z_FULL_FLUSH))[:-4]
    assert zlib.decompressobj(-9).decompress(wire + b"\x00\x00\xff\xff") == message
    with pytest.raises(zlib.error, match="too far back"):
        inflate_within_window(wire, 9)


@pytest.mark.parametrize("engine", engines(), ids=lambda e: e.__name__)
@pytest.mark.parametrize("bits", [12, 10, 9])
def test_deflated_messages_stand_alone_whoever_compressed_before(bits, engine):
    """Connections share their thread's compressor: each message must still inflate on its own, with a fresh
    decompressor of the agreed window and nothing before it (what server_no_context_takeover promises), and
    come out the same whatever other connections compressed in between. Some messages repeat a piece further
    back than the window: the compressor must not refer to it (an inflater of that window refuses it)."""
    from csms.ocpp.deflate import BoundedDeflate
    a, b = BoundedDeflate(65536, engine), BoundedDeflate(65536, engine)
    assert a.accept(f"permessage-deflate; server_max_window_bits={bits}")
    assert b.accept(f"permessage-deflate; server_max_window_bits={bits}")
    rng = random.Random(bits)

    def text(size: int) -> str:
        return "".join(rng.choice('{}[]",:abcdefSetChargingProfile0123456789') for _ in range(size))
    texts = [text(rng.randrange(64, 3000)).encode() for _ in range(40)]
    for _ in range(10):
        piece = text(rng.randrange(50, 400))
        texts.append(f"{piece}{text(2 ** bits + rng.randrange(0, 2000))}{piece}".encode())
    for i, message in enumerate(texts):
        wire = (a if i % 2 else b).compress(message)
        assert inflate_within_window(wire, bits) == message
        fresh = a._new_compressor()  # the same bytes as a compressor that has seen nothing before
        assert wire == (fresh.compress(message) + fresh.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_zlib_ng_compresses_where_its_wheels_install():
    """pyproject.toml installs zlib-ng on x86-64 and 64-bit ARM (half the CPU per profile sent): there it must be
    what compresses, not a silent fall-back to Python's zlib."""
    import platform

    from csms.ocpp.deflate import ENGINE
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        pytest.skip(f"no zlib-ng wheel for {platform.machine()}: Python's zlib compresses")
    assert ENGINE.__name__ == "zlib_ng.zlib_ng"


async def test_messages_sent_in_one_turn_then_a_close_arrive_in_order():
    """Writes wait for the end of their turn of the loop (``csms.ocpp.socket_writes``): messages and the close frame
    queued in the same turn still reach the station in the order they were written, and all of them."""
    async def burst_then_close(ws: WebSocket) -> None:
        await ws.recv()
        for i in range(50):
            await ws.send(f'[2,"{i}","DataTransfer",{{"vendorId":"{"x" * (i * 7)}"}}]')
        await ws.close(1000, "done")

    async with Echo(handler=burst_then_close) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"], compression="deflate") as client:
            await client.send("go")
            got = [await client.recv() for _ in range(50)]
            assert got == [f'[2,"{i}","DataTransfer",{{"vendorId":"{"x" * (i * 7)}"}}]' for i in range(50)]
            with pytest.raises(websockets.ConnectionClosed) as info:
                await client.recv()
            assert info.value.rcvd.code == 1000 and info.value.rcvd.reason == "done"


async def test_a_connection_we_close_tells_its_reader_the_code_we_sent():
    """The server's log says why a station it removed went ("disconnected (1000)"), not "no close frame"."""
    ended: list[ConnectionClosed] = []

    async def read_while_closed(ws: WebSocket) -> None:
        async def read() -> None:  # the session's reader, waiting for the station's next message
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                ended.append(exc)
        reader = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        await ws.close(1000, "removed from the site config")
        await reader

    async with Echo(handler=read_while_closed) as srv:
        async with connect(srv.url(), subprotocols=["ocpp1.6"]) as ws:
            with pytest.raises(websockets.ConnectionClosedOK):
                await asyncio.wait_for(ws.recv(), 5)
        await asyncio.wait_for(srv.handler_done.wait(), 5)
    assert [(e.code, e.reason) for e in ended] == [(1000, "removed from the site config")]
