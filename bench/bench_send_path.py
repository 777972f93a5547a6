"""The control loop's send path per charger, in figures that other work on the machine blurs less than latency.

Run: ``python bench/bench_send_path.py [--count 1000] [--trials 30] [--fleet process|inproc|memory]
[--compare-automatic-gc]``.

The set-up is ``bench_control_loop.py``'s: the real :class:`~csms.runtime.app.CentralSystemApp` and one group of
N one-phase chargers, 1.6J raw websocket clients (with permessage-deflate offered, as the ``websockets`` client
does) that boot, start a transaction and accept every profile, run as ``csms serve`` runs (its GC policy, logging
at INFO to a file).

Each timed decision is a decrease of every charger's limit by 0.1 A (ten in a row from 11 A, then an untimed
increase back: an increase waits out the balancer's peak hold). Per decision, in µs per charger:

* ``per charger``: the median time from one worker's start to the next one's in the burst in which every worker
  sends its SetChargingProfile (each runs to its ``await`` of the reply in one turn of the event loop). A moment
  in which the machine gave the core to someone else spoils one gap, not the median: the figure to compare;
* ``burst wall``/``burst cpu``: the whole burst, from the delivery receiving the decision to a marker queued
  behind the workers' wake-ups (it runs when the last one has sent), in wall-clock and CPU time
  (``time.thread_time`` of the loop's thread); ``burst gc``: the garbage collector's CPU time in it;
* ``decide cpu``: from the reading handed in to the delivery receiving the decision;
* ``answers cpu``: from the end of the burst until every charger's answer has been handled. The frames the
  burst framed are written to the sockets at the start of the next turn of the loop (``csms/ocpp/socket_writes.py``),
  so their ``send()`` calls are counted here, not in the burst;
* ``storage cpu``: the storage thread's CPU time during the burst (it shares the GIL with the loop).

Then the baseline (``link ...``): the same profiles straight through the stations' links
(``Commands16.set_profile``), without balancer and delivery. Each figure is the median over the trials, and the
smallest. ``--compare-automatic-gc`` runs every other trial with the collector's automatic passes instead of the
central system's GC policy (:mod:`csms.runtime.gcpolicy`).

``--fleet process`` (the default) runs the chargers in a child process on the other core, as
``bench_control_loop.py`` does. ``--fleet inproc`` runs them on the central system's own loop (after the burst;
its ``answers`` include the chargers' work). ``--fleet memory`` times only the baseline, on websockets that
write to memory (no kernel, no other process), with the answers fed back as a station's frames.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_control_loop as loop_bench  # noqa: E402  (the fleet, the site and the readings)

TOP = loop_bench.LIMITS[1]
STEPS = 10  # decreases of 0.1 A in a row, then an untimed increase back to TOP


class GcClock:
    """CPU seconds the garbage collector has run so far (``gc.callbacks``), to tell its share of a burst."""

    def __init__(self) -> None:
        self.total, self._started = 0.0, 0.0
        self.variant = ""
        #: per variant and generation: collections, seconds, the longest, objects freed
        self.stats: dict[str, list[list]] = {}
        gc.callbacks.append(self._callback)

    @property
    def by_generation(self) -> list[list]:
        return self.stats.setdefault(self.variant, [[0, 0.0, 0.0, 0] for _ in range(3)])

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.thread_time()
        else:
            took = time.thread_time() - self._started
            self.total += took
            generation = self.by_generation[info["generation"]]
            generation[0] += 1
            generation[1] += took
            generation[2] = max(generation[2], took)
            generation[3] += info["collected"]


GC = GcClock()


def storage_clock() -> int | None:
    """The CPU clock of the storage thread (the ThreadPoolExecutor worker named csms-storage), once it runs."""
    for thread in threading.enumerate():
        if thread.name.startswith("csms-storage") and thread.ident is not None:
            return time.pthread_getcpuclockid(thread.ident)
    return None


class Marks:
    """Times around each delivery of a decision: when it arrived, when each worker started its step, and when
    the workers' burst ended."""

    def __init__(self, app):
        from csms.balancer.ports import DecisionOutbox

        delivery = app.delivery
        apply, step = delivery.apply, delivery._step
        self.bursts: list[Burst] = []
        self.stamps: list[float] = []

        async def timed_step(ch, worker, link) -> None:
            self.stamps.append(time.perf_counter())
            await step(ch, worker, link)

        def marked(decision) -> None:
            cpu, sent, self.stamps = time.thread_time(), delivery.sent, []
            clock = storage_clock()
            storage = time.clock_gettime(clock) if clock is not None else 0.0
            wall, collected = time.perf_counter(), GC.total
            apply(decision)

            def end() -> None:
                now = time.perf_counter()
                self.bursts.append(Burst(cpu, time.thread_time() - cpu, now - wall, delivery.sent - sent,
                                         (time.clock_gettime(clock) if clock is not None else 0.0) - storage,
                                         per_charger(self.stamps, now), GC.total - collected))
            asyncio.get_running_loop().call_soon(end)

        delivery._step = timed_step  # type: ignore[method-assign]
        # The balancer's outbox was opened with the delivery's own ``apply``: point it at the marked one.
        outbox = next(v for v in vars(app.balancer).values() if isinstance(v, DecisionOutbox))
        outbox._receiver = marked

    def full(self, n: int, since: float) -> Burst | None:
        return next((b for b in reversed(self.bursts) if b.sent >= n and b.cpu_at >= since), None)


