"""What the OCPP server puts on its sockets: whole messages as frames, and the writes of one turn of the event
loop sent together at the start of the next.

Why together: a balancer decision wakes a worker for each charger of the group in one turn of the loop, and
each writes one SetChargingProfile. Sent as each is framed, every ``send()`` comes between two chargers'
Python work: it finds the kernel's socket paths cold and, on a machine whose other CPUs sleep while waiting
for it, pays to wake one. Sent one after the other, 1,000 of them cost what a tight loop of sends costs
(``bench/RESULTS.md``, issue 14). A write waits for the rest of its turn and no longer: nothing is held back
for company that has not come, and the order of one connection's writes is kept.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import weakref
from typing import Protocol

from csms.ocpp.deflate import BoundedDeflate

log = logging.getLogger("csms.ocpp.transport")

#: A frame's first two bytes and its payload length in 16 or 64 bits (RFC 6455 section 5.2).
_LENGTH_16 = struct.Struct("!BBH")
_LENGTH_64 = struct.Struct("!BBQ")


def text_frame(data: bytes, deflate: BoundedDeflate | None, threshold: int) -> bytes:
    """One whole text message as one frame, a server's (not masked), compressed when ``deflate`` was agreed
    and the message has at least ``threshold`` bytes. wsproto would frame it the same way at several times
    the cost."""
    first = 0x81  # FIN, text
    if deflate is not None and len(data) >= threshold:
        data, first = deflate.compress(data), 0xC1  # RSV1: compressed (RFC 7692 section 6)
    size = len(data)
    if size < 126:
        return bytes((first, size)) + data
    if size < 65536:
        return _LENGTH_16.pack(first, 126, size) + data
    return _LENGTH_64.pack(first, 127, size) + data


class Writer(Protocol):
    def write_out(self) -> None:
        """Writes what it queued this turn to its socket."""


class WriteBatch:
    """The connections that queued a write in this turn of the loop; all written out at the start of the next."""

    __slots__ = ("_loop", "_due", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._due: list[Writer] = []
        _batches.add(self)

    def queue(self, writer: Writer) -> None:
        """``writer`` has something to write (call once until its ``write_out``)."""
        if not self._due:
            self._loop.call_soon(self._write_out)
        self._due.append(writer)

    def _write_out(self) -> None:
        due, self._due = self._due, []
        for writer in due:
            try:
                writer.write_out()
            except Exception:  # one connection's failure must not keep the others' frames back
                log.exception("writing to %r failed", writer)


_batches: weakref.WeakSet[WriteBatch] = weakref.WeakSet()


def writes_pending() -> bool:
    """Whether frames queued on the running loop wait for the next turn: work that can wait (a garbage
    collector's pass) yields one turn first, so that it does not come between a decision's burst and its sends."""
    loop = asyncio.get_running_loop()
    return any(batch._due for batch in list(_batches) if batch._loop is loop)
