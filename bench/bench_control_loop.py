"""Control-loop latency: from a mains reading arriving to the last SetChargingProfile of that decision on the wire.

Run: ``python bench/bench_control_loop.py [--sizes 10,100,1000] [--trials 40] [--uvloop] [--ocpp-package]``.

The central system is the real :class:`csms.runtime.app.CentralSystemApp` (server, storage, balancer, delivery)
in this process, pinned to one core. The chargers are light-weight raw OCPP 1.6J websocket clients (the load
generator's, `bench/loadgen.py`; `--fleet-kind websockets`: on the `websockets` client) in a
separate process pinned to the other core: each connects with basic auth, boots, reports its connector,
starts a transaction, and answers every call from the central system (SetChargingProfile Accepted, TriggerMessage
Rejected), noting when each SetChargingProfile frame arrived: the lean fleet notes the kernel's receive time of
the bytes (``SO_TIMESTAMPING``, converted to ``time.perf_counter``'s CLOCK_MONOTONIC, which both processes
share), because one process handles 1,000 stations' frames one after the other where 1,000 chargers would each
have their own CPU: noted when this process got round to it, the last arrival was the fleet's own queue (the
``websockets`` fleet still notes when its Python read the frame). A trial hands in mains readings as the meter gateway does (``app._on_reading``), one every
``READING_INTERVAL``, until a balancer run decides the trial's limit; it ends when every charger has accepted
that limit. Its latency is the arrival of the last SetChargingProfile carrying the limit minus the moment the
reading behind that decision arrived. The readings alternate so every charger's limit moves each time, down then
up (decreases go out at once; increases pass the break-before-make gate). An increase is decided a few readings
after the other load fell (the balancer's peak hold, a control choice this benchmark does not time): the
"readings" column says how many it took. "decided" is when that run's decision reached the delivery and "first"
when the first charger's profile arrived, both from the reading (medians): the rest of the latency is the
delivery's burst and the sends.

One group of N one-phase chargers spread over the three phases, wired before the meter's clamps
(``chargers_in_measurement = false``), with a supply sized so that the reading's other load moves each
charger's share between 10 and 11 A (1,000 chargers need a 3,724 A supply).

Baseline in the same run: the same N profiles sent straight through the stations' links all at once,
without balancer or delivery - the cost of the OCPP path alone - once after every trial. "ratio" is the
latency's median over the baseline's; "paired" divides each trial's latency by the baseline measured right
after it: a shared machine's speed drifts by half over seconds (the same code, the same work), and a trial and
its neighbour run at the same speed, so the paired ratio says what the product adds to the bare path whatever
the machine's moment, and compares two versions of the code run at different times.

``--ocpp-package`` also times, after every trial, the path issue 14 stated its target against: a central system
on the `ocpp` package (``ChargePoint.call`` over a ``websockets`` server, validation as shipped) sending the same
profiles to a second fleet (:mod:`bench.ocpp_package_path`), and prints the product's p99 over that path's p50
beside the issue's ratio (50 ms when that path took 185 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ocpp_package_path import TARGET_RATIO  # noqa: E402

PASSWORD = "0123456789abcdef"
METER = "AG1234567G"
ROTATIONS = ("RST", "SRT", "TRS")  # a one-phase charger's L1 on building L1, L2, L3
LIMITS = (10.0, 11.0)  # A per charger in the two alternating decisions
READING_INTERVAL = 0.2  # s between two mains readings handed in while a trial waits for its decision
#: A of other load left when every charger draws the higher limit (the clamp reads at most 400 A).
HEADROOM = 50.0


# ---- the charger fleet (a separate process) -------------------------------------------------------

GET_CONFIGURATION = {"configurationKey": [
    {"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "8"},
    {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current"},
    {"key": "ChargingScheduleMaxPeriods", "readonly": True, "value": "24"},
    {"key": "MaxChargingProfilesInstalled", "readonly": True, "value": "16"},
    {"key": "MeterValuesSampledData", "readonly": False, "value": "Energy.Active.Import.Register"},
    {"key": "MeterValueSampleInterval", "readonly": False, "value": "0"}]}
ANSWERS = {"GetConfiguration": GET_CONFIGURATION, "ChangeConfiguration": {"status": "Accepted"},
           "SetChargingProfile": {"status": "Accepted"}, "ClearChargingProfile": {"status": "Accepted"},
           "ChangeAvailability": {"status": "Accepted"}, "GetCompositeSchedule": {"status": "Rejected"},
           "TriggerMessage": {"status": "Rejected"}}


class RawStation:
    """A 1.6J station reduced to what the control loop needs; answers every call at once."""

    def __init__(self, sid: str, received: list):
        self.sid, self.received = sid, received
        self.ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future] = {}
        self.ws = None

    async def call(self, action: str, payload: dict) -> dict:
        uid = f"{self.sid}-{next(self.ids)}"
        fut = asyncio.get_running_loop().create_future()
        self.pending[uid] = fut
        await self.ws.send(json.dumps([2, uid, action, payload]))
        async with asyncio.timeout(60):
            return await fut

    async def reader(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame[0] == 2:
                _, uid, action, payload = frame
                if action == "SetChargingProfile":
                    period = payload["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"][0]
                    self.received.append((time.perf_counter(), self.sid, period["limit"]))
                answer = ANSWERS.get(action)
                reply = [3, uid, answer] if answer is not None else [4, uid, "NotImplemented", action, {}]
                await self.ws.send(json.dumps(reply))
            else:
                fut = self.pending.pop(frame[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(frame[2] if frame[0] == 3 else {"error": frame[2:]})

    async def run(self, url: str, booted: asyncio.Event) -> None:
        from websockets.asyncio.client import connect

        auth = base64.b64encode(f"{self.sid}:{PASSWORD}".encode()).decode()
        async with connect(f"{url}/{self.sid}", subprotocols=["ocpp1.6"], open_timeout=120, ping_interval=None,
                           additional_headers={"Authorization": f"Basic {auth}"}, max_queue=None) as ws:
            self.ws = ws
            reader = asyncio.create_task(self.reader())
            try:
                boot = await self.call("BootNotification", {"chargePointVendor": "Bench", "chargePointModel": "Raw"})
                assert boot.get("status") == "Accepted", f"{self.sid}: boot {boot}"
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                for cid, status in ((0, "Available"), (1, "Preparing")):
                    await self.call("StatusNotification",
                                    {"connectorId": cid, "errorCode": "NoError", "status": status})
                tx = await self.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": 0,
                                                          "timestamp": now})
                assert tx.get("idTagInfo", {}).get("status") == "Accepted", f"{self.sid}: start {tx}"
                await self.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"})
                booted.set()
                await reader
            finally:
                reader.cancel()


async def fleet_main(url: str, count: int, kind: str = "lean") -> None:
    """Connects ``count`` stations, prints READY, then on each stdin line DUMP prints the SetChargingProfile
    arrivals since the last DUMP as one JSON line; exits on QUIT or end of input.

    ``kind`` "lean": the load generator's stations (``bench/loadgen.py``: a raw asyncio protocol each, orjson,
    permessage-deflate offered), which note a frame's arrival a few µs after the kernel hands it over, so the
    last arrival is the server's doing. "websockets": stations on the ``websockets`` client, which take about
    80 µs of this process's one core per profile (inflate, parse, answer): 1,000 profiles queue up here for
    80 ms whatever the server does."""
    received: list = []
    tasks = []
    lean = None
    if kind == "lean":
        from urllib.parse import urlparse

        from bench import loadgen

        where = urlparse(url)
        ids = [f"CP{i:05d}" for i in range(count)]
        lean = await loadgen.connect_fleet(where.hostname, where.port, ids, "ocpp1.6", prefix=where.path,
                                           passwords={sid: PASSWORD for sid in ids}, concurrency=50,
                                           timeout=300, deflate=True)
        await loadgen.start_charging(lean, concurrency=50)
        lean.stats.profiles = received
        loadgen.read_with_kernel_timestamps(lean)
        lean.stats.refuse = frozenset(action for action, answer in ANSWERS.items() if answer == {"status": "Rejected"})
    else:
        stations = [RawStation(f"CP{i:05d}", received) for i in range(count)]
        booted = [asyncio.Event() for _ in stations]
        for i in range(0, count, 50):  # connect in waves, as a real site's chargers would not all at once
            tasks += [asyncio.create_task(s.run(url, b)) for s, b in zip(stations[i:i + 50], booted[i:i + 50])]
            await asyncio.gather(*(b.wait() for b in booted[i:i + 50]))
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if line == "DUMP":
            batch, received[:] = list(received), []
            print(json.dumps(batch), flush=True)
        elif line in ("QUIT", ""):
            break
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if lean is not None:
        lean.close()


# ---- the central system and the trials -----------------------------------------------------------

def per_phase(n: int) -> list[int]:
    return [sum(1 for i in range(n) if "RST".index(ROTATIONS[i % 3][0]) == p) for p in range(3)]


def supply(n: int) -> float:
    return max(per_phase(n)) * LIMITS[1] + HEADROOM


def site_config(n: int, db: str):
    from csms.config import parse_config

    amps = supply(n)
    chargers = [{"id": f"CP{i:05d}", "password": PASSWORD, "organisation": "org", "phases": 1,
                 "phase_rotation": ROTATIONS[i % 3], "max_current": 32, "offline_current": 6,
                 "offline_phase": "RST".index(ROTATIONS[i % 3][0]) + 1} for i in range(n)]
    return parse_config({
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1, "call_timeout": 60,
                   "rate_limit": 1000, "rate_burst": 1000},
        "storage": {"database": db},
        "smart_charging": {"failsafe_ttl": 3600, "meter_value_interval": 900, "deadband": 0, "increase_interval": 0,
                           "ramp_time": 0, "confirm_with_composite": False},
        "organisations": [{"id": "org", "name": "Bench"}],
        "meters": [{"serial": METER, "pin": "12345678", "organisation": "org", "variant": "public",
                    "port": 1502, "stale_after": 3600}],
        "chargers": chargers,
        "load_balancers": [{"id": "g", "name": "Bench", "organisation": "org", "meter": METER,
                            "chargers": [c["id"] for c in chargers], "supply_max_current": amps, "margin": 0,
                            "chargers_in_measurement": False, "max_current_online": amps,
                            "max_current_offline": amps / 2, "stale_after": 3600}],
    }, "bench")


def reading_for(n: int, limit: float):
    """A mains reading whose other load leaves exactly ``limit`` A for each charger on its phase."""
    from meter_gateway.reading import MeterReading

    current = tuple(supply(n) - k * limit for k in per_phase(n))
    now = time.time()
    return MeterReading(METER, now, now, current)  # type: ignore[arg-type]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


class Fleet:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    @classmethod
    async def start(cls, port: int, n: int, kind: str, cpu: int | None) -> "Fleet":
        """``n`` stations of ``kind`` connecting to ``ws://127.0.0.1:port/ocpp`` from a child process on ``cpu``."""
        cmd = [sys.executable, __file__, "--fleet", f"ws://127.0.0.1:{port}/ocpp", "--count", str(n),
               "--fleet-kind", kind]
        if cpu is not None:
            cmd += ["--cpu", str(cpu)]
        return cls(await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE, limit=2 ** 26))

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(Exception):
            self.proc.stdin.write(b"QUIT\n")
            await self.proc.stdin.drain()
        try:
            async with asyncio.timeout(30):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def line(self, timeout: float = 600) -> str:
        async with asyncio.timeout(timeout):
            raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"the charger fleet exited ({await self.proc.wait()})")
        return raw.decode().strip()

    async def dump(self) -> list:
        self.proc.stdin.write(b"DUMP\n")
        await self.proc.stdin.drain()
        return json.loads(await self.line(30))