@dataclass
class Burst:
    cpu_at: float     # thread CPU time when the decision reached the delivery
    cpu: float        # CPU time of the burst
    wall: float       # its wall-clock time
    sent: int
    storage: float    # the storage thread's CPU time meanwhile
    per_charger: float
    gc: float         # the garbage collector's time in the burst


def per_charger(stamps: list[float], end: float) -> float:
    """The median time from one worker's start to the next's (the last one's to the end of the burst): a
    moment the machine took the core away spoils one gap, not the median."""
    gaps = [b - a for a, b in zip(stamps, [*stamps[1:], end])]
    return statistics.median(gaps) if gaps else float("nan")


class InProcessFleet:
    """The benchmark's raw 1.6 chargers on this event loop."""

    def __init__(self, url: str, n: int):
        self.received: list = []
        self.stations = [loop_bench.RawStation(f"CP{i:05d}", self.received) for i in range(n)]
        self.url, self.tasks = url, []

    async def start(self) -> None:
        for i in range(0, len(self.stations), 50):
            booted = [asyncio.Event() for _ in self.stations[i:i + 50]]
            self.tasks += [asyncio.create_task(s.run(self.url, b)) for s, b in zip(self.stations[i:i + 50], booted)]
            await asyncio.gather(*(b.wait() for b in booted))

    async def dump(self) -> list:
        batch, self.received[:] = list(self.received), []
        return batch

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class ProcessFleet:
    """``bench_control_loop.py``'s fleet in a child process on the other core."""

    def __init__(self, url: str, n: int):
        self.cmd = [sys.executable, loop_bench.__file__, "--fleet", url, "--count", str(n)]
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) >= 2:
            self.cmd += ["--cpu", str(cpus[1])]
        self.fleet: loop_bench.Fleet | None = None

    async def start(self) -> None:
        proc = await asyncio.create_subprocess_exec(*self.cmd, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, limit=2 ** 26)
        self.fleet = loop_bench.Fleet(proc)
        assert await self.fleet.line() == "READY"

    async def dump(self) -> list:
        assert self.fleet is not None
        return await self.fleet.dump()

    async def stop(self) -> None:
        if self.fleet is None:
            return
        proc = self.fleet.proc
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                proc.stdin.write(b"QUIT\n")
                await proc.stdin.drain()
            try:
                async with asyncio.timeout(30):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def decrease(app, marks: Marks, n: int, target: float) -> dict[str, float]:
    """Hands in the reading for ``target`` A per charger and waits until every charger has accepted it."""
    cpu0 = time.thread_time()
    app._on_reading(loop_bench.reading_for(n, target))
    async with asyncio.timeout(30):
        while (burst := marks.full(n, cpu0)) is None:
            await asyncio.sleep(0.0005)
    await loop_bench.settled(app, target)
    return {"per charger": burst.per_charger, "burst wall": burst.wall / n, "burst cpu": burst.cpu / n,
            "decide cpu": (burst.cpu_at - cpu0) / n, "answers cpu": (time.thread_time() - burst.cpu_at - burst.cpu) / n,
            "storage cpu": burst.storage / n, "burst gc": burst.gc / n}


