"""Memory per connected station, by who holds it: the central system's own packages, ``websockets``, asyncio.

Run: ``python bench/bench_memory.py [--stations 2000] [--version ocpp2.0.1]``.

The real :class:`csms.runtime.app.CentralSystemApp` (server, storage, balancer, delivery) runs in this process;
the stations are the load generator's raw websocket clients (``bench/loadgen.py``) in the same process, so
their own share (``bench/loadgen.py`` and part of asyncio's) is printed apart. ``tracemalloc`` compares the
heap before the stations connect with the heap after they have booted and been set up, after a full garbage
collection: what remains is what each live station costs. RSS is larger than the traced total (allocator
arenas, the interpreter), which is why ``bench/bench_scale.py`` measures RSS itself.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from bench_throughput import password_of, station_ids, write_csms_config  # noqa: E402
from loadgen import connect_fleet  # noqa: E402


def owner(filename: str) -> str:
    """``csms/ocpp/station.py`` → ``csms.ocpp``; a library → its name; the standard library → asyncio/other."""
    path = Path(filename)
    parts = path.parts
    if "csms" in parts and "site-packages" not in parts:
        i = parts.index("csms")
        return ".".join(parts[i:i + 2]) if len(parts) > i + 2 else "csms"
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1]
    if "asyncio" in parts:
        return "asyncio (both sides)"
    if path.name == "loadgen.py":
        return "load generator (not the server)"
    return "other"


async def measure(n: int, version: str, settle: float) -> None:
    from csms.config import load_config
    from csms.ocpp.schemas import preload
    from csms.runtime.app import CentralSystemApp

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(write_csms_config(Path(tmp), n, 0))
        preload()
        async with CentralSystemApp(cfg) as app:
            gc.collect()
            tracemalloc.start(1)
            before = tracemalloc.take_snapshot()
            ids = station_ids(n)
            fleet = await connect_fleet("127.0.0.1", app.port, ids, version,
                                        passwords={s: password_of(s) for s in ids})
            await asyncio.sleep(settle)  # the central system's own set-up calls to each station
            gc.collect()
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            by_owner: Counter[str] = Counter()
            for stat in after.compare_to(before, "filename"):
                by_owner[owner(stat.traceback[0].filename)] += stat.size_diff
            total = sum(by_owner.values())
            print(f"{n} stations ({version}), {len(app.server.sessions)} sessions: "
                  f"{total / n / 1024:.1f} KiB traced per station")
            for name, size in by_owner.most_common():
                if abs(size) / n >= 50:
                    print(f"  {size / n / 1024:6.2f} KiB  {size / total:5.1%}  {name}")
            del fleet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stations", type=int, default=2000)
    ap.add_argument("--version", default="ocpp2.0.1", choices=["ocpp1.6", "ocpp2.0.1"])
    ap.add_argument("--settle", type=float, default=15.0, help="s to wait for the set-up calls after boot")
    args = ap.parse_args()
    import logging
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(measure(args.stations, args.version, args.settle))


if __name__ == "__main__":
    main()