async def settled(app, target: float | None, timeout: float = 120) -> None:
    """Until every channel has accepted the balancer's newest limit (``target`` if given)."""
    async with asyncio.timeout(timeout):
        while True:
            channels = app.delivery.channels.values()
            if all(ch.wanted is not None and ch.in_force == ch.wanted and (target is None or ch.wanted == target)
                   for ch in channels):
                return
            await asyncio.sleep(0.01)  # a coarse poll: the latency is the fleet's arrival times, not this return


async def decided(app, decisions: list, n: int, target: float) -> tuple[float, float, int]:
    """Hands in mains readings, one every ``READING_INTERVAL`` as a meter sends them, until a balancer run
    decides ``target`` for every charger; returns when the reading behind that run arrived, when the run's
    decision reached the delivery, and how many readings it took. A fall of the other load (a rise of the chargers' share) is trusted only after a few
    readings (the balancer's peak hold), so an increase is decided on a later reading than a decrease."""
    for count in range(1, 100):
        seen = len(decisions)
        reading = reading_for(n, target)  # built first: the benchmark's own arithmetic is not the product's time
        t_reading = time.perf_counter()
        app._on_reading(reading)
        async with asyncio.timeout(30):
            while len(decisions) == seen:
                await asyncio.sleep(0.002)  # the decision's time is noted by ``record``, not by this poll
        at, decision = decisions[-1]
        if all(abs(lim.limit - target) < 0.05 for lim in decision.limits.values()):
            return t_reading, at, count
        await asyncio.sleep(READING_INTERVAL)
    raise AssertionError(f"no decision for {target} A after 99 readings")


