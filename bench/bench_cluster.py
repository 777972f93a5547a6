"""Issue 17's scale target: stations over several gateway processes and a controller, beside one process.

Two parts, each run on the scaled-out form (``csms serve --role gateway`` x G, ``--role controller`` x C, one
mosquitto, one PostgreSQL) and on one ``csms serve --role all`` process, in the same run:

* **Scale**: N stations (default 20,000; OCPP 2.0.1, basic auth, in load-balancing groups of 50 as in
  ``bench_scale.py``) connect, spread evenly over the gateways' ports, and boot; the central system sets each up
  (the controller through the bus); then every station sends one CALL every N / rate seconds (Heartbeat and
  per-phase MeterValues alternating, default 2,000 msg/s in total), open loop, and the round trips of the
  measured window are merged over the load generators (``bench/loadgen.py`` worker processes). Reported: the
  sustained rate, p50 / p99 / max round trip, each process's CPU (cores) over the window and its peak RSS.
* **Control loop latency**: one group of M one-phase OCPP 1.6 chargers (default 100), each in a transaction,
  spread over the gateways; a mains reading is published on the broker as ``meter-gateway run`` publishes it
  (``[gateway] mode = "mqtt"``), raising the other load so every charger's limit falls from 11 to 10 A (a
  decrease is decided on that reading, with no peak hold); the figure is the arrival of the last
  SetChargingProfile carrying 10 A at a charger minus the moment the reading was published (both stamped with
  ``time.perf_counter``, CLOCK_MONOTONIC, shared by the processes). Between trials the limit is raised back
  (several readings: increases wait for the balancer's peak hold; not timed).

Everything runs on 127.0.0.1: its own PostgreSQL (``tests/support/postgres.py``: a private ``initdb`` cluster,
fsync off) and its own mosquitto (``set_tcp_nodelay true``, ``max_queued_messages`` above the station count; see
``BROKER_CONFIG``), a fresh database per form and part. Nothing is pinned to a CPU: every process shares the
machine's cores. The run is bounded (``--time-limit``), and every process it started is stopped (SIGTERM, then
SIGKILL) however it ends; the nodes also die with it (PR_SET_PDEATHSIG).

A process may open at most RLIMIT_NOFILE sockets: a one-process central system holds at most that many stations
less a margin, and when ``--stations`` is more, the one-process run gets that many and the same total rate (its
line says so). The load generators split the stations so that each stays under the limit.

    python bench/bench_cluster.py                                 # 20,000 stations, 4 gateways (~15 minutes)
    python bench/bench_cluster.py --stations 2000 --gateways 2 --duration 10 --chargers 20 --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiomqtt  # noqa: E402
import psycopg  # noqa: E402
import tomli_w  # noqa: E402

from bench.loadgen import WorkerProcess  # noqa: E402
from simulators.ports import free_port  # noqa: E402
from tests.support.mosquitto import MOSQUITTO, Mosquitto  # noqa: E402
from tests.support.postgres import PostgresCluster, unavailable_reason  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: What the broker needs for the bus (see the README's deployment notes): no Nagle delay on the broker's sockets
#: (without it a command and its reply each wait for the peer's delayed ACK: 48 ms per round trip instead of
#: 2 ms), and room to queue QoS 1 messages for a controller that falls behind (mosquitto's default of 1,000 drops
#: the rest, which the controller then only gets back from the gateways' periodic refresh).
BROKER_CONFIG = "set_tcp_nodelay true\nmax_queued_messages {queue}\n"
PASSWORD_FORMAT = "pw-{id}-0123456789"
GROUP_SIZE = 50
METER = "AG1234567G"
ROTATIONS = ("RST", "SRT", "TRS")
LIMITS = (10.0, 11.0)  # A per charger: the timed decrease goes from the second to the first
HEADROOM = 50.0
#: File descriptors a one-process central system needs besides its stations' sockets (listener, epoll, storage,
#: broker, logs, pipes), with room to spare.
FD_MARGIN = 150
#: Seconds without a call from the central system to any station after which the stations' set-up counts as done.
QUIET = 5.0


# ---- processes ----------------------------------------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the bench process dies, whatever kills it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def proc_cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid`` (``schedstat``: nanoseconds, where ``stat`` counts 10 ms ticks)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    except OSError:
        return 0.0
    return total / 1e9


def proc_status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_pss_kb(pid: int) -> int:
    """Proportional set size: shared pages (PostgreSQL's shared buffers) split between the processes mapping them."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry))
    return kids


@dataclass
class Node:
    """One ``csms serve`` process (any role), its output in a log file."""

    name: str
    role: str
    config: Path
    log: Path
    port: int | None = None
    proc: subprocess.Popen | None = None
    log_level: str = "warning"

    def start(self) -> None:
        argv = [sys.executable, "-X", "faulthandler", "-m", "csms.runtime.cli", "serve", "--config", str(self.config),
                "--role", self.role, "--node", self.name, "--log-level", self.log_level]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_die_with_parent)

    async def listening(self, timeout: float) -> None:
        assert self.proc is not None and self.port is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout:.0f} s: {self.tail()}")

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} is not running (exit {self.proc and self.proc.returncode}): {self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def problems(self) -> dict[str, int]:
        """Lines its log has at WARNING and at ERROR or above."""
        counts = {"warning": 0, "error": 0}
        try:
            for line in self.log.read_text(errors="replace").splitlines():
                if " WARNING " in line:
                    counts["warning"] += 1
                elif " ERROR " in line or " CRITICAL " in line:
                    counts["error"] += 1
        except OSError:
            pass
        return counts

    async def stop(self, timeout: float = 30) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)
                return -9
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Probe:
    """A set of processes (one node, the broker, PostgreSQL's, the load generators'): their CPU is read at each
    phase's start; their peak RSS (``VmHWM``, or PSS for PostgreSQL's, which share their buffers) at the end."""

    name: str
    pids: list[int]
    what: str = ""
    pss: bool = False

    def rss_mb(self) -> float:
        if self.pss:
            return sum(proc_pss_kb(p) for p in self.pids) / 1024
        return sum(proc_status_kb(p, "VmHWM") for p in self.pids) / 1024


