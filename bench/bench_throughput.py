"""Saturation throughput: our ``csms serve`` against the bare ``ocpp`` server and a bare websockets server.

Each server runs as its own process pinned to CPU 0; this process is the load generator, pinned to
CPU 1. Where Node.js is available, a Node.js ``ocpp-rpc`` server in strict mode (bench/node/) runs
as one more comparison. At N stations (default 1,000), every station keeps one CALL in flight (Heartbeat and per-phase
MeterValues alternating) and the figure is answers per second after a warm-up, with round-trip
percentiles, both OCPP versions. ``csms serve`` runs with everything on: schema validation in and
out, SQLite storage with group commit (every MeterValues acknowledged after its commit) and the
balancer (stations in load-balancing groups, which it sets up with its own calls on connect).

    python bench/bench_throughput.py            # ~2.5 minutes (+ ~1 minute with --uvloop)
    python bench/bench_throughput.py --quick    # < 1 minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import resource
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import connect_fleet, run_closed  # noqa: E402
from simulators.ports import free_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
NODE_DIR = BENCH / "node"
SERVER_CPU, LOADGEN_CPU = 0, 1


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need)) if hard != resource.RLIM_INFINITY else max(soft, need)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def pin_self(cpu: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {cpu})


def station_ids(n: int) -> list[str]:
    return [f"LG{i:05d}" for i in range(n)]


def password_of(sid: str) -> str:
    return f"pw-{sid}-0123456789"


def write_csms_config(folder: Path, n: int, port: int, group_size: int = 50) -> Path:
    """A site with ``n`` chargers in load-balancing groups of ``group_size``, basic auth on."""
    ids = station_ids(n)
    lines = ["[server]", 'host = "127.0.0.1"', f"port = {port}", "security_profile = 1", "rate_limit = 200",
             "rate_burst = 400", "", "[storage]", f'database = "{folder / "csms.sqlite"}"', "",
             "[[organisations]]", 'id = "bench"', 'name = "Bench"', ""]
    for sid in ids:
        lines += ["[[chargers]]", f'id = "{sid}"', f'password = "{password_of(sid)}"', 'organisation = "bench"', ""]
    for g in range(0, n, group_size):
        members = ", ".join(f'"{s}"' for s in ids[g:g + group_size])
        lines += ["[[load_balancers]]", f'id = "g{g // group_size}"', f'name = "Garage {g // group_size}"',
                  'organisation = "bench"', f"chargers = [{members}]", "supply_max_current = 400",
                  "max_current_online = 300", "max_current_offline = 100", ""]
    path = folder / "site.toml"
    path.write_text("\n".join(lines))
    return path


@dataclass
class ServerProcess:
    """A server under test in its own process on SERVER_CPU; reports its CPU time and peak RSS."""

    name: str
    argv: list[str]
    port: int | None = None
    proc: subprocess.Popen | None = None
    log: Path | None = None

    def start(self, timeout: float = 120) -> None:
        def preexec() -> None:
            pin_self(SERVER_CPU)
            raise_fd_limit(65536)

        # Output goes to a file: a pipe nobody drains would stall the server once it filled up.
        self.log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, text=True,
                                         preexec_fn=preexec, cwd=BENCH.parent)
        deadline = time.monotonic() + timeout
        while self.port is None and time.monotonic() < deadline:  # the bare servers print "PORT n"
            first = self.log.read_text().partition("\n")
            if first[1]:
                if not first[0].startswith("PORT "):
                    raise RuntimeError(f"{self.name} did not start: {self.log.read_text()}")
                self.port = int(first[0].split()[1])
            elif self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()}")
            time.sleep(0.05)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not listen on {self.port} within {timeout}s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM:")

    def rss_mb(self) -> float:
        """The server's resident memory now (:meth:`peak_rss_mb`: the most it has had)."""
        return self._status_mb("VmRSS:")

    def _status_mb(self, field: str) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log is not None and not os.environ.get("BENCH_KEEP_LOGS"):
            self.log.unlink(missing_ok=True)


def csms_server(folder: Path, n: int, uvloop: bool = False) -> tuple[ServerProcess, dict[str, str]]:
    port = free_port()
    cfg = write_csms_config(folder, n, port)
    argv = [sys.executable, "-m", "csms.runtime.cli", "serve", "--config", str(cfg), "--log-level", "warning"]
    if uvloop:
        argv.append("--uvloop")
    return ServerProcess("csms serve" + (" (uvloop)" if uvloop else ""), argv, port), \
        {sid: password_of(sid) for sid in station_ids(n)}


def bare_server(script: str, name: str) -> ServerProcess:
    return ServerProcess(name, [sys.executable, str(BENCH / script), "--port", "0"])