async def run_size(n: int, trials: int, server_cpu: int | None, fleet_cpu: int | None,
                   fleet_kind: str = "lean", ocpp_package: bool = False) -> dict:
    from csms.runtime.app import CentralSystemApp
    from csms.runtime.gcpolicy import FrozenHeap
    from csms.domain.link import ProfileSpec, Purpose
    from csms.ocpp.schemas import preload
    from bench.ocpp_package_path import PackageServer

    preload()  # as ``csms serve`` does, which also logs at INFO (here to a file, as a service's journal would)
    logging.basicConfig(level=logging.INFO, filename=os.path.join(tempfile.gettempdir(), "bench-control-loop.log"),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", force=True)
    for quiet in ("websockets", "ocpp"):
        logging.getLogger(quiet).setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        app = CentralSystemApp(site_config(n, f"{tmp}/csms.sqlite"))

        # No meter source: readings are handed in by the benchmark, as the gateway would.
        app._meter_source = lambda cfg: None  # type: ignore[method-assign]
        decisions: list[tuple[float, object]] = []
        store = app.record_decision

        def record(decision) -> None:  # the balancer's DecisionStore is the app: each run's decision passes here
            decisions.append((time.perf_counter(), decision))
            store(decision)
        app.record_decision = record  # type: ignore[method-assign]
        stack = contextlib.AsyncExitStack()
        via_package: dict[bool, list[float]] = {False: [], True: []}
        async with FrozenHeap(), app:  # the garbage-collector policy of ``csms serve``
            fleet = await Fleet.start(app.port, n, fleet_kind, fleet_cpu)
            package = package_fleet = None
            try:
                t_connect = time.perf_counter()
                assert await fleet.line() == "READY"
                connect_s = time.perf_counter() - t_connect
                if ocpp_package:
                    package = await stack.enter_async_context(PackageServer())
                    package_fleet = await Fleet.start(package.port, n, fleet_kind, fleet_cpu)
                    assert await package_fleet.line() == "READY"
                app._on_reading(reading_for(n, LIMITS[0]))
                await settled(app, LIMITS[0])
                await asyncio.sleep(0.2)
                await fleet.dump()
                latencies: dict[str, list[float]] = {"decrease": [], "increase": []}
                parts: dict[str, list[tuple[float, float]]] = {"decrease": [], "increase": []}
                paired: dict[str, list[float]] = {"decrease": [], "increase": []}
                waits: list[int] = []
                base: list[float] = []
                links = [(ch, app.delivery.workers[ch.id].link) for ch in app.delivery.channels.values()]

                async def baseline(limit: float) -> float:
                    """The same profiles straight through the links, no balancer, no delivery: the OCPP path's
                    own cost, measured beside each trial (a shared machine's speed drifts over seconds)."""
                    now = time.time()
                    t0 = time.perf_counter()
                    await asyncio.gather(*(link.set_profile(ProfileSpec(
                        10, 8, Purpose.TX, 1, limit, "A", 1,
                        transaction_id=app.state.station(ch.id).transactions[1].transaction_id,
                        start_schedule=now - 30, duration=3630, valid_to=now + 3600)) for ch, link in links))
                    arrivals = [t for t, _, lim in await fleet.dump() if abs(lim - limit) < 0.05]
                    assert len(arrivals) >= n, f"{n - len(arrivals)} chargers did not receive {limit} A"
                    return max(arrivals) - t0

                for k in range(trials):
                    target = LIMITS[(k + 1) % 2]
                    t0, t_decided, readings = await decided(app, decisions, n, target)
                    waits.append(readings)
                    await settled(app, target)
                    arrivals = [t for t, _, lim in await fleet.dump() if abs(lim - target) < 0.05]
                    assert len(arrivals) >= n, f"{n - len(arrivals)} chargers did not receive {target} A"
                    kind = "increase" if target > LIMITS[(k % 2)] else "decrease"
                    latencies[kind].append(max(arrivals) - t0)
                    parts[kind].append((t_decided - t0, min(arrivals) - t0))
                    await asyncio.sleep(READING_INTERVAL)
                    base.append(await baseline(20.0 + k % 2))
                    paired[kind].append(latencies[kind][-1] / base[-1])
                    await asyncio.sleep(READING_INTERVAL)
                    for validate in ((False, True) if package is not None else ()):
                        limit = (40.0 if validate else 30.0) + k % 2
                        t_sent = await package.send_profiles(limit, validate)
                        arrivals = [t for t, _, lim in await package_fleet.dump() if abs(lim - limit) < 0.05]
                        assert len(arrivals) >= n, f"{n - len(arrivals)} chargers did not receive {limit} A"
                        via_package[validate].append(max(arrivals) - t_sent)
                        await asyncio.sleep(READING_INTERVAL)
            finally:
                for f in (fleet, package_fleet):
                    if f is not None:
                        await f.stop()
                await stack.aclose()
    return {"n": n, "connect_s": connect_s, **latencies, "parts": parts, "baseline": base, "paired": paired,
            "readings": waits, "package": via_package}


def machine() -> str:
    cpu = ""
    if Path("/proc/cpuinfo").exists():
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    return (f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}; "
            f"{platform.system()} {platform.release()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000", help="chargers per group, comma-separated")
    ap.add_argument("--trials", type=int, default=40, help="decisions per size (half decreases, half increases)")
    ap.add_argument("--fleet", metavar="URL", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--fleet-kind", choices=("lean", "websockets"), default="lean",
                    help="the chargers: raw asyncio stations (lean) or on the websockets client, whose own "
                         "per-profile work queues up at 1,000 chargers")
    ap.add_argument("--ocpp-package", action="store_true",
                    help="also time the `ocpp` package's own call path for the same profiles after every trial "
                         "(issue 14's yardstick, bench/ocpp_package_path.py), on a second fleet")
    ap.add_argument("--uvloop", action="store_true",
                    help="the central system on uvloop, as `csms serve --uvloop` runs (the fleet stays on asyncio)")
    args = ap.parse_args()
    if args.fleet:
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        asyncio.run(fleet_main(args.fleet, args.count, args.fleet_kind))
        return

    import logging

    logging.basicConfig(level=logging.ERROR)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, fleet_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    if server_cpu is not None:
        os.sched_setaffinity(0, {server_cpu})
    print(f"machine: {machine()}")
    print(f"central system on CPU {server_cpu}, charger fleet on CPU {fleet_cpu} "
          f"(other processes on the machine are not excluded)"
          f"{'; central system on uvloop' if args.uvloop else ''}")
    print(f"{'chargers':>8} {'connect s':>9} {'kind':>9} {'n':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
          f" {'decided p50':>11} {'first p50':>9} {'baseline p50':>12} {'ratio':>6} {'paired p50':>10}"
          f" {'paired p99':>10} {'readings':>8}")
    run = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run
    for n in (int(x) for x in args.sizes.split(",")):
        r = run(run_size(n, args.trials, server_cpu, fleet_cpu, args.fleet_kind, args.ocpp_package))
        base50 = statistics.median(r["baseline"]) * 1000
        for kind in ("decrease", "increase"):
            vals = r[kind]
            p50 = percentile(vals, 0.5) * 1000
            decided50 = statistics.median(d for d, _ in r["parts"][kind]) * 1000
            first50 = statistics.median(f for _, f in r["parts"][kind]) * 1000
            print(f"{n:>8} {r['connect_s']:>9.1f} {kind:>9} {len(vals):>4} {p50:>8.1f} "
                  f"{percentile(vals, 0.99) * 1000:>8.1f} {max(vals) * 1000:>8.1f} {decided50:>11.1f} "
                  f"{first50:>9.1f} {base50:>12.1f} "
                  f"{p50 / base50:>6.2f} {percentile(r['paired'][kind], 0.5):>10.2f} "
                  f"{percentile(r['paired'][kind], 0.99):>10.2f} {max(r['readings']):>8}")
        for validate, times in r["package"].items():
            if not times:
                continue
            pkg50 = statistics.median(times) * 1000
            print(f"{n:>8} the `ocpp` package's call path, {'validating' if validate else 'not validating'}, for "
                  f"the same {n} profiles: p50 {pkg50:.1f} ms (p99 {percentile(times, 0.99) * 1000:.1f}); the "
                  "product's p99 over it: " + ", ".join(f"{kind} {percentile(r[kind], 0.99) * 1000 / pkg50:.2f}"
                                                         for kind in ("decrease", "increase"))
                  + f" (issue 14's target: {TARGET_RATIO:.2f}, 50 ms when that path took 185)")


if __name__ == "__main__":
    main()