def postgres_pids(pg: PostgresCluster) -> list[int]:
    try:
        master = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    return [master, *children_of(master)]


# ---- configs ------------------------------------------------------------------------------------------------

def scale_ids(n: int) -> list[str]:
    return [f"LG{i:05d}" for i in range(n)]


def base_config(url: str, mqtt_port: int) -> dict:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1, "rate_limit": 200, "rate_burst": 400},
        "storage": {"url": url},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 10},
        "organisations": [{"id": "bench", "name": "Bench"}],
    }


def scale_config(n: int, url: str, mqtt_port: int) -> dict:
    """``n`` chargers in load-balancing groups of 50 without a meter, as ``bench_scale.py``'s site."""
    ids = scale_ids(n)
    data = base_config(url, mqtt_port)
    data["chargers"] = [{"id": sid, "password": PASSWORD_FORMAT.format(id=sid), "organisation": "bench"}
                        for sid in ids]
    data["load_balancers"] = [{"id": f"g{g // GROUP_SIZE}", "name": f"Garage {g // GROUP_SIZE}",
                               "organisation": "bench", "chargers": ids[g:g + GROUP_SIZE],
                               "supply_max_current": 400, "max_current_online": 300, "max_current_offline": 100}
                              for g in range(0, n, GROUP_SIZE)]
    return data


def latency_ids(n: int) -> list[str]:
    return [f"CP{i:05d}" for i in range(n)]


def per_phase(n: int) -> list[int]:
    return [sum(1 for i in range(n) if "RST".index(ROTATIONS[i % 3][0]) == p) for p in range(3)]


def supply(n: int) -> float:
    return max(per_phase(n)) * LIMITS[1] + HEADROOM


def latency_config(n: int, url: str, mqtt_port: int) -> dict:
    """One group of ``n`` one-phase chargers over the three phases, its meter read from the broker: the site of
    ``bench_control_loop.py``, with the delivery's settings of that benchmark (no deadband, no ramp)."""
    amps = supply(n)
    data = base_config(url, mqtt_port)
    data["server"].update(call_timeout=60, rate_limit=1000, rate_burst=1000)
    data["gateway"] = {"mode": "mqtt"}
    data["smart_charging"] = {"failsafe_ttl": 3600, "meter_value_interval": 900, "deadband": 0,
                              "increase_interval": 0, "ramp_time": 0, "confirm_with_composite": False}
    data["meters"] = [{"serial": METER, "pin": "12345678", "organisation": "bench", "variant": "public",
                       "port": 1502, "stale_after": 3600}]
    data["chargers"] = [{"id": cid, "password": PASSWORD_FORMAT.format(id=cid), "organisation": "bench",
                         "phases": 1, "phase_rotation": ROTATIONS[i % 3], "max_current": 32, "offline_current": 6,
                         "offline_phase": "RST".index(ROTATIONS[i % 3][0]) + 1}
                        for i, cid in enumerate(latency_ids(n))]
    data["load_balancers"] = [{"id": "lat", "name": "Latency", "organisation": "bench", "meter": METER,
                               "chargers": latency_ids(n), "supply_max_current": amps, "margin": 0,
                               "chargers_in_measurement": False, "max_current_online": amps,
                               "max_current_offline": amps / 2, "stale_after": 3600}]
    return data


