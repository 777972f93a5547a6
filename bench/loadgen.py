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
(GetConfiguration, SetChargingProfile, GetVariables...) with a minimal valid reply. :func:`connect_fleet` spreads
the stations over several ports (several gateways) when given a list; :func:`start_charging` puts every station
in a running transaction (for a balancer to give it a limit), and ``Stats.profiles`` notes when each
SetChargingProfile arrived and its limit.

More stations than one process may open sockets for (its RLIMIT_NOFILE), or more than one core's worth of load,
run in several processes: ``python bench/loadgen.py --worker SPEC`` is one of them, driven by JSON lines on its
stdin (:func:`worker_main`; :class:`WorkerProcess` is the parent's side).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import os
import resource
import socket
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
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


def profile_limit(version: str, payload: dict) -> float:
    """The first period's limit of a SetChargingProfile request (NaN when it has none)."""
    try:
        if version == V16:
            return float(payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"])
        schedule = payload["chargingProfile"]["chargingSchedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        return float(schedule["chargingSchedulePeriod"][0]["limit"])
    except (KeyError, IndexError, TypeError, ValueError):
        return float("nan")


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
    #: (perf_counter, station id, limit) of every SetChargingProfile the server sent, when not None.
    profiles: list[tuple[float, str, float]] | None = None
    #: The kernel's receive time of the bytes being handled (perf_counter's clock), when read with timestamps.
    rx_at: float | None = None
    #: Actions of the server's CALLs answered {"status": "Rejected"} (a charger that refuses TriggerMessage, say).
    refuse: frozenset[str] = frozenset()

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
        self.raw_socket: socket.socket | None = None  # read with kernel timestamps (read_with_kernel_timestamps)
        self._inflate = None  # a server that keeps its deflate context between messages: ours for the connection

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
            head = bytes(self._buf[:end])
            status = head.split(b"\r\n", 1)[0]
            del self._buf[:end + 4]
            if b"permessage-deflate" in head and b"server_no_context_takeover" not in head:
                self._inflate = zlib.decompressobj(-15)  # the server keeps its context: so must we
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
            if b0 & 0x40:  # permessage-deflate (ours keeps no context between messages; others may)
                inflate = self._inflate or zlib.decompressobj(-15)
                payload = inflate.decompress(payload + b"\x00\x00\xff\xff")
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
            if frame[2] == "SetChargingProfile" and self.stats.profiles is not None:
                at = self.stats.rx_at if self.stats.rx_at is not None else time.perf_counter()
                self.stats.profiles.append((at, self.id, profile_limit(self.version, frame[3])))
            answer = ({"status": "Rejected"} if frame[2] in self.stats.refuse
                      else answer_server_call(self.version, frame[2], frame[3]))
            reply = [3, frame[1], answer]
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
        if self.raw_socket is not None:
            asyncio.get_running_loop().remove_reader(self.raw_socket.fileno())
            self.raw_socket.close()
            self.raw_socket = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(struct.pack("!H", 1000), 0x8))
            self.transport.close()


def handshake_request(host: str, port: int, path: str, version: str, auth: tuple[str, str] | None,
                      deflate: bool = False) -> bytes:
    """The upgrade request; with ``deflate``, offering permessage-deflate as the ``websockets`` client does (the
    station then inflates what the server compresses, and sends its own frames uncompressed, as RFC 7692
    allows)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", f"Sec-WebSocket-Protocol: {version}"]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
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


async def connect_fleet(host: str, port: int | Sequence[int], ids: list[str], version: str, *, prefix: str = "/ocpp",
                        passwords: dict[str, str] | None = None, boot: bool = True, concurrency: int = 200,
                        timeout: float = 120, deflate: bool = False) -> Fleet:
    """Opens one connection per id (``concurrency`` handshakes at a time) and, with ``boot``, sends a
    BootNotification from each and waits for the answer; returns when all are up. With several ports
    (gateways), the i-th id goes to ``port[i % len(port)]``."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    sem = asyncio.Semaphore(concurrency)
    stations: list[Station] = []
    ports = [port] if isinstance(port, int) else list(port)

    async def one(i: int, sid: str) -> None:
        auth = (sid, passwords[sid]) if passwords else None
        port = ports[i % len(ports)]
        hs = handshake_request(host, port, f"{prefix}/{sid}", version, auth, deflate)
        async with sem:
            _, st = await loop.create_connection(lambda: Station(sid, version, stats, hs), host, port)
            await asyncio.wait_for(st.opened, 30)
            stations.append(st)
            if boot:
                reply = await st.call("BootNotification", boot_payload(version))
                if reply[0] != 3:
                    raise RuntimeError(f"{sid}: BootNotification refused: {reply}")

    t0 = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i, s) for i, s in enumerate(ids))), timeout)
    return Fleet(stations, stats, time.perf_counter() - t0)


#: SO_TIMESTAMPING and its flags for software receive timestamps (linux/net_tstamp.h); TCP returns them too.
_SO_TIMESTAMPING = 37
_RX_SOFTWARE = (1 << 3) | (1 << 4)