def node_server() -> tuple[ServerProcess | None, str]:
    """The ocpp-rpc strict server, installing its pinned packages on first use, or (None, why not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None, "node and npm are not on PATH"
    if not (NODE_DIR / "node_modules" / "ocpp-rpc" / "package.json").exists():
        lock = (NODE_DIR / "package-lock.json").exists()
        argv = [npm, "ci" if lock else "install", "--no-audit", "--no-fund", "--loglevel=error"]
        print(f"installing ocpp-rpc into {NODE_DIR} ({' '.join(argv[1:2])})", flush=True)
        try:
            done = subprocess.run(argv, cwd=NODE_DIR, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`npm {argv[1]}` in {NODE_DIR} failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, f"`npm {argv[1]}` in {NODE_DIR} exited {done.returncode}: {' | '.join(tail)}"
    return ServerProcess("node ocpp-rpc (strict)", [node, str(NODE_DIR / "ocpp_rpc_server.js"), "--port", "0"]), ""


async def measure(server: ServerProcess, version: str, n: int, passwords: dict[str, str] | None,
                  warmup: float, duration: float, settle: float = 0.0) -> dict:
    fleet = await connect_fleet("127.0.0.1", server.port, station_ids(n), version, passwords=passwords)
    try:
        if settle:
            await asyncio.sleep(settle)  # let csms finish its per-station set-up calls
        cpu0, wall0 = server.cpu_seconds(), time.perf_counter()
        own0 = time.process_time()
        result = await run_closed(fleet, warmup, duration)
        wall = time.perf_counter() - wall0
        result["server_cpu"] = round((server.cpu_seconds() - cpu0) / wall, 2)
        result["loadgen_cpu"] = round((time.process_time() - own0) / wall, 2)
        result["connect_s"] = round(fleet.connect_seconds, 2)
        result["server_rss_mb"] = round(server.peak_rss_mb(), 1)
        return result
    finally:
        fleet.close()
        await asyncio.sleep(0.5)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}; load average before the run {load[0]:.2f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stations", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="short runs (under a minute in all)")
    p.add_argument("--only", choices=["csms", "ocpp", "ws", "picows", "wsproto", "node"], action="append",
                   help="run only these servers (picows, wsproto: only when installed)")
    p.add_argument("--versions", default="ocpp1.6,ocpp2.0.1")
    p.add_argument("--uvloop", action="store_true", help="also run csms serve on uvloop")
    p.add_argument("--json", help="write the results to this file as JSON")
    args = p.parse_args()
    warmup, duration = (1.5, 3.0) if args.quick else (3.0, 10.0)
    n = min(args.stations, 300) if args.quick else args.stations
    raise_fd_limit(n * 2 + 1024)
    pin_self(LOADGEN_CPU)
    print(machine())
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        servers: list[tuple[str, callable]] = []
        only = set(args.only or ["csms", "ocpp", "ws", "node"])
        if "ws" in only:
            servers.append(("ws", lambda: (bare_server("bare_ws.py", "bare websockets"), None)))
        if "wsproto" in only:
            if importlib.util.find_spec("wsproto") is None:
                print("wsproto comparison skipped: pip install wsproto to run it", flush=True)
            else:
                servers.append(("wsproto", lambda: (bare_server("bare_wsproto.py", "bare wsproto"), None)))
        if "picows" in only:
            if importlib.util.find_spec("picows") is None:
                print("picows comparison skipped: pip install picows to run it", flush=True)
            else:
                servers.append(("picows", lambda: (bare_server("bare_picows.py", "bare picows"), None)))
        if "ocpp" in only:
            servers.append(("ocpp", lambda: (bare_server("bare_ocpp.py", "bare ocpp (validation on)"), None)))
        if "node" in only:
            node, why = node_server()
            if node is None:
                print(f"Node.js ocpp-rpc comparison skipped: {why}", flush=True)
            else:
                servers.append(("node", lambda: (node_server()[0], None)))
        if "csms" in only:
            servers.append(("csms", lambda: csms_server(Path(tempfile.mkdtemp(dir=tmp)), n)))
            if args.uvloop:
                servers.append(("csms", lambda: csms_server(Path(tempfile.mkdtemp(dir=tmp)), n, uvloop=True)))
        for version in args.versions.split(","):
            for kind, make in servers:
                server, passwords = make()
                server.start()
                try:
                    r = asyncio.run(measure(server, version, n, passwords, warmup, duration,
                                            settle=2.0 if kind == "csms" else 0.0))
                finally:
                    server.stop()
                r.update(server=server.name, version=version, stations=n)
                results.append(r)
                print(f"{version:9} {server.name:28} {r['rate']:8.0f} msg/s  p50 {r['p50_ms']:6.1f} ms  "
                      f"p99 {r['p99_ms']:6.1f} ms  server CPU {r['server_cpu']:.2f}  loadgen CPU {r['loadgen_cpu']:.2f}"
                      f"  errors {r['errors']}", flush=True)
    print_ratios(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def print_ratios(results: list[dict]) -> None:
    for version in sorted({r["version"] for r in results}):
        by = {r["server"]: r["rate"] for r in results if r["version"] == version}
        ours = [k for k in by if k.startswith("csms serve")]
        for k in ours:
            parts = [f"{version}: {k} = {by[k]:.0f} msg/s"]
            for base in ("bare ocpp (validation on)", "node ocpp-rpc (strict)", "bare websockets"):
                if base in by and by[base]:
                    parts.append(f"{by[k] / by[base]:.2f}x {base}")
            print(", ".join(parts))


if __name__ == "__main__":
    sys.exit(main())