def reading_payload(n: int, limit: float) -> bytes:
    """A mains reading (as ``meter-gateway run`` publishes it) whose other load leaves ``limit`` A per charger."""
    current = [round(supply(n) - k * limit, 3) for k in per_phase(n)]
    now = time.time()
    return json.dumps({"serial": METER, "taken_at": now, "received_at": now, "current": current,
                       "voltage": [230.0, 230.0, 230.0], "power": None, "flags": []}).encode()


# ---- one form of the central system, running -----------------------------------------------------------------

@dataclass
class Form:
    """The processes of one form: gateways and controllers, or one ``--role all`` process."""

    label: str
    nodes: list[Node]
    ports: list[int]
    url: str
    groups: int
    controllers: list[str] = field(default_factory=list)

    @property
    def station_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.role in ("gateway", "all")]


async def start_form(tmp: Path, pg: PostgresCluster, db: str, data: dict, *, scaled_out: bool, gateways: int,
                     controllers: int, groups: int, timeout: float, log_level: str = "warning") -> Form:
    pg.create_database(db)
    url = f"postgresql://{pg.user}@{pg.host}:{pg.port}/{db}"
    data = {**data, "storage": {"url": url}}
    config = tmp / f"{db}.toml"
    config.write_text(tomli_w.dumps(data))
    if scaled_out:
        nodes = [Node(f"gw{i + 1}", "gateway", config, tmp / f"{db}-gw{i + 1}.log", free_port())
                 for i in range(gateways)]
        nodes += [Node(f"c{i + 1}", "controller", config, tmp / f"{db}-c{i + 1}.log") for i in range(controllers)]
        label = f"scaled out: {gateways} gateway{'s' * (gateways > 1)} + {controllers} controller" \
                f"{'s' * (controllers > 1)}"
    else:
        nodes = [Node("one", "all", config, tmp / f"{db}-one.log", free_port())]
        label = "one process (--role all)"
    form = Form(label, nodes, [n.port for n in nodes if n.port is not None], url, groups,
                [n.name for n in nodes if n.role == "controller"])
    for node in nodes:
        node.log_level = log_level
        node.start()
    for node in form.station_nodes:
        await node.listening(timeout)
    if form.controllers:
        await leading(form, timeout)
    return form


async def leading(form: Form, timeout: float) -> None:
    """Until the controllers hold a live lease of every group (the ungrouped lease too, when there is one)."""
    deadline = time.monotonic() + timeout
    held = 0
    while time.monotonic() < deadline:
        for node in form.nodes:
            node.check()
        with contextlib.suppress(psycopg.Error):
            async with await psycopg.AsyncConnection.connect(form.url, connect_timeout=5) as db:
                cur = await db.execute("SELECT count(*) FROM group_leases WHERE expires_at > "
                                       "extract(epoch from now())")
                held = (await cur.fetchone())[0]
            if held >= form.groups:
                return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the controllers lead {held} of {form.groups} groups after {timeout:.0f} s")


async def stop_form(form: Form) -> dict[str, int | None]:
    codes = {}
    for node in sorted(form.nodes, key=lambda n: n.role != "controller"):  # controllers first, as an operator would
        codes[node.name] = await node.stop()
    return codes


def kill_form(form: Form | None) -> None:
    if form is not None:
        for node in form.nodes:
            node.kill()


async def start_workers(tmp: Path, name: str, ids: list[str], ports: list[int], version: str,
                        count: int) -> list[WorkerProcess]:
    per = math.ceil(len(ids) / count)
    workers = [WorkerProcess({"host": "127.0.0.1", "ports": ports, "ids": ids[k * per:(k + 1) * per],
                              "version": version, "password": PASSWORD_FORMAT}, tmp / f"{name}-loadgen{k}.log")
               for k in range(count) if ids[k * per:(k + 1) * per]]
    for w in workers:
        await w.start()
    return workers


async def stop_workers(workers: list[WorkerProcess]) -> None:
    await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


async def all_of(workers: list[WorkerProcess], op: str, within: float, **args: object) -> list[dict]:
    return list(await asyncio.gather(*(w.request(op, within, **args) for w in workers)))


# ---- the scale part ------------------------------------------------------------------------------------------

