"""Meter values persisted per second, without loss, through the central system's real storage writer, on SQLite and
on PostgreSQL side by side.

Run: ``python bench/bench_storage.py [--seconds 5] [--stations 10,100,1000] [--engines sqlite,postgresql]``.

Each simulated station does what a station session does for a MeterValues message: it awaits
``Storage.write(records.meter_values(...))`` (the central system acknowledges only after that await, i.e. after
the commit) and then sends the next one at once, so the figure is the sustained rate with that many messages in
flight. Every sample is one row (three phase currents, energy, the raw sampled values as JSON). After each run
the rows are counted: every acknowledged write must be there.

SQLite: WAL, ``synchronous=FULL`` as the central system uses. PostgreSQL: a private cluster this script starts
(``initdb`` in ``--dir``, or the temporary folder; 127.0.0.1, a free port) with the server's durable defaults
(``fsync`` on, ``synchronous_commit`` on): a COMMIT returns once the WAL is flushed, the same guarantee. In the
same run, two baselines per engine on the same disk: *one commit per row* - what a writer without group commit
would do - and *one executemany in a single transaction* - the most the engine takes from one connection, the
ceiling.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csms.domain.state import PhaseSample  # noqa: E402
from csms.storage import records  # noqa: E402
from csms.storage.database import Storage, open_database  # noqa: E402

RAW = [{"measurand": "Current.Import", "phase": f"L{i}", "unit": "A", "value": "15.9"} for i in (1, 2, 3)] + [
    {"measurand": "Energy.Active.Import.Register", "unit": "Wh", "value": "123456"}]
COLUMNS = ("station_id", "connector_id", "taken_at", "context", "transaction_id", "current_l1", "current_l2",
           "current_l3", "energy_wh", "sampled")


def sample(t: float) -> tuple[PhaseSample, str, list[dict]]:
    return PhaseSample(t, (15.9, 16.0, 15.8), (230.0, 231.0, 229.0), 123456.0), "Sample.Periodic", RAW


async def storage_run(target: str, stations: int, seconds: float, commit_interval: float) -> dict:
    """``stations`` writers, each awaiting its write before the next; returns rate, latency, loss."""
    acked = 0
    latencies: list[float] = []
    async with Storage(target, commit_interval) as storage:
        stop = time.perf_counter() + seconds  # once open: connecting and migrating are not part of the run

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
        stored = await storage.read(lambda db: db.execute("SELECT count(*) FROM meter_values").fetchone()[0])
    latencies.sort()
    return {"rows_per_s": acked / elapsed, "acked": acked, "stored": stored, "batches": batches,
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]}


def row(i: int) -> tuple:
    s, ctx, raw = sample(1.7e9 + i * 0.001)
    return ("CP00001", 1, s.taken_at, ctx, "tx", *s.current, s.energy_wh, json.dumps(raw))


def baselines(db, begin: Callable[[], None], commit: Callable[[], None], seconds: float,
              rows: int) -> tuple[float, float]:
    """(one commit per row, one transaction) in rows/s on ``db``, a migrated handle of either engine."""
    insert = db.dialect.insert_ignore("meter_values", COLUMNS)
    n, stop, start = 0, time.perf_counter() + seconds, time.perf_counter()
    while time.perf_counter() < stop:
        begin()
        db.execute(insert, row(n))
        commit()
        n += 1
    per_row = n / (time.perf_counter() - start)
    data = [row(i) for i in range(n, n + rows)]
    start = time.perf_counter()
    begin()
    db.executemany(insert, data)
    commit()
    return per_row, rows / (time.perf_counter() - start)


class Engine:
    """Where one engine's runs go: a fresh database per run, and the engine's baselines."""

    name = "sqlite"

    def __init__(self, folder: str):
        self.folder = folder

    def fresh(self, label: str) -> str:
        return f"{self.folder}/{label}.sqlite"

    def baselines(self, seconds: float, rows: int) -> tuple[float, float]:
        db = open_database(self.fresh("baseline"))
        try:
            return baselines(db, lambda: db.execute("BEGIN IMMEDIATE"), lambda: db.execute("COMMIT"), seconds, rows)
        finally:
            db.conn.close()

    def describe(self) -> str:
        return f"SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, in {self.folder}"


class Postgres(Engine):
    name = "postgresql"

    def __init__(self, cluster):
        self.cluster = cluster

    def fresh(self, label: str) -> str:
        self.cluster.create_database(label)
        return self.cluster.url.rpartition("/")[0] + "/" + label

    def baselines(self, seconds: float, rows: int) -> tuple[float, float]:
        from csms.storage.postgres import connect

        db = connect(self.fresh("baseline"))
        try:
            return baselines(db, lambda: None, db.conn.commit, seconds, rows)
        finally:
            db.conn.close()

    def describe(self) -> str:
        from csms.storage.postgres import connect

        db = connect(self.cluster.url)
        try:
            settings = {name: db.execute(f"SHOW {name}").fetchone()[0]
                        for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method")}
        finally:
            db.conn.close()
        return (f"PostgreSQL {settings['server_version']}, private cluster in {self.cluster.dir}, fsync "
                f"{settings['fsync']}, synchronous_commit {settings['synchronous_commit']}, wal_sync_method "
                f"{settings['wal_sync_method']}, psycopg over TCP 127.0.0.1")


@contextmanager
def engines(names: list[str], tmp: str, parent: str | None) -> Iterator[list[Engine]]:
    out: list[Engine] = [Engine(tmp)] if "sqlite" in names else []
    if "postgresql" not in names:
        yield out
        return
    from tests.support.postgres import PostgresCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"postgresql: skipped: {reason}")
        yield out
        return
    with PostgresCluster(dbname="bench", durable=True, parent=parent) as cluster:
        yield [*out, Postgres(cluster)]


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return (f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), {cpu}; "
            f"Python {platform.python_version()}")


def load() -> str:
    """The load averages (1, 5, 15 min), as ``uptime`` shows them: the machine may be shared."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each run (default 5)")
    ap.add_argument("--stations", default="10,100,1000", help="writers in flight, comma-separated")
    ap.add_argument("--engines", default="sqlite,postgresql", help="sqlite, postgresql or both (default)")
    ap.add_argument("--ceiling-rows", type=int, default=200_000, help="rows of the one-transaction ceiling")
    ap.add_argument("--commit-interval", type=float, default=0.005, help="[storage] commit_interval (default 0.005)")
    ap.add_argument("--dir", help="folder for the databases (default: a temporary folder; put it on the disk you use)")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average at start {load()}")
    summary: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, \
            engines(args.engines.split(","), tmp, args.dir) as chosen:
        for engine in chosen:
            print(f"\n{engine.name}: {engine.describe()}; commit_interval {args.commit_interval} s")
            base, ceiling = engine.baselines(min(args.seconds, 3.0), args.ceiling_rows)
            print(f"baseline, one commit per row:            {base:10,.0f} rows/s")
            print(f"ceiling, one transaction (executemany):  {ceiling:10,.0f} rows/s")
            print(f"{'stations':>8} {'rows/s':>10} {'x per-row':>9} {'% ceiling':>9} {'batches':>8} "
                  f"{'rows/batch':>10} {'p50 ms':>7} {'p99 ms':>7} {'acked':>8} {'stored':>8} lost")
            for n in (int(x) for x in args.stations.split(",")):
                r = asyncio.run(storage_run(engine.fresh(f"storage_{n}"), n, args.seconds, args.commit_interval))
                summary[engine.name, n] = r
                lost = r["acked"] - r["stored"]
                print(f"{n:>8} {r['rows_per_s']:>10,.0f} {r['rows_per_s'] / base:>9.1f} "
                      f"{100 * r['rows_per_s'] / ceiling:>8.1f}% {r['batches']:>8} "
                      f"{r['acked'] / max(1, r['batches']):>10.1f} "
                      f"{r['p50_ms']:>7.1f} {r['p99_ms']:>7.1f} {r['acked']:>8} {r['stored']:>8} {lost}")
                if lost:
                    print(f"LOSS: {lost} acknowledged rows are not in the database", file=sys.stderr)
                    sys.exit(1)
    names = [e for e in ("sqlite", "postgresql") if any(k[0] == e for k in summary)]
    print(f"\nside by side (writes/s acknowledged, p99 ack latency); load average at end {load()}")
    print(f"{'stations':>8} " + " ".join(f"{name + ' w/s':>16} {name + ' p99 ms':>18}" for name in names))
    for n in (int(x) for x in args.stations.split(",")):
        print(f"{n:>8} " + " ".join(f"{summary[name, n]['rows_per_s']:>16,.0f} {summary[name, n]['p99_ms']:>18.1f}"
                                     for name in names))


if __name__ == "__main__":
    main()
