"""Meter values persisted per second, without loss, through the central system's real storage writer.

Run: ``python bench/bench_storage.py [--seconds 5] [--stations 10,100,1000]``.

Each simulated station does what a station session does for a MeterValues message: it awaits
``Storage.write(records.meter_values(...))`` (the central system acknowledges only after that await)
and then sends the next one at once, so the figure is the sustained rate with that many messages in
flight. Every sample is one row (three phase currents, energy, the raw sampled values as JSON). After
each run the rows are counted: every acknowledged write must be there.

In the same run, two baselines on the same machine and disk (WAL, ``synchronous=FULL`` as the central
system uses): *one commit per row* - what a writer without group commit would do - and *one executemany
in a single transaction* - the most SQLite can take on this disk from one thread, the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csms.domain.state import PhaseSample  # noqa: E402
from csms.storage import records  # noqa: E402
from csms.storage.database import Storage, open_database  # noqa: E402

RAW = [{"measurand": "Current.Import", "phase": f"L{i}", "unit": "A", "value": "15.9"} for i in (1, 2, 3)] + [
    {"measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "123456"}]


def sample(t: float) -> tuple[PhaseSample, str, list[dict]]:
    return PhaseSample(t, (15.9, 16.0, 15.8), (230.0, 231.0, 229.0), 123456.0), "Sample.Periodic", RAW


async def storage_run(path: str, stations: int, seconds: float, commit_interval: float) -> dict:
    """``stations`` writers, each awaiting its write before the next; returns rate, latency, loss."""
    acked = 0
    latencies: list[float] = []
    stop = time.perf_counter() + seconds
    async with Storage(path, commit_interval) as storage:
        async def station(i: int) -> None:
            nonlocal acked
            sid, n = f"CP{i:05d}", 0
            while time.perf_counter() < stop:
                n += 1
                t0 = time.perf_counter()
                await storage.write(records.meter_values(sid, 1, f"tx{i}", [sample(1.7e9 + n * 0.001)]))
                latencies.append(time.perf_counter() - t0)
                acked += 1

        start = time.perf_counter()
        await asyncio.gather(*(station(i) for i in range(stations)))
        elapsed = time.perf_counter() - start
        batches = storage.batches
    db = sqlite3.connect(path)
    stored = db.execute("SELECT count(*) FROM meter_values").fetchone()[0]
    db.close()
    latencies.sort()
    return {"rows_per_s": acked / elapsed, "acked": acked, "stored": stored, "batches": batches,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def row(i: int) -> tuple:
    s, ctx, raw = sample(1.7e9 + i * 0.001)
    return ("CP00001", 1, s.taken_at, ctx, "tx", *s.current, s.energy_wh, json.dumps(raw))


INSERT = """INSERT OR IGNORE INTO meter_values (station_id, connector_id, taken_at, context, transaction_id,
            current_l1, current_l2, current_l3, energy_wh, sampled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def commit_per_row(path: str, seconds: float) -> float:
    db = open_database(path)
    n, stop, start = 0, time.perf_counter() + seconds, time.perf_counter()
    while time.perf_counter() < stop:
        db.execute("BEGIN IMMEDIATE")
        db.execute(INSERT, row(n))
        db.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - start)
    db.conn.close()
    return rate


def one_transaction(path: str, rows: int) -> float:
    db = open_database(path)
    data = [row(i) for i in range(rows)]
    start = time.perf_counter()
    db.execute("BEGIN IMMEDIATE")
    db.conn.executemany(INSERT, data)
    db.execute("COMMIT")
    rate = rows / (time.perf_counter() - start)
    db.conn.close()
    return rate


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return (f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu}; "
            f"Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each run (default 5)")
    ap.add_argument("--stations", default="10,100,1000", help="writers in flight, comma-separated")
    ap.add_argument("--commit-interval", type=float, default=0.005, help="[storage] commit_interval (default 0.005)")
    ap.add_argument("--dir", help="folder for the databases (default: a temporary folder; put it on the disk you use)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"database folder: {tmp}; synchronous=FULL, WAL; commit_interval {args.commit_interval} s")
        base = commit_per_row(f"{tmp}/per_row.sqlite", min(args.seconds, 3.0))
        ceiling = one_transaction(f"{tmp}/ceiling.sqlite", 200_000)
        print(f"baseline, one commit per row:            {base:10,.0f} rows/s")
        print(f"ceiling, one transaction (executemany):  {ceiling:10,.0f} rows/s")
        print(f"{'stations':>8} {'rows/s':>10} {'x per-row':>9} {'% ceiling':>9} {'batches':>8} {'rows/batch':>10} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'acked':>8} {'stored':>8} lost")
        for n in (int(x) for x in args.stations.split(",")):
            r = asyncio.run(storage_run(f"{tmp}/storage_{n}.sqlite", n, args.seconds, args.commit_interval))
            lost = r["acked"] - r["stored"]
            print(f"{n:>8} {r['rows_per_s']:>10,.0f} {r['rows_per_s'] / base:>9.1f} "
                  f"{100 * r['rows_per_s'] / ceiling:>8.1f}% {r['batches']:>8} "
                  f"{r['acked'] / max(1, r['batches']):>10.1f} "
                  f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['acked']:>8} {r['stored']:>8} {lost}")
            if lost:
                print(f"LOSS: {lost} acknowledged rows are not in the database", file=sys.stderr)
                sys.exit(1)


if __name__ == "__main__":
    main()