class Timeline:
    """Every second: the phase, the load average, and each process's CPU (cores, over that second) and RSS."""

    def __init__(self, procs: dict[str, list[int]]):
        self.procs = procs
        self.phase = "start"
        self.rows: list[dict] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        t0 = time.monotonic()
        last = {name: sum(proc_cpu_seconds(p) for p in pids) for name, pids in self.procs.items()}
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            row: dict = {"t": round(now - t0, 1), "at": round(now, 3), "phase": self.phase,
                         "load1": float(Path("/proc/loadavg").read_text().split()[0])}
            for name, pids in self.procs.items():
                cpu = sum(proc_cpu_seconds(p) for p in pids)
                row[f"{name}_cpu"] = round(cpu - last[name], 2)
                row[f"{name}_rss_mb"] = round(sum(proc_status_kb(p, "VmRSS") for p in pids) / 1024)
                last[name] = cpu
            self.rows.append(row)

    def add_round_trips(self, answered: list[tuple[float, float]]) -> None:
        """Each row's round trips answered in the second before it (``time.perf_counter``, the same clock as
        ``time.monotonic`` on Linux): count, p50 and p99 in ms."""
        answered = sorted(answered)
        i = 0
        for row in self.rows:
            window = []
            while i < len(answered) and answered[i][0] <= row["at"]:
                if answered[i][0] > row["at"] - 1.0:
                    window.append(answered[i][1])
                i += 1
            window.sort()
            row.update(answered=len(window), rtt_p50_ms=round(percentile(window, 0.5), 1) if window else "",
                       rtt_p99_ms=round(percentile(window, 0.99), 1) if window else "")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def write(self, path: Path) -> None:
        if self.rows:
            keys = list(dict.fromkeys(k for r in self.rows for k in r))
            lines = [",".join(keys)] + [",".join(str(r.get(k, "")) for k in keys) for r in self.rows]
            with path.open("a") as f:
                f.write("\n".join(lines) + "\n")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


#: What the nodes' logs say that the figures alone do not (counted over every node of a form).
LOG_SIGNS = {
    "leases lost": "the lease was not renewed before its local deadline",  # the manager's line and the role's: /2
    "commands not sent (lease lapsed)": "not sent: this controller does not lead group",
    "set up without a boot seen": "no BootNotification nor any other message",
    "capabilities unread": "could not read the charger's capabilities",
    "fallback refused": "charger refused every offline fallback profile",
    "fallback unanswered": "no answer to the offline fallback profile",
    "set-ups completed on a retry": "set-up completed on retry",
}


def log_signs(nodes: list[Node]) -> dict[str, int]:
    counts = dict.fromkeys(LOG_SIGNS, 0)
    for node in nodes:
        try:
            text = node.log.read_text(errors="replace")
        except OSError:
            continue
        for name, needle in LOG_SIGNS.items():
            counts[name] += text.count(needle)
    counts["leases lost"] //= 2
    return counts