def read_with_kernel_timestamps(fleet: Fleet) -> None:
    """From now on each station's socket is read with ``recvmsg`` and the kernel's receive time of the bytes
    read (``Stats.rx_at``): what a SetChargingProfile's arrival is noted at. A fleet of 1,000 stations in
    one process handles their frames one after the other; real chargers have a CPU each, so the frame
    reached the last charger when the kernel received it, not when this process got round to it.
    (Linux only; the socket stays the transport's, which still writes.)"""
    loop = asyncio.get_running_loop()
    offset = time.perf_counter() - time.time()  # the kernel stamps CLOCK_REALTIME
    stats = fleet.stats

    def reader(st: Station, sock: socket.socket) -> None:
        try:
            data, ancillary, _, _ = sock.recvmsg(262144, 256)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            loop.remove_reader(sock.fileno())
            st.connection_lost(exc)
            return
        if not data:
            loop.remove_reader(sock.fileno())
            st.connection_lost(None)
            return
        stats.rx_at = None
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPING:
                sec, nsec = struct.unpack_from("qq", raw)
                stats.rx_at = sec + nsec / 1e9 + offset
        try:
            st.data_received(data)
        finally:
            stats.rx_at = None

    for st in fleet.stations:
        transport = st.transport
        assert transport is not None
        transport.pause_reading()
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPING, _RX_SOFTWARE)
        sock.setblocking(False)
        st.raw_socket = sock  # closed with the station
        loop.add_reader(sock.fileno(), reader, st, sock)


async def settle(fleet: Fleet, quiet: float = 2.0, limit: float = 120.0) -> float:
    """Waits until the server has made no CALL to the stations for ``quiet`` s; returns the time taken."""
    t0 = time.perf_counter()
    last, since = fleet.stats.server_calls, time.perf_counter()
    while time.perf_counter() - t0 < limit:
        await asyncio.sleep(0.25)
        if fleet.stats.server_calls != last:
            last, since = fleet.stats.server_calls, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            break
    return time.perf_counter() - t0


async def start_charging(fleet: Fleet, id_token: str = "BENCH", concurrency: int = 200) -> None:
    """Every station reports its connector occupied and starts a transaction on it (connector / EVSE 1), so that
    a balancer counts it as charging and sends it limits."""
    sem = asyncio.Semaphore(concurrency)

    async def one(st: Station) -> None:
        async with sem:
            now = _iso_now()
            if st.version == V16:
                for cid, status in ((0, "Available"), (1, "Preparing")):
                    await _ok(st, "StatusNotification", {"connectorId": cid, "errorCode": "NoError", "status": status})
                tx = await _ok(st, "StartTransaction", {"connectorId": 1, "idTag": id_token, "meterStart": 0,
                                                        "timestamp": now})
                if tx.get("idTagInfo", {}).get("status") != "Accepted":
                    raise RuntimeError(f"{st.id}: StartTransaction refused: {tx}")
                await _ok(st, "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
                return
            await _ok(st, "StatusNotification", {"timestamp": now, "connectorStatus": "Occupied", "evseId": 1,
                                                 "connectorId": 1})
            tx = await _ok(st, "TransactionEvent", {
                "eventType": "Started", "timestamp": now, "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": f"T-{st.id}", "chargingState": "Charging"},
                "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": id_token, "type": "ISO14443"}})
            if tx.get("idTokenInfo", {}).get("status", "Accepted") != "Accepted":
                raise RuntimeError(f"{st.id}: transaction refused: {tx}")

    await asyncio.gather(*(one(st) for st in fleet.stations))


async def _ok(st: Station, action: str, payload: dict) -> dict:
    reply = await st.call(action, payload)
    if reply[0] != 3:
        raise RuntimeError(f"{st.id}: {action} answered {reply}")
    return reply[2]


