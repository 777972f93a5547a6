"""SQLite persistence (sqlite-utils, WAL) with group commit.

Every write is a small function of the database queued to one writer thread; the writer runs
whatever has queued within ``commit_interval`` in a single transaction and then resolves each
writer's future. A caller that awaits :meth:`Storage.write` therefore learns only after its change
is on disk, so a central system that acknowledges a message after that await never loses what it
acknowledged, while a burst of messages costs one fsync, not one each.

The connection lives on the writer thread only (sqlite3 connections are thread-bound); the event
loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

log = logging.getLogger(__name__)
T = TypeVar("T")
Op = Callable[[Database], Any]

SCHEMA_VERSION = 1


def _create_schema(db: Database) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS stations (
            id TEXT PRIMARY KEY, version TEXT, vendor TEXT, model TEXT, serial_number TEXT,
            firmware_version TEXT, first_seen REAL, last_boot REAL, last_connected REAL,
            last_disconnected REAL, connected INTEGER DEFAULT 0)"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS connector_status (
            id INTEGER PRIMARY KEY, station_id TEXT NOT NULL, connector_id INTEGER NOT NULL,
            status TEXT NOT NULL, error_code TEXT, at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS connector_status_station ON connector_status (station_id, at)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS transactions (
            station_id TEXT NOT NULL, transaction_id TEXT NOT NULL, version TEXT, connector_id INTEGER,
            id_token TEXT, started_at REAL, meter_start_wh REAL, stopped_at REAL, meter_stop_wh REAL,
            stop_reason TEXT, start_key TEXT, PRIMARY KEY (station_id, transaction_id))"""
    )
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS transactions_start_key ON transactions (station_id, start_key)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS transaction_events (
            station_id TEXT NOT NULL, transaction_id TEXT NOT NULL, seq_no INTEGER NOT NULL,
            event_type TEXT, trigger_reason TEXT, at REAL, PRIMARY KEY (station_id, transaction_id, seq_no))"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS meter_values (
            station_id TEXT NOT NULL, connector_id INTEGER NOT NULL, taken_at REAL NOT NULL,
            context TEXT NOT NULL DEFAULT '', transaction_id TEXT, current_l1 REAL, current_l2 REAL,
            current_l3 REAL, energy_wh REAL, sampled TEXT,
            PRIMARY KEY (station_id, connector_id, taken_at, context))"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY, at REAL NOT NULL, kind TEXT NOT NULL, station_id TEXT,
            group_id TEXT, meter TEXT, detail TEXT)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS events_at ON events (at)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS decisions (
            id INTEGER PRIMARY KEY, group_id TEXT NOT NULL, at REAL NOT NULL, meter_fresh INTEGER,
            budget TEXT, limits TEXT)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS decisions_group_at ON decisions (group_id, at)")
    # Firmware and log (diagnostics) progress a station reports, one row per notification: kind is "firmware"
    # or "log", status as the station sent it, request_id the command's (2.0.1; None in 1.6).
    db.execute(
        """CREATE TABLE IF NOT EXISTS maintenance_status (
            id INTEGER PRIMARY KEY, station_id TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
            request_id INTEGER, at REAL NOT NULL)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS maintenance_status_station ON maintenance_status (station_id, kind, at)")
    db.execute("CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS station_settings (
            station_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, readonly INTEGER, source TEXT NOT NULL,
            updated_at REAL NOT NULL, PRIMARY KEY (station_id, key))"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS local_lists (
            station_id TEXT PRIMARY KEY, version INTEGER NOT NULL, entries TEXT NOT NULL, updated_at REAL NOT NULL)"""
    )
    # Id tokens changed at run time (the config's [[id_tokens]] are the seed); deleted = 1 keeps a deleted config
    # entry deleted across restarts. Added without a version bump: a new table needs no migration.
    db.execute(
        """CREATE TABLE IF NOT EXISTS id_tokens (
            organisation TEXT NOT NULL, token TEXT NOT NULL, status TEXT NOT NULL, expiry TEXT, parent TEXT,
            concurrent INTEGER NOT NULL DEFAULT 0, deleted INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL,
            updated_by TEXT NOT NULL, PRIMARY KEY (organisation, token))"""
    )
    # Reservations made by the operator (csms.storage.reservations); a new table, so no version bump either.
    db.execute(
        """CREATE TABLE IF NOT EXISTS reservations (
            id INTEGER PRIMARY KEY, station_id TEXT NOT NULL, connector INTEGER NOT NULL, id_token TEXT NOT NULL,
            parent TEXT, expires_at REAL NOT NULL, state TEXT NOT NULL, created_by TEXT NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL, transaction_id TEXT)"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS reservations_station ON reservations (station_id, state)")
    db.execute(
        """CREATE TABLE IF NOT EXISTS operator_caps (
            station_id TEXT PRIMARY KEY, limit_a REAL NOT NULL, until REAL, set_at REAL NOT NULL, by TEXT)"""
    )
    # Commissioning reports (csms.storage.commissioning); a new table, no version bump.
    db.execute(
        """CREATE TABLE IF NOT EXISTS commissioning_reports (
            id INTEGER PRIMARY KEY, group_id TEXT NOT NULL, started_at REAL NOT NULL, finished_at REAL,
            state TEXT NOT NULL, ok INTEGER, by TEXT, report TEXT)"""
    )
    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


def open_database(path: str, *, check_same_thread: bool = True) -> Database:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=check_same_thread, isolation_level=None)
    db = Database(conn)
    if path != ":memory:":
        db.enable_wal()
    db.execute("PRAGMA synchronous=NORMAL" if path == ":memory:" else "PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    _create_schema(db)
    return db


@dataclass
class _Pending:
    op: Op
    future: asyncio.Future


class StorageClosed(RuntimeError):
    pass


class Storage:
    """Group-committing writer plus a few typed reads for start-up and the CLI."""

    def __init__(self, path: str, commit_interval: float = 0.005):
        self.path = path
        self.commit_interval = commit_interval
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csms-sqlite")
        self._db: Database | None = None
        self._queue: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self.batches = 0
        self.writes = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._db = await loop.run_in_executor(self._executor, open_database, self.path)
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._writer(), name="storage-writer")

    async def close(self) -> None:
        """Flushes everything queued, then closes the database."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._task = None
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.get_running_loop().run_in_executor(self._executor, db.conn.close)
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> "Storage":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, op: Op) -> asyncio.Future:
        """Queues ``op`` for the next group commit; the future resolves with its result once committed."""
        if self._closing or self._wakeup is None:
            raise StorageClosed("storage is closed")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, fut))
        self._wakeup.set()
        return fut

    async def write(self, op: Callable[[Database], T]) -> T:
        return await self.submit(op)

    def write_nowait(self, op: Op, what: str = "write") -> None:
        """Queues a write nobody waits for (event log, decisions); a failure is logged, not raised."""
        try:
            fut = self.submit(op)
        except StorageClosed:
            log.warning("storage closed, dropped %s", what)
            return
        fut.add_done_callback(lambda f: f.cancelled() or f.exception() is None or log.error("%s failed: %s", what, f.exception()))

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                if self._closing:
                    return
                continue
            if self.commit_interval and not self._closing:
                await asyncio.sleep(self.commit_interval)
            batch, self._queue = self._queue, []
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except BaseException as exc:  # the executor itself failed: fail the batch, keep serving
                results = [exc] * len(batch)
            self.batches += 1
            self.writes += len(batch)
            for pending, result in zip(batch, results):
                if pending.future.done():
                    continue
                if isinstance(result, BaseException):
                    pending.future.set_exception(result)
                else:
                    pending.future.set_result(result)
            if self._queue or self._closing:  # closing: come back round to return, not to wait
                self._wakeup.set()

    def _run_batch(self, batch: list[_Pending]) -> list[Any]:
        """One transaction for the whole batch; if any op fails, redo them one transaction each."""
        db = self._db
        assert db is not None
        try:
            db.execute("BEGIN IMMEDIATE")
            results = [p.op(db) for p in batch]
            db.execute("COMMIT")
            return results
        except Exception:
            db.execute("ROLLBACK") if db.conn.in_transaction else None
        results = []
        for p in batch:
            try:
                db.execute("BEGIN IMMEDIATE")
                results.append(p.op(db))
                db.execute("COMMIT")
            except Exception as exc:
                if db.conn.in_transaction:
                    db.execute("ROLLBACK")
                log.error("storage write failed: %s", exc)
                results.append(exc)
        return results

    # -- reads (on the writer thread, so they see every committed write) -------------------------

    async def read(self, fn: Callable[[Database], T]) -> T:
        if self._db is None:
            raise StorageClosed("storage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._db)
