"""permessage-deflate (RFC 7692) for the OCPP server, sized for many small, sparse messages.

OCPP 2.0.1 requires a central system to support the extension, and some stations offer it. wsproto's own
``PerMessageDeflate`` keeps a 15-bit window and zlib's default memory level for the connection's life: about
270 KB of compressor per station once it has sent one message (2.7 GB at 10,000 stations), allocated through
``mmap`` each time (about 50 µs for a station's first frame). It also inflates a frame without a bound, so a
small compressed frame can become hundreds of megabytes before any size limit is checked.

This extension answers every offer with ``server_no_context_takeover`` and ``client_no_context_takeover``
(RFC 7692 lets a server ask for both whatever the offer says) and a 12-bit server window, so neither side
keeps a compression context between messages: a decompressor lives for one message, and the connections of a
thread share one compressor whose history a full flush clears after each message. OCPP messages compress about
as well without the context (they are a few hundred bytes of JSON). Inflating is bounded by the message size
limit: what would inflate past it closes the connection with 1009, having produced at most the limit.

What compresses is zlib-ng where its wheels install (x86-64 and 64-bit ARM): its fastest level codes a message
with the fixed Huffman code, in half the CPU of Python's zlib at its fastest (a 1.6 SetChargingProfile of 416
bytes: 2.7 µs against 4.8, for 280 bytes against 244; ``python bench/bench_deflate.py``). A decision for 1,000
chargers sends 1,000 profiles in one turn of the event loop, and compressing them was a quarter of that turn.
Elsewhere Python's zlib compresses, with the same window and the same guarantees. Inflating is Python's zlib.
"""

from __future__ import annotations

import threading
import zlib
from types import ModuleType

from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

try:
    from zlib_ng import zlib_ng as _zlib_ng
except ImportError:  # no wheel for this machine (e.g. 32-bit ARM): not installed, see pyproject.toml
    _zlib_ng = None

#: The library that compresses (the ``zlib`` module's interface): zlib-ng where installed, else Python's zlib.
ENGINE: ModuleType = _zlib_ng if _zlib_ng is not None else zlib

#: The window we compress with (2**12 bytes; a station's messages are shorter) and zlib's memory level for it.
SERVER_WINDOW_BITS = 12
MEMORY_LEVEL = 5
#: The fastest level: OCPP messages are short and their gain is in repeated keys, which level 1 finds too
#: (Python's zlib on a SetChargingProfile of 441 bytes: 7.8 µs against 11.3 at the default level, for 265 bytes
#: against 262; zlib-ng's level 1 is its quick strategy, see above).
LEVEL = 1
#: The trailer every message's compressed data ends with on the wire removed (RFC 7692 section 7.2.1).
_TAIL = b"\x00\x00\xff\xff"
_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION)


def _window_bits(value: str) -> int | None:
    bits = int(value.strip().strip('"'))
    return bits if 8 <= bits <= 15 else None


