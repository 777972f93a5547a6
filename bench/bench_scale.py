"""Scale: 1,000 / 5,000 / 10,000 stations on one ``csms serve`` process, against the bare baselines.

For each server (ours with validation, storage and balancing on; a bare central system on the
``ocpp`` package; a bare ``websockets`` server with canned replies) and each fleet size, the load
generator (this process, pinned to CPU 1; servers pinned to CPU 0):

1. connects every station and sends its BootNotification (connect time = all booted);
2. waits for ``csms serve`` to finish its own per-station set-up calls (configuration, fallback profile);
3. sends, from every station, one CALL every 10 s (Heartbeat and per-phase MeterValues alternating),
   so N stations make N/10 messages a second, and measures the sustained rate and round trips;
4. records the server's RSS (before the stations connect, once they are set up, and its peak) and both
   processes' CPU.

A final closed-loop run at 1,000 stations gives the saturation throughput of each server.

    python bench/bench_scale.py                 # ~12 minutes
    python bench/bench_scale.py --quick         # < 1 minute (200 / 500 stations)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_throughput import (  # noqa: E402
    LOADGEN_CPU, ServerProcess, bare_server, csms_server, machine, measure, pin_self, raise_fd_limit, station_ids,
)
from bench.loadgen import connect_fleet, run_steady, settle  # noqa: E402


async def steady(server: ServerProcess, version: str, n: int, passwords: dict[str, str] | None, interval: float,
                 warmup: float, duration: float) -> dict:
    idle_rss = server.rss_mb()
    fleet = await connect_fleet("127.0.0.1", server.port, station_ids(n), version, passwords=passwords,
                                concurrency=500, timeout=300)
    try:
        settled = await settle(fleet) if passwords else 0.0
        setup_rss = server.rss_mb()
        cpu0, wall0, own0 = server.cpu_seconds(), time.perf_counter(), time.process_time()
        result = await run_steady(fleet, interval, warmup, duration)
        wall = time.perf_counter() - wall0
        result.update(connect_s=round(fleet.connect_seconds, 2), setup_s=round(settled, 1),
                      server_cpu=round((server.cpu_seconds() - cpu0) / wall, 2),
                      loadgen_cpu=round((time.process_time() - own0) / wall, 2),
                      server_rss_mb=round(server.peak_rss_mb(), 1), idle_rss_mb=round(idle_rss, 1),
                      setup_rss_mb=round(setup_rss, 1))
        return result
    finally:
        fleet.close()
        await asyncio.sleep(1.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,5000,10000")
    p.add_argument("--versions", default="ocpp2.0.1", help="comma-separated: ocpp1.6,ocpp2.0.1")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between two CALLs of one station")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per run")
    p.add_argument("--only", choices=["csms", "ocpp", "ws", "wsproto"], action="append",
                   help="run only these servers (wsproto: only when installed)")
    p.add_argument("--no-saturation", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", help="write the results to this file as JSON")
    args = p.parse_args()
    sizes = [200, 500] if args.quick else [int(s) for s in args.sizes.split(",")]
    interval = 2.0 if args.quick else args.interval
    warmup, duration = (1.0, 4.0) if args.quick else (min(args.interval, 5.0), args.duration)
    raise_fd_limit(max(sizes) * 2 + 1024)
    pin_self(LOADGEN_CPU)
    print(machine())
    only = set(args.only or ["csms", "ocpp", "ws"])
    makers = []
    if "csms" in only:
        makers.append(lambda n, tmp: csms_server(Path(tempfile.mkdtemp(dir=tmp)), n))
    if "ocpp" in only:
        makers.append(lambda n, tmp: (bare_server("bare_ocpp.py", "bare ocpp (validation on)"), None))
    if "ws" in only:
        makers.append(lambda n, tmp: (bare_server("bare_ws.py", "bare websockets"), None))
    if "wsproto" in only:
        if importlib.util.find_spec("wsproto") is None:
            print("wsproto comparison skipped: pip install wsproto to run it", flush=True)
        else:
            makers.append(lambda n, tmp: (bare_server("bare_wsproto.py", "bare wsproto"), None))
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for version in args.versions.split(","):
            for n in sizes:
                for make in makers:
                    server, passwords = make(n, tmp)
                    server.start(timeout=300)
                    try:
                        r = asyncio.run(steady(server, version, n, passwords, interval, warmup, duration))
                    finally:
                        server.stop()
                    r.update(server=server.name, version=version, stations=n, mode="steady",
                             offered=round(n / interval, 1))
                    results.append(r)
                    print(f"{version:9} {n:6d} stations {server.name:27} connect {r['connect_s']:6.1f} s  "
                          f"{r['rate']:7.0f}/{r['offered']:.0f} msg/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:7.1f} ms"
                          f"  RSS {r['server_rss_mb']:6.0f} MB (idle {r['idle_rss_mb']:.0f}, set up {r['setup_rss_mb']:.0f})  CPU server {r['server_cpu']:.2f} loadgen "
                          f"{r['loadgen_cpu']:.2f}  errors {r['errors']}", flush=True)
            if not args.no_saturation:
                n = 300 if args.quick else 1000
                for make in makers:
                    server, passwords = make(n, tmp)
                    server.start(timeout=300)
                    try:
                        r = asyncio.run(measure(server, version, n, passwords, *((1.5, 3.0) if args.quick else
                                                                                  (3.0, 10.0)),
                                                settle=3.0 if passwords else 0.0))
                    finally:
                        server.stop()
                    r.update(server=server.name, version=version, stations=n, mode="saturation")
                    results.append(r)
                    print(f"{version:9} {n:6d} stations {server.name:27} saturation {r['rate']:7.0f} msg/s  "
                          f"p99 {r['p99_ms']:7.1f} ms  CPU server {r['server_cpu']:.2f} loadgen {r['loadgen_cpu']:.2f}",
                          flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
