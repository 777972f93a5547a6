"""A load generator for OCPP-J servers: thousands of simulated stations in one process.

It speaks just enough RFC 6455 over raw asyncio transports to be cheap (client frames are masked with
a zero key, which the RFC allows and which leaves the payload as is), so that one core can drive far
more than a Python server can answer and the generator is never what is measured.

Two shapes of load:

* :func:`run_closed` - saturation: every station keeps exactly one CALL in flight and sends the next
  as soon as the answer arrives (what "as fast as answers come back" means).
* :func:`run_steady` - open loop: every station sends one CALL every ``interval`` seconds, spread
  evenly; a CALL that is due while the previous one is unanswered waits, and its round trip is
  counted from when it was due, so a slow server cannot hide its queueing (no coordinated omission).

Stations alternate Heartbeat and per-phase MeterValues and answer whatever the server asks them
(GetConfiguration, SetChargingProfile, GetVariables...) with a minimal valid reply.
"""

from __future__ import annotations

import asyncio
import base64
import os
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson

V16, V201 = "ocpp1.6", "ocpp2.0.1"


# -- messages ------------------------------------------------------------------------------------

def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def meter_values_payload(version: str, timestamp: str) -> dict:
    if version == V16:
        sampled = [{"measurand": "Current.Import", "phase": p, "unit": "A", "value": v}
                   for p, v in (("L1", "10.5"), ("L2", "10.1"), ("L3", "9.8"))]
        sampled.append({"measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "1500"})
        return {"connectorId": 1, "meterValue": [{"timestamp": timestamp, "sampledValue": sampled}]}
    sampled = [{"measurand": "Current.Import", "phase": p, "value": v, "unitOfMeasure": {"unit": "A"}}
               for p, v in (("L1", 10.5), ("L2", 10.1), ("L3", 9.8))]
    sampled.append({"measurand": "Energy.Active.Import.Register", "value": 1500, "unitOfMeasure": {"unit": "Wh"}})
    return {"evseId": 1, "meterValue": [{"timestamp": timestamp, "sampledValue": sampled}]}


def boot_payload(version: str) -> dict:
    if version == V16:
        return {"chargePointVendor": "LoadGen", "chargePointModel": "Sim"}
    return {"chargingStation": {"vendorName": "LoadGen", "model": "Sim"}, "reason": "PowerUp"}


def answer_server_call(version: str, action: str, payload: dict) -> dict:
    """A minimal schema-valid reply to a CALL from the central system."""
    if action == "GetConfiguration":
        return {"configurationKey": [], "unknownKey": payload.get("key", [])}
    if action == "GetVariables":
        return {"getVariableResult": [{"attributeStatus": "UnknownVariable", "component": d["component"],
                                       "variable": d["variable"]} for d in payload.get("getVariableData", [])]}
    if action == "SetVariables":
        return {"setVariableResult": [{"attributeStatus": "Accepted", "component": d["component"],
                                       "variable": d["variable"]} for d in payload.get("setVariableData", [])]}
    if action == "GetCompositeSchedule":
        return {"status": "Rejected"}
    if action == "ClearChargingProfile":
        return {"status": "Accepted" if version == V16 else "Unknown"}
    return {"status": "Accepted"}


# -- websocket framing ---------------------------------------------------------------------------

def client_frame(data: bytes, opcode: int = 0x1) -> bytes:
    """A final, masked client frame with a zero mask key (payload bytes unchanged)."""
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + data


@dataclass
class Stats:
    sent: int = 0
    answered: int = 0
    errors: int = 0          # CALLERROR answers to our CALLs
    server_calls: int = 0    # CALLs the server made to us
    rtts: list[float] = field(default_factory=list)
    answered_at: list[float] = field(default_factory=list)  # perf_counter of each recorded answer
    recording: bool = False

    def stalls(self, threshold: float = 0.1) -> list[tuple[float, float]]:
        """(answered at, round trip) of every answer slower than ``threshold`` s, for finding pauses."""
        return [(t, r) for t, r in zip(self.answered_at, self.rtts) if r > threshold]

    def summary(self, seconds: float) -> dict:
        rtts = sorted(self.rtts)

        def pct(p: float) -> float:
            return rtts[min(len(rtts) - 1, int(p * len(rtts)))] * 1000 if rtts else float("nan")

        return {"messages": len(rtts), "seconds": round(seconds, 2), "rate": round(len(rtts) / seconds, 1),
                "p50_ms": round(pct(0.50), 2), "p99_ms": round(pct(0.99), 2), "max_ms": round(pct(1.0), 2),
                "mean_ms": round(statistics.fmean(rtts) * 1000, 2) if rtts else float("nan"),
                "errors": self.errors, "server_calls": self.server_calls}


class Station(asyncio.Protocol):
    """One simulated station on one TCP connection."""

    def __init__(self, station_id: str, version: str, stats: Stats, handshake: bytes):
        self.id, self.version, self.stats = station_id, version, stats
        self._handshake = handshake
        self._buf = bytearray()
        self._open = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._seq = 0
        self._in_flight: tuple[str, float] | None = None
        self._due: list[float] = []          # times of CALLs waiting for the previous answer
        self.on_answer: Callable[["Station"], None] | None = None
        self._waiter: asyncio.Future | None = None

    # transport callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._handshake)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError(f"{self.id}: closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(exc)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._open:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buf[:end]).split(b"\r\n", 1)[0]
            del self._buf[:end + 4]
            if b" 101 " not in status:
                self.opened.set_exception(ConnectionError(f"{self.id}: {status.decode(errors='replace')}"))
                self.transport.close()
                return
            self._open = True
            self.opened.set_result(None)
        self._parse_frames()

    def _parse_frames(self) -> None:
        buf = self._buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, pos = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, pos = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, pos = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < pos + n:
                return
            payload = bytes(buf[pos:pos + n])
            del buf[:pos + n]
            opcode = b0 & 0x0F
            if opcode == 0x1:
                self._on_text(payload)
            elif opcode == 0x9:
                self.transport.write(client_frame(payload, 0xA))
            elif opcode == 0x8:
                self.transport.close()
                return

    def _on_text(self, payload: bytes) -> None:
        frame = orjson.loads(payload)
        kind = frame[0]
        if kind == 2:
            self.stats.server_calls += 1
            reply = [3, frame[1], answer_server_call(self.version, frame[2], frame[3])]
            self.transport.write(client_frame(orjson.dumps(reply)))
            return
        if self._in_flight is None or frame[1] != self._in_flight[0]:
            return
        _, since = self._in_flight
        self._in_flight = None
        stats = self.stats
        stats.answered += 1
        if kind == 4:
            stats.errors += 1
        if stats.recording:
            now = time.perf_counter()
            stats.rtts.append(now - since)
            stats.answered_at.append(now)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(frame)
        if self._due:
            self.send_next(self._due.pop(0))
        elif self.on_answer is not None:
            self.on_answer(self)

    # sending
    def send_call(self, action: str, payload: dict, since: float | None = None) -> str:
        self._seq += 1
        uid = f"{self._seq}"
        self._in_flight = (uid, time.perf_counter() if since is None else since)
        self.stats.sent += 1
        self.transport.write(client_frame(orjson.dumps([2, uid, action, payload])))
        return uid

    def send_next(self, since: float | None = None) -> None:
        """The next message of the Heartbeat / MeterValues alternation."""
        if self.transport is None or self.transport.is_closing():
            return
        if self._seq % 2:
            self.send_call("MeterValues", meter_values_payload(self.version, _iso_now()), since)
        else:
            self.send_call("Heartbeat", {}, since)

    def due(self, at: float) -> None:
        """A CALL is due now (open loop): send it, or queue it behind the one in flight."""
        if self._in_flight is None:
            self.send_next(at)
        else:
            self._due.append(at)

    async def call(self, action: str, payload: dict, timeout: float = 30) -> list:
        self._waiter = asyncio.get_running_loop().create_future()
        self.send_call(action, payload)
        try:
            return await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
            self.transport.close()


def handshake_request(host: str, port: int, path: str, version: str, auth: tuple[str, str] | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Protocol: {version}"]
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        lines.append(f"Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class Fleet:
    stations: list[Station]
    stats: Stats
    connect_seconds: float

    def close(self) -> None:
        for st in self.stations:
            st.close()


async def connect_fleet(host: str, port: int, ids: list[str], version: str, *, prefix: str = "/ocpp",
                        passwords: dict[str, str] | None = None, boot: bool = True, concurrency: int = 200,
                        timeout: float = 120) -> Fleet:
    """Opens one connection per id (``concurrency`` handshakes at a time) and, with ``boot``, sends a
    BootNotification from each and waits for the answer; returns when all are up."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    sem = asyncio.Semaphore(concurrency)
    stations: list[Station] = []

    async def one(sid: str) -> None:
        auth = (sid, passwords[sid]) if passwords else None
        hs = handshake_request(host, port, f"{prefix}/{sid}", version, auth)
        async with sem:
            _, st = await loop.create_connection(lambda: Station(sid, version, stats, hs), host, port)
            await asyncio.wait_for(st.opened, 30)
            stations.append(st)
            if boot:
                reply = await st.call("BootNotification", boot_payload(version))
                if reply[0] != 3:
                    raise RuntimeError(f"{sid}: BootNotification refused: {reply}")

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(s) for s in ids)), timeout)
    return Fleet(stations, stats, time.perf_counter() - t0)


async def _record(stats, duration: float) -> float:
    """Records answers for ``duration`` s from now (after a warm-up); returns the seconds really measured."""
    stats.rtts.clear()
    stats.answered_at.clear()
    stats.recording = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    stats.recording = False
    return time.perf_counter() - t0


async def run_closed(fleet: Fleet, warmup: float, duration: float) -> dict:
    """Every station keeps one CALL in flight; measures answers per second after ``warmup``."""
    stats = fleet.stats
    for st in fleet.stations:
        st.on_answer = lambda s: s.send_next()
        st.send_next()
    await asyncio.sleep(warmup)
    elapsed = await _record(stats, duration)
    for st in fleet.stations:
        st.on_answer = None
    await _drain(fleet)
    return stats.summary(elapsed)


async def run_steady(fleet: Fleet, interval: float, warmup: float, duration: float) -> dict:
    """Each station sends one CALL every ``interval`` s, phases spread evenly over the interval."""
    loop = asyncio.get_running_loop()
    stats = fleet.stats
    n = len(fleet.stations)
    start = loop.time() + 0.1
    perf_offset = time.perf_counter() - loop.time()
    end = start + warmup + duration
    handles: list[asyncio.TimerHandle] = []

    def tick(st: Station, at: float) -> None:
        st.due(at + perf_offset)
        nxt = at + interval
        if nxt < end:
            handles.append(loop.call_at(nxt, tick, st, nxt))

    for i, st in enumerate(fleet.stations):
        at = start + interval * i / n
        handles.append(loop.call_at(at, tick, st, at))
    await asyncio.sleep(start - loop.time() + warmup)
    elapsed = await _record(stats, duration)
    for h in handles:
        h.cancel()
    await _drain(fleet)
    return stats.summary(elapsed)


async def _drain(fleet: Fleet, timeout: float = 10) -> None:
    """Waits until no CALL is in flight (or ``timeout``), so the next phase starts clean."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if all(st._in_flight is None and not st._due for st in fleet.stations):
            return
        await asyncio.sleep(0.05)