class BoundedDeflate(Extension):
    """A server's permessage-deflate without context takeover, inflating at most ``max_size`` bytes a message."""

    name = "permessage-deflate"

    def __init__(self, max_size: int, engine: ModuleType = ENGINE):
        self.max_size = max_size
        self.engine = engine
        self.server_window_bits = SERVER_WINDOW_BITS
        self._enabled = False
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None
        self._inbound_compressed: bool | None = None  # None: between messages
        self._room = max_size

    def enabled(self) -> bool:
        return self._enabled

    def offer(self) -> bool | str:
        return False  # a server answers offers; it makes none

    def accept(self, offer: str) -> str | None:
        """The response's parameters for one offer; None declines an offer it cannot meet (then the next
        offer, or no compression, is used)."""
        server_bits = SERVER_WINDOW_BITS
        client_bits: int | None = None
        seen: set[str] = set()
        try:
            for param in offer.split(";")[1:]:
                name, _, value = (part.strip() for part in param.partition("="))
                if name in seen:
                    return None  # a parameter twice is a malformed offer (section 7)
                seen.add(name)
                if name == "server_max_window_bits":
                    bits = _window_bits(value)
                    if bits is None or bits == 8:
                        return None  # zlib cannot compress with an 8-bit window
                    server_bits = min(server_bits, bits)
                elif name == "client_max_window_bits":
                    client_bits = _window_bits(value) if value else 15
                    if client_bits is None:
                        return None
                elif name not in ("server_no_context_takeover", "client_no_context_takeover") or value:
                    return None
        except ValueError:
            return None
        self.server_window_bits = server_bits
        self._enabled = True
        params = ["server_no_context_takeover", "client_no_context_takeover", f"server_max_window_bits={server_bits}"]
        if client_bits is not None:
            params.append(f"client_max_window_bits={client_bits}")
        return "; ".join(params)

    # -- inbound ---------------------------------------------------------------------------------------

    def frame_inbound_header(self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits,
                             payload_length: int) -> CloseReason | RsvBits:
        if rsv.rsv1 and (opcode.iscontrol() or opcode is Opcode.CONTINUATION):
            return CloseReason.PROTOCOL_ERROR
        if opcode in _DATA and self._inbound_compressed is None:
            self._inbound_compressed = rsv.rsv1
            if rsv.rsv1:
                self._decompressor = zlib.decompressobj(-15)  # fits any window the station compresses with
                self._room = self.max_size
        return RsvBits(True, False, False)

    def frame_inbound_payload_data(self, proto: FrameDecoder | FrameProtocol,
                                   data: bytes) -> bytes | CloseReason:
        if not self._inbound_compressed or self._decompressor is None:
            return data
        return self._inflate(data)

    def frame_inbound_complete(self, proto: FrameDecoder | FrameProtocol,
                               fin: bool) -> bytes | CloseReason | None:
        if not fin or self._inbound_compressed is None:
            return None
        compressed, self._inbound_compressed = self._inbound_compressed, None
        if not compressed or self._decompressor is None:
            return None
        tail = self._inflate(_TAIL)
        self._decompressor = None  # the station keeps no context either: nothing to keep for its next message
        return tail

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        assert self._decompressor is not None
        try:
            out = self._decompressor.decompress(data, self._room + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._room -= len(out)
        if self._room < 0 or self._decompressor.unconsumed_tail:
            self._decompressor = None
            return CloseReason.MESSAGE_TOO_BIG
        return out

    # -- outbound --------------------------------------------------------------------------------------

    def compress(self, message: bytes) -> bytes:
        """A whole message as its frame carries it (with RSV1 set), the trailer removed.

        Compressed by this thread's compressor for the window, shared by every connection: a full flush ends
        each message and resets the compressor's history (zlib's Z_FULL_FLUSH), so no message refers to an
        earlier one, which is all that no context takeover asks, and no compressor is set up per message."""
        key = (self.engine, self.server_window_bits)
        compressor = _shared_compressor(key)
        try:
            return (compressor.compress(message) + compressor.flush(zlib.Z_FULL_FLUSH))[:-4]
        except BaseException:
            _compressors.by_key.pop(key, None)  # its state is unknown now
            raise

    def _new_compressor(self) -> zlib._Compress:
        return _new_compressor((self.engine, self.server_window_bits))

    def frame_outbound(self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, data: bytes,
                       fin: bool) -> tuple[RsvBits, bytes]:
        """wsproto's hook for the frames it writes: the transport frames whole messages itself (with
        :meth:`compress`), so only a message wsproto were given in fragments would pass here compressed."""
        if opcode not in _DATA:
            return rsv, data
        if opcode is not Opcode.CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        if self._compressor is None:
            self._compressor = self._new_compressor()
        out = self._compressor.compress(bytes(data))
        if fin:
            out = (out + self._compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
            self._compressor = None  # no context takeover: the next message starts afresh
        return rsv, out


_compressors = threading.local()


def _new_compressor(key: tuple[ModuleType, int]) -> zlib._Compress:
    engine, window_bits = key
    return engine.compressobj(LEVEL, engine.DEFLATED, -window_bits, MEMORY_LEVEL)


def _shared_compressor(key: tuple[ModuleType, int]) -> zlib._Compress:
    """This thread's compressor for an engine and a window (a loop's connections use it in turn, never at once)."""
    by_key = getattr(_compressors, "by_key", None)
    if by_key is None:
        by_key = _compressors.by_key = {}
    compressor = by_key.get(key)
    if compressor is None:
        compressor = by_key[key] = _new_compressor(key)
    return compressor