async def raise_to(app, n: int, target: float) -> None:
    """Readings for ``target`` until every charger has accepted it (untimed: the balancer's peak hold)."""
    for _ in range(200):
        app._on_reading(loop_bench.reading_for(n, target))
        with contextlib.suppress(TimeoutError):
            await loop_bench.settled(app, target, timeout=loop_bench.READING_INTERVAL)
            return
    raise AssertionError(f"the chargers never reached {target} A")


async def warm_up(app, n: int) -> None:
    """Decreases, untimed, until every charger has refused TriggerMessage often enough not to be asked again
    (the fleet rejects it): a trigger in flight when a decision comes holds that charger's profile back until
    it is answered, which would split the burst this benchmark times."""
    from csms.smart_charging.trigger import TRIGGER_MIN_INTERVAL

    for step in range(100):
        if all(ch.trigger_off for ch in app.delivery.channels.values()):
            return
        if step % STEPS == STEPS - 1:
            await raise_to(app, n, TOP)
        app._on_reading(loop_bench.reading_for(n, round(TOP - 0.1 * (1 + step % STEPS), 1)))
        await asyncio.sleep(TRIGGER_MIN_INTERVAL / 4)
    raise AssertionError("TriggerMessage is still asked for")


async def run(n: int, trials: int, fleet_kind: str, compare_gc: bool) -> dict[str, list[float]]:
    from csms.domain.link import ProfileSpec, Purpose
    from csms.ocpp.schemas import preload
    from csms.runtime.app import CentralSystemApp
    from csms.runtime.gcpolicy import FrozenHeap

    preload()
    logging.basicConfig(level=logging.INFO, filename=os.path.join(tempfile.gettempdir(), "bench-send-path.log"),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True)
    for quiet in ("websockets", "ocpp"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        app = CentralSystemApp(loop_bench.site_config(n, f"{tmp}/csms.sqlite"))

        # No meter source: readings are handed in by the benchmark, as the gateway would.
        app._meter_source = lambda cfg: None  # type: ignore[method-assign]
        async with FrozenHeap(), app:
            marks = Marks(app)
            url = f"ws://127.0.0.1:{app.port}/ocpp"
            fleet = InProcessFleet(url, n) if fleet_kind == "inproc" else ProcessFleet(url, n)
            try:
                await fleet.start()
                await warm_up(app, n)
                await raise_to(app, n, TOP)
                await fleet.dump()
                GC.stats.clear()  # the timed part's collections only
                done = 0
                while done < trials:
                    for step in range(1, min(STEPS, trials - done) + 1):
                        target = round(TOP - 0.1 * step, 1)
                        variant = set_gc(compare_gc, done)
                        for name, value in (await decrease(app, marks, n, target)).items():
                            out.setdefault(name + variant, []).append(value)
                        arrivals = [lim for _, _, lim in await fleet.dump() if abs(lim - target) < 0.05]
                        assert len(arrivals) >= n, f"{n - len(arrivals)} chargers did not receive {target} A"
                        marks.bursts.clear()
                        done += 1
                    await raise_to(app, n, TOP)
                    await fleet.dump()
                links = [(ch, app.delivery.workers[ch.id].link) for ch in app.delivery.channels.values()]
                for k in range(trials):
                    limit = 20.0 + k % 2
                    now = time.time()
                    specs = [ProfileSpec(10, 8, Purpose.TX, 1, limit, "A", 1,
                                         transaction_id=app.state.station(ch.id).transactions[1].transaction_id,
                                         start_schedule=now - 30, duration=3630, valid_to=now + 3600)
                             for ch, _ in links]
                    stamps: list[float] = []
                    ends: list[float] = []

                    async def one(link, spec) -> None:
                        stamps.append(time.perf_counter())
                        await link.set_profile(spec)

                    variant = set_gc(compare_gc, k)
                    cpu0, collected = time.thread_time(), GC.total
                    tasks = [asyncio.ensure_future(one(link, spec)) for (_, link), spec in zip(links, specs)]
                    asyncio.get_running_loop().call_soon(
                        lambda: ends.extend((time.perf_counter(), time.thread_time(), GC.total - collected)))
                    await asyncio.gather(*tasks)
                    for name, value in (("per charger", per_charger(stamps, ends[0])), ("burst cpu", ends[1] - cpu0),
                                        ("burst gc", ends[2]), ("answers cpu", time.thread_time() - ends[1])):
                        out.setdefault(f"link {name}{variant}", []).append(value / (1 if name == "per charger" else n))
                    await fleet.dump()
                set_gc(compare_gc, 0)
            finally:
                await fleet.stop()
    return out


# ---- the in-memory path: no kernel, no other process ----------------------------------------------

HANDSHAKE = ("GET /ocpp/{sid} HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: ocpp1.6\r\n{ext}\r\n")
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


class MemoryTransport(asyncio.Transport):
    """What a :class:`~csms.ocpp.transport.WebSocket` writes to: the bytes are kept for the bench to answer."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default=None):
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


class MemoryHost:
    def __init__(self, compression: bool):
        from csms.ocpp.transport import Options

        self.options = Options(subprotocols=("ocpp1.6",), compression=compression)
        self.writes = None  # set on the running loop by ``start``

    def start(self) -> None:
        from csms.ocpp.socket_writes import WriteBatch

        self.writes = WriteBatch(asyncio.get_running_loop())

    def accept(self, request):
        return "ocpp1.6"

    def opened(self, ws) -> None: ...
    def forget(self, ws) -> None: ...


def server_messages(chunks: list[bytes]) -> list[str]:
    """The text messages in what the server wrote (unmasked frames, inflated when RSV1 is set)."""
    data, out, i = b"".join(chunks), [], 0
    while i < len(data):
        b0, b1 = data[i], data[i + 1]
        length, i = b1 & 0x7F, i + 2
        if length == 126:
            length, i = int.from_bytes(data[i:i + 2], "big"), i + 2
        elif length == 127:
            length, i = int.from_bytes(data[i:i + 8], "big"), i + 8
        payload, i = data[i:i + length], i + length
        if b0 & 0x40:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        out.append(payload.decode())
    return out


def client_frame(text: str) -> bytes:
    """A client's text frame, masked with the all-zero key (the payload goes as it is)."""
    data = text.encode()
    n = len(data)
    head = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + b"\x00\x00\x00\x00" + data


async def memory_run(n: int, trials: int, compression: bool) -> dict[str, list[float]]:
    """``Commands16.set_profile`` on ``n`` stations whose websockets write to memory; the answers are fed
    back as a station's frames."""
    from csms.ocpp.schemas import preload
    from csms.runtime.gcpolicy import FrozenHeap

    preload()
    async with FrozenHeap():
        return await _memory_run(n, trials, compression)


async def _memory_run(n: int, trials: int, compression: bool) -> dict[str, list[float]]:
    from types import SimpleNamespace

    from csms.domain.link import ProfileSpec, Purpose
    from csms.domain.state import Version
    from csms.ocpp.station import Station
    from csms.ocpp.transport import WebSocket

    cfg = loop_bench.site_config(n, "unused.sqlite")
    ctx = SimpleNamespace(cfg=cfg, clock=time.time, storage=None)
    host = MemoryHost(compression)
    host.start()
    conns = []
    for i in range(n):
        ws, transport = WebSocket(host), MemoryTransport()
        ws.connection_made(transport)  # type: ignore[arg-type]
        sid = f"CP{i:05d}"
        ws.data_received(HANDSHAKE.format(sid=sid, ext=DEFLATE_OFFER if compression else "").encode())
        station = Station(sid, ws, Version.V16, ctx)  # type: ignore[arg-type]
        station.start(lambda exc: None)
        conns.append((ws, transport, station, None))
    await asyncio.sleep(0)
    out: dict[str, list[float]] = {}
    for k in range(trials + 3):
        limit = 20.0 + k % 2
        now = time.time()
        specs = [ProfileSpec(10, 8, Purpose.TX, 1, limit, "A", 1, transaction_id=str(1000 + i),
                             start_schedule=now - 30, duration=3630, valid_to=now + 3600) for i in range(n)]
        for _, transport, _, _ in conns:
            transport.written.clear()
        stamps: list[float] = []
        ends: list[float] = []

        async def one(link, spec) -> None:
            stamps.append(time.perf_counter())
            await link.set_profile(spec)

        cpu0, collected = time.thread_time(), GC.total
        tasks = [asyncio.ensure_future(one(station.link, spec)) for (_, _, station, _), spec in zip(conns, specs)]
        asyncio.get_running_loop().call_soon(
            lambda: ends.extend((time.perf_counter(), time.thread_time(), GC.total - collected)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        replies = []
        for ws, transport, _, _ in conns:
            (sent,) = server_messages(transport.written)
            replies.append(client_frame(json.dumps([3, json.loads(sent)[1], {"status": "Accepted"}])))
        cpu1 = time.thread_time()
        for (ws, _, _, _), reply in zip(conns, replies):
            ws.data_received(reply)
        await asyncio.gather(*tasks)
        if k < 3:
            continue  # warm-up: caches, the first compressions
        out.setdefault("link per charger", []).append(per_charger(stamps, ends[0]))
        out.setdefault("link burst cpu", []).append((ends[1] - cpu0) / n)
        out.setdefault("link burst gc", []).append(ends[2] / n)
        out.setdefault("link answers cpu", []).append((time.thread_time() - cpu1) / n)
    for ws, _, station, _ in conns:
        ws.connection_lost(None)
    await asyncio.sleep(0)
    return out


def set_gc(compare: bool, trial: int) -> str:
    """With ``compare``, every other trial runs with the collector's own automatic passes instead of the
    central system's policy (:class:`~csms.runtime.gcpolicy.FrozenHeap`: young passes from a timer, between
    turns of the event loop); the variant's name."""
    if not compare:
        return ""
    if trial % 2:
        gc.enable()
        GC.variant = " [automatic gc]"
    else:
        gc.disable()
        GC.variant = " [gc policy]"
    return GC.variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="chargers in the group")
    ap.add_argument("--trials", type=int, default=30, help="decisions (and baseline rounds) to time")
    ap.add_argument("--fleet", choices=("process", "inproc", "memory"), default="process")
    ap.add_argument("--no-compression", action="store_true", help="memory fleet: offer no permessage-deflate")
    ap.add_argument("--compare-automatic-gc", action="store_true",
                    help="every other decision with the collector's automatic passes instead of the GC policy")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})
    if args.fleet == "memory":
        out = asyncio.run(memory_run(args.count, args.trials, not args.no_compression))
    else:
        out = asyncio.run(run(args.count, args.trials, args.fleet, args.compare_automatic_gc))
    print(f"{args.count} chargers, {args.trials} trials, fleet {args.fleet}; µs per charger over the trials: "
          f"median (min)")
    for name, values in out.items():
        per = sorted(v * 1e6 for v in values)
        print(f"  {name:<32} {statistics.median(per):7.1f}  ({per[0]:.1f})")
    for variant, generations in GC.stats.items():
        print(f"garbage collections while timing{variant} (CPU): " + ", ".join(
            f"generation {g}: {n} in {seconds * 1e3:.0f} ms (longest {longest * 1e3:.1f}), {freed} objects freed"
            for g, (n, seconds, longest, freed) in enumerate(generations)))


if __name__ == "__main__":
    main()