async def _record(stats, duration: float) -> float:
    """Records answers for ``duration`` s from now (after a warm-up); returns the seconds really measured."""
    stats.rtts.clear()
    stats.answered_at.clear()
    stats.recording = True
    t0 = time.perf_counter()
    await asyncio.sleep(duration)
    stats.recording = False
    return time.perf_counter() - t0


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """The load generator's own garbage collector kept out of the measured latencies: what is alive is frozen and
    automatic collection is off while the load runs (a generation 2 pass over 10,000 stations' objects stood
    this process still for 125 ms, which the answers in flight were charged as the server's)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()


async def run_closed(fleet: Fleet, warmup: float, duration: float) -> dict:
    """Every station keeps one CALL in flight; measures answers per second after ``warmup``."""
    stats = fleet.stats
    with no_collector_pauses():
        for st in fleet.stations:
            st.on_answer = lambda s: s.send_next()
            st.send_next()
        await asyncio.sleep(warmup)
        elapsed = await _record(stats, duration)
    for st in fleet.stations:
        st.on_answer = None
    await _drain(fleet)
    return stats.summary(elapsed)


async def run_steady(fleet: Fleet, interval: float, warmup: float, duration: float,
                     start_at: float | None = None) -> dict:
    """Each station sends one CALL every ``interval`` s, phases spread evenly over the interval; from
    ``start_at`` (``time.monotonic()``, the loop's clock: several processes start together) or at once."""
    loop = asyncio.get_running_loop()
    stats = fleet.stats
    n = len(fleet.stations)
    start = max(loop.time(), start_at or 0.0) + 0.1
    perf_offset = time.perf_counter() - loop.time()
    end = start + warmup + duration
    handles: list[asyncio.TimerHandle] = []

    def tick(st: Station, at: float) -> None:
        st.due(at + perf_offset)
        nxt = at + interval
        if nxt < end:
            handles.append(loop.call_at(nxt, tick, st, nxt))

    with no_collector_pauses():
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


# -- a load generator in its own process ---------------------------------------------------------------------

def raise_fd_limit() -> int:
    """Raises this process's open-file limit to its hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


async def worker_main() -> None:
    """One load-generating process. Its first stdin line is the spec: ``host``, ``ports`` (stations spread over
    them), ``ids``, ``version``, ``password`` (a format of ``{id}``, or null: no basic auth), ``prefix``. Then each
    line is one request (``op`` and its arguments), answered by one JSON line: ``connect`` (``concurrency``,
    ``timeout``), ``settle`` (``quiet``, ``limit``), ``steady`` (``interval``, ``warmup``, ``duration``,
    ``start_at``: every round trip in ms and when it was answered, ``time.perf_counter()``, come back, for the parent
    to merge), ``charge``, ``profiles`` (the
    SetChargingProfile arrivals since the last ``profiles``; recording starts with the first), ``quit``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2 ** 26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    spec = json.loads(await reader.readline())
    fd_limit = raise_fd_limit()
    ids: list[str] = spec["ids"]
    passwords = {sid: spec["password"].format(id=sid) for sid in ids} if spec.get("password") else None
    fleet: Fleet | None = None
    while line := await reader.readline():
        req = json.loads(line)
        op = req.pop("op")
        try:
            if op == "quit":
                break
            if op == "connect":
                if len(ids) + 64 > fd_limit:
                    raise RuntimeError(f"{len(ids)} stations need more sockets than this process may open "
                                       f"(RLIMIT_NOFILE {fd_limit}): use more worker processes")
                fleet = await connect_fleet(spec["host"], spec["ports"], ids, spec["version"],
                                            prefix=spec.get("prefix", "/ocpp"), passwords=passwords, **req)
                answer({"connect_s": fleet.connect_seconds, "stations": len(fleet.stations)})
            elif fleet is None:
                raise RuntimeError(f"{op} before connect")
            elif op == "settle":
                answer({"settle_s": await settle(fleet, **req), "server_calls": fleet.stats.server_calls})
            elif op == "steady":
                cpu0, wall0 = time.process_time(), time.perf_counter()
                summary = await run_steady(fleet, **req)
                answer({"summary": summary, "rtts_ms": [round(r * 1000, 3) for r in fleet.stats.rtts],
                        "answered_at": [round(t, 4) for t in fleet.stats.answered_at],
                        "cpu": (time.process_time() - cpu0) / (time.perf_counter() - wall0)})
            elif op == "charge":
                t0 = time.perf_counter()
                await start_charging(fleet, **req)
                answer({"charging": len(fleet.stations), "seconds": time.perf_counter() - t0})
            elif op == "profiles":
                got = fleet.stats.profiles or []
                fleet.stats.profiles = []
                answer({"profiles": got})
            else:
                raise RuntimeError(f"unknown op {op!r}")
        except Exception as exc:  # told to the parent, which decides
            answer({"error": f"{type(exc).__name__}: {exc}"})
    if fleet is not None:
        fleet.close()
        await asyncio.sleep(0.5)


class WorkerProcess:
    """The parent's side of one :func:`worker_main` process: ``await w.start()``, ``await w.request(op, ...)``,
    ``await w.stop()``. Its stderr goes to ``log`` (a pipe nobody reads would stall it)."""

    def __init__(self, spec: dict, log: str | os.PathLike, cpu: int | None = None):
        self.spec, self.log, self.cpu = spec, log, cpu
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--worker", str(self.log), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=err, limit=2 ** 27,
                preexec_fn=(lambda: os.sched_setaffinity(0, {self.cpu})) if self.cpu is not None else None)
        self.proc.stdin.write((json.dumps(self.spec) + "\n").encode())
        await self.proc.stdin.drain()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def request(self, op: str, within: float = 600, **args: object) -> dict:
        """Sends one request and waits at most ``within`` s for its answer (an ``error`` answer raises)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(within):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator {self.pid} exited ({await self.proc.wait()}): see {self.log}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"load generator {self.pid}, {op}: {reply['error']}")
        return reply

    async def stop(self, timeout: float = 15) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        try:
            proc.stdin.write(b'{"op": "quit"}\n')
            await proc.stdin.drain()
            async with asyncio.timeout(timeout):
                await proc.wait()
        except (TimeoutError, ConnectionError, BrokenPipeError):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:  # the argument after it (its log) only names the process in `ps`
        asyncio.run(worker_main())
    else:
        sys.exit("usage: loadgen.py --worker [LOG]  (driven by WorkerProcess; see its docstring)")