def psi_cpu() -> str:
    """The kernel's CPU pressure: the share of time some runnable task waited for a CPU (10 s / 60 s / 300 s)."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        return "CPU pressure " + " ".join(f"{kv.split('=')[0]} {kv.split('=')[1]} %" for kv in some[1:4])
    except (OSError, IndexError):
        return "CPU pressure n/a"


async def scale_run(args: argparse.Namespace, tmp: Path, pg: PostgresCluster, broker: Mosquitto, *,
                    scaled_out: bool, stations: int) -> dict:
    interval = stations / args.rate
    db = f"scale_{'cluster' if scaled_out else 'one'}"
    groups = math.ceil(stations / GROUP_SIZE)
    form = workers = timeline = None
    result: dict = {"stations": stations, "interval_s": interval, "offered": args.rate, "pressure_before": psi_cpu()}
    try:
        form = await start_form(tmp, pg, db, scale_config(stations, "", broker.port), scaled_out=scaled_out,
                                gateways=args.gateways, controllers=args.controllers, groups=groups,
                                timeout=args.start_timeout, log_level=args.node_log_level)
        result["form"] = form.label
        count = max(args.loadgens, math.ceil(stations / (fd_limit() - 500)))
        workers = await start_workers(tmp, db, scale_ids(stations), form.ports, "ocpp2.0.1", count)
        probes = [Probe(n.name, [n.pid], n.role) for n in form.nodes]
        if scaled_out:
            probes.append(Probe("mosquitto", [broker._proc.pid], "broker"))  # type: ignore[union-attr]
        pids = postgres_pids(pg)
        probes += [Probe("PostgreSQL", pids, f"{len(pids)} processes, PSS", pss=True),
                   Probe("load generators", [w.pid for w in workers], f"{len(workers)} processes")]
        timeline = Timeline({p.name: p.pids for p in probes})
        timeline.start()
        marks: list[tuple[str, float, dict[str, float]]] = []

        def mark(phase: str) -> None:
            timeline.phase = phase
            marks.append((phase, time.perf_counter(), {p.name: sum(proc_cpu_seconds(x) for x in p.pids)
                                                       for p in probes}))

        mark("connect")
        connected = await all_of(workers, "connect", args.phase_timeout, concurrency=max(50, 500 // len(workers)),
                                 timeout=args.phase_timeout)
        assert sum(c["stations"] for c in connected) == stations
        # The central system's set-up of each station (configuration, fallback profile): done when it has sent
        # the stations nothing for QUIET s (through the bus this comes from the controller).
        mark("set-up")
        settled = await all_of(workers, "settle", args.phase_timeout + 30, quiet=QUIET, limit=args.phase_timeout)
        result["setup_calls"] = sum(s["server_calls"] for s in settled)
        for node in form.nodes:
            node.check()
        mark("steady")
        start_at = time.monotonic() + 1.0
        runs = await all_of(workers, "steady", args.warmup + args.duration + 120, interval=interval,
                            warmup=args.warmup, duration=args.duration, start_at=start_at)
        mark("end")
        spans = {a[0]: (b[1] - a[1], {k: b[2][k] - a[2][k] for k in a[2]}) for a, b in zip(marks, marks[1:])}
        result["connect_s"] = spans["connect"][0]
        result["setup_s"] = spans["set-up"][0] - QUIET
        rtts = sorted(r for run in runs for r in run["rtts_ms"])
        seconds = max(run["summary"]["seconds"] for run in runs)
        steady_wall = spans["steady"][0]
        result.update(
            rate=len(rtts) / seconds, p50_ms=percentile(rtts, 0.50), p99_ms=percentile(rtts, 0.99),
            max_ms=rtts[-1] if rtts else float("nan"), errors=sum(run["summary"]["errors"] for run in runs),
            # Calls the central system still made to the stations while they were measured (set-up not done).
            calls_while_measured=sum(run["summary"]["server_calls"] for run in runs) - result["setup_calls"],
            processes=[{"name": p.name, "what": p.what, "connect_cpu_s": spans["connect"][1][p.name],
                        "setup_cpu_s": spans["set-up"][1][p.name], "cpu": spans["steady"][1][p.name] / steady_wall,
                        "rss_mb": p.rss_mb()} for p in probes],
            pressure_after=psi_cpu())
        for proc in result["processes"]:
            node = next((n for n in form.nodes if n.name == proc["name"]), None)
            if node is not None and node.role in ("gateway", "all"):
                proc["what"] += f", {stations // len(form.station_nodes)} stations"
        await timeline.stop()
        timeline.add_round_trips([(t, r) for run in runs for t, r in zip(run["answered_at"], run["rtts_ms"])])
        if args.timeline:
            timeline.write(Path(args.timeline))
        result["timeline"] = timeline.rows
        await stop_workers(workers)
        workers = None
        result["log_problems"] = {n.name: n.problems() for n in form.nodes}
        result["log_signs"] = log_signs(form.nodes)
        result["lease_losses"] = result["log_signs"]["leases lost"]
        result["exit_codes"] = await stop_form(form)
        form = None
        return result
    finally:
        if timeline is not None:
            await timeline.stop()
        if workers:
            await stop_workers(workers)
        if form is not None:
            with contextlib.suppress(Exception):
                await stop_form(form)
            kill_form(form)


# ---- the latency part ----------------------------------------------------------------------------------------

class Arrivals:
    """The SetChargingProfile arrivals at the chargers, collected from the load generators."""

    def __init__(self, workers: list[WorkerProcess]):
        self.workers = workers
        self.seen: list[tuple[float, str, float]] = []

    async def poll(self) -> None:
        for reply in await all_of(self.workers, "profiles", 30):
            self.seen.extend(tuple(p) for p in reply["profiles"])  # type: ignore[misc]

    async def until_all(self, ids: set[str], limit: float, since: float, timeout: float,
                        nudge=None) -> float:  # type: ignore[no-untyped-def]
        """Waits until every charger in ``ids`` received ``limit`` after ``since``; returns the last arrival.
        ``nudge()`` (e.g. another reading) runs every 0.2 s meanwhile, when given."""
        deadline = time.perf_counter() + timeout
        next_nudge = time.perf_counter() + 0.2
        while True:
            await self.poll()
            got = {sid: t for t, sid, lim in self.seen if t > since and abs(lim - limit) < 0.05}
            if ids <= set(got):
                return max(got[sid] for sid in ids)
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{len(ids - set(got))} of {len(ids)} chargers did not receive {limit} A within "
                                   f"{timeout:.0f} s")
            if nudge is not None and time.perf_counter() >= next_nudge:
                await nudge()
                next_nudge = time.perf_counter() + 0.2
            await asyncio.sleep(0.02)

    def forget(self) -> None:
        self.seen.clear()


class BusSpy:
    """When each command and each reply passed the broker (a subscriber of its own to ``<prefix>/cmd/#`` and
    ``<prefix>/res/#``, QoS 0): where a decision's time goes between the controller, the broker and the gateways."""

    def __init__(self, port: int):
        self.port = port
        self.seen: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, socket_options=NODELAY) as client:
            await client.subscribe([("csms/cmd/#", 0), ("csms/res/#", 0)])
            self.ready.set()
            async for msg in client.messages:
                self.seen.append((time.perf_counter(), msg.topic.value.split("/")[1]))

    async def __aenter__(self) -> BusSpy:
        self._task = asyncio.create_task(self._run())
        async with asyncio.timeout(10):
            await self.ready.wait()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await self._task

    def window(self, since: float) -> dict[str, float]:
        """ms after ``since``: the first and last command, the last reply (NaN when none)."""
        cmds = [t for t, kind in self.seen if t > since and kind == "cmd"]
        res = [t for t, kind in self.seen if t > since and kind == "res"]
        nan = float("nan")
        return {"first_cmd": (min(cmds) - since) * 1000 if cmds else nan,
                "last_cmd": (max(cmds) - since) * 1000 if cmds else nan,
                "last_res": (max(res) - since) * 1000 if res else nan, "commands": len(cmds)}


NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # as the bus's own clients


async def latency_run(args: argparse.Namespace, tmp: Path, pg: PostgresCluster, broker: Mosquitto, *,
                      scaled_out: bool, n: int) -> dict:
    db = f"latency_{n}_{'cluster' if scaled_out else 'one'}"
    form = workers = None
    try:
        form = await start_form(tmp, pg, db, latency_config(n, "", broker.port), scaled_out=scaled_out,
                                gateways=args.gateways, controllers=args.controllers, groups=1,
                                timeout=args.start_timeout, log_level=args.node_log_level)
        workers = await start_workers(tmp, db, latency_ids(n), form.ports, "ocpp1.6", 1)
        await all_of(workers, "connect", args.phase_timeout, concurrency=50, timeout=args.phase_timeout)
        await all_of(workers, "charge", args.phase_timeout)
        arrivals = Arrivals(workers)
        await arrivals.poll()  # starts the recording
        ids = set(latency_ids(n))
        latencies: list[float] = []
        cpu_ms: dict[str, list[float]] = {node.name: [] for node in form.nodes}
        hops: list[dict[str, float]] = []
        async with contextlib.AsyncExitStack() as stack:
            mqtt = await stack.enter_async_context(aiomqtt.Client("127.0.0.1", broker.port, socket_options=NODELAY))
            spy = await stack.enter_async_context(BusSpy(broker.port)) if scaled_out and not args.no_spy else None
            topic = f"csms/meters/{METER}/reading"

            async def publish(limit: float) -> float:
                payload = reading_payload(n, limit)  # built first: the bench's arithmetic is not the product's time
                t = time.perf_counter()
                await mqtt.publish(topic, payload, qos=0)
                return t

            def nudger(limit: float):  # type: ignore[no-untyped-def]
                async def nudge() -> None:
                    await publish(limit)
                return nudge

            # Every charger at the higher limit first (its set-up, then increases wait for the peak hold).
            t = await publish(LIMITS[1])
            await arrivals.until_all(ids, LIMITS[1], 0.0, args.phase_timeout, nudger(LIMITS[1]))
            for k in range(args.trials):
                # The TriggerMessage each acceptance asks for goes out 0.5 s later: past, before the clock starts.
                await asyncio.sleep(1.0)
                arrivals.forget()
                cpu0 = {node.name: proc_cpu_seconds(node.pid) for node in form.nodes}
                t = await publish(LIMITS[0])  # one reading: a decrease is decided on it
                last = await arrivals.until_all(ids, LIMITS[0], t, 30)
                latencies.append((last - t) * 1000)
                await asyncio.sleep(0.2)  # the replies' handling: part of the decision's cost
                for node in form.nodes:
                    cpu_ms[node.name].append((proc_cpu_seconds(node.pid) - cpu0[node.name]) * 1000)
                if spy is not None:
                    hops.append(spy.window(t))
                if k + 1 < args.trials:  # back up: readings every 0.2 s until the balancer trusts the fall
                    await asyncio.sleep(0.3)
                    t = await publish(LIMITS[1])
                    await arrivals.until_all(ids, LIMITS[1], t, 60, nudger(LIMITS[1]))
        await stop_workers(workers)
        workers = None
        codes = await stop_form(form)
        label = form.label
        form = None
        lat = sorted(latencies)

        def median(values: list[float]) -> float:
            return sorted(values)[len(values) // 2] if values else float("nan")
        return {"form": label, "chargers": n, "trials": len(lat), "p50_ms": percentile(lat, 0.5),
                "p99_ms": percentile(lat, 0.99), "max_ms": lat[-1], "min_ms": lat[0], "latencies_ms": latencies,
                "cpu_ms": {name: median(v) for name, v in cpu_ms.items()},
                "hops_ms": {key: median([h[key] for h in hops]) for key in hops[0]} if hops else {},
                "exit_codes": codes}
    finally:
        if workers:
            await stop_workers(workers)
        if form is not None:
            with contextlib.suppress(Exception):
                await stop_form(form)
            kill_form(form)


# ---- report --------------------------------------------------------------------------------------------------

def fd_limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mosq = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True)
    mosq_version = (mosq.stdout or mosq.stderr).splitlines()[0] if (mosq.stdout or mosq.stderr) else "mosquitto ?"
    return (f"{os.cpu_count()} cores ({cpu}), {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 2**30} GiB;"
            f" Python {platform.python_version()}; {platform.system()} {platform.release()}; {mosq_version}; "
            f"RLIMIT_NOFILE {fd_limit()}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def print_scale(results: list[dict]) -> None:
    print(f"\n{'form':42} {'stations':>8} {'connect s':>9} {'set-up s':>8} {'msg/s':>13} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'errors':>6} {'calls in':>8}")
    for r in results:
        print(f"{r['form']:42} {r['stations']:>8} {r['connect_s']:>9.1f} {r['setup_s']:>8.1f} "
              f"{r['rate']:>7.0f}/{r['offered']:<5.0f} {r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['max_ms']:>7.1f} "
              f"{r['errors']:>6} {r['calls_while_measured']:>8}")
    for r in results:
        print(f"\n{r['form']}, {r['stations']} stations: CPU per process (s during the connection and the set-up; "
              f"cores while measured) and peak RSS")
        print(f"  {'process':18} {'connect s':>9} {'set-up s':>9} {'cores':>6} {'peak RSS MB':>11}")
        for p in r["processes"]:
            print(f"  {p['name']:18} {p['connect_cpu_s']:>9.1f} {p['setup_cpu_s']:>9.1f} {p['cpu']:>6.2f} "
                  f"{p['rss_mb']:>11.0f}  {p['what']}")
        problems = ", ".join(f"{name} {c['warning']}/{c['error']}" for name, c in r["log_problems"].items())
        signs = ", ".join(f"{k} {v}" for k, v in r["log_signs"].items() if v) or "none"
        print(f"  log lines at WARNING/ERROR: {problems}; in them: {signs}; exit codes on SIGTERM: {r['exit_codes']}")
        print(f"  {r['pressure_before']} before, {r['pressure_after']} after")


def print_latency(results: list[dict]) -> None:
    print(f"\n{'form':42} {'chargers':>8} {'trials':>6} {'min ms':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for r in results:
        print(f"{r['form']:42} {r['chargers']:>8} {r['trials']:>6} {r['min_ms']:>7.1f} {r['p50_ms']:>7.1f} "
              f"{r['p99_ms']:>7.1f} {r['max_ms']:>7.1f}")
    for r in results:
        cpu = ", ".join(f"{name} {ms:.0f}" for name, ms in r["cpu_ms"].items())
        print(f"  {r['form']}: CPU per decision (median, ms): {cpu}")
        if r["hops_ms"]:
            h = r["hops_ms"]
            print(f"    on the broker (median, ms after the reading): first command {h['first_cmd']:.1f}, last command "
                  f"{h['last_cmd']:.1f}, last reply {h['last_res']:.1f} ({h['commands']:.0f} commands)")


async def run(args: argparse.Namespace) -> dict:
    report: dict = {"machine": machine(), "uptime_before": f"{uptime()}; {psi_cpu()}", "scale": [], "latency": []}
    began = time.monotonic()
    print(f"machine: {report['machine']}\nbefore: {report['uptime_before']}", flush=True)
    single = min(args.stations, fd_limit() - FD_MARGIN)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp_name, PostgresCluster(dbname="bench") as pg, \
            Mosquitto(extra_config=BROKER_CONFIG.format(queue=max(100_000, 5 * args.stations))) as broker:
        tmp = Path(tmp_name)
        #: Where the processes it starts keep their files (their command lines name them): none is left after.
        report["workdirs"] = [str(tmp), str(pg.dir), str(broker.dir)]
        try:
            if not args.skip_scale:
                print(f"\nscale: {args.stations} stations over {args.gateways} gateways and {args.controllers} "
                      f"controller(s), {args.rate:.0f} msg/s offered, warm-up {args.warmup:g} s, measured "
                      f"{args.duration:g} s", flush=True)
                r = await scale_run(args, tmp, pg, broker, scaled_out=True, stations=args.stations)
                report["scale"].append(r)
                print_scale([r])
                if not args.skip_single:
                    if single < args.stations:
                        print(f"\none process: {single} stations (a process may open {fd_limit()} files here), "
                              f"one CALL each every {single / args.rate:.2f} s: the same {args.rate:.0f} msg/s",
                              flush=True)
                    r = await scale_run(args, tmp, pg, broker, scaled_out=False, stations=single)
                    report["scale"].append(r)
                    print_scale([r])
            for n in (int(x) for x in args.chargers.split(",") if x.strip()) if args.trials else ():
                print(f"\ncontrol loop: one group of {n} chargers, a mains reading on the broker -> the last "
                      f"SetChargingProfile at a charger (a decrease), {args.trials} trials", flush=True)
                runs = [await latency_run(args, tmp, pg, broker, scaled_out=True, n=n)]
                if not args.skip_single:
                    runs.append(await latency_run(args, tmp, pg, broker, scaled_out=False, n=n))
                print_latency(runs)
                report["latency"] += runs
        except BaseException:
            if os.environ.get("BENCH_KEEP_LOGS"):
                keep = Path(tempfile.mkdtemp(prefix="bench-cluster-logs-"))
                for f in tmp.glob("*.log"):
                    f.rename(keep / f.name)
                print(f"logs kept in {keep}", file=sys.stderr)
            else:
                for f in sorted(tmp.glob("*.log")):
                    text = f.read_text(errors="replace")[-1500:]
                    if text.strip():
                        print(f"---- {f.name} ----\n{text}", file=sys.stderr)
            raise
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for f in tmp.glob("*.log"):
                f.rename(keep / f.name)
    report["uptime_after"] = f"{uptime()}; {psi_cpu()}"
    report["seconds"] = time.monotonic() - began
    print(f"\nafter: {report['uptime_after']} ({report['seconds']:.0f} s)")
    if report["scale"]:
        print("\n== scale ==")
        print_scale(report["scale"])
    if report["latency"]:
        print("\n== control loop ==")
        print_latency(report["latency"])
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stations", type=int, default=20_000)
    p.add_argument("--gateways", type=int, default=4)
    p.add_argument("--controllers", type=int, default=1)
    p.add_argument("--rate", type=float, help="messages a second from all stations together (default: one CALL per "
                   "station every 10 s, 2,000 msg/s at 20,000 stations)")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds of the steady load")
    p.add_argument("--loadgens", type=int, default=2, help="load generator processes (more if the files need)")
    p.add_argument("--chargers", default="10,100", help="chargers in the control-loop group, comma-separated sizes")
    p.add_argument("--trials", type=int, default=20, help="timed decreases per form (0: no control-loop part)")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--no-spy", action="store_true", help="no subscriber timing the commands on the broker")
    p.add_argument("--skip-single", action="store_true", help="the scaled-out form only")
    p.add_argument("--start-timeout", type=float, default=120.0, help="s for a node to listen / a controller to lead")
    p.add_argument("--phase-timeout", type=float, default=600.0, help="s for connecting, or setting up, the fleet")
    p.add_argument("--time-limit", type=float, default=3600.0, help="s for the whole run; then it stops and cleans up")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--keep-logs", metavar="DIR", help="move every process's log here at the end")
    p.add_argument("--node-log-level", default="warning", choices=["debug", "info", "warning"],
                   help="the csms serve processes' --log-level")
    p.add_argument("--timeline", metavar="FILE", help="every second, each process's CPU and RSS (CSV) of the scale part")
    args = p.parse_args(argv)
    if args.rate is None:
        args.rate = args.stations / 10
    reason = unavailable_reason()
    if reason:
        print(f"bench_cluster: {reason}", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the nodes inherit it

    async def bounded() -> dict:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        async with asyncio.timeout(args.time_limit):
            return await run(args)

    try:
        report = asyncio.run(bounded())
    except TimeoutError:
        print(f"bench_cluster: stopped after --time-limit {args.time_limit:g} s", file=sys.stderr)
        return 1
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
