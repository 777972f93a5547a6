"""SQLite, the embedded default: the schema, the connection, and the writer thread's transactions on it.

The handle the operations get is sqlite-utils' ``Database`` (:class:`SqliteDb` adds the :class:`~csms.storage.sql.Db`
methods it lacks), in autocommit mode with explicit ``BEGIN IMMEDIATE``/``COMMIT`` around each group commit, WAL
and ``synchronous=FULL``: a commit that returned is on disk.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from csms.storage.sql import SQLITE, Dialect


@contextlib.contextmanager
def _unimportable(*names: str) -> Iterator[None]:
    """``import NAME`` raises ImportError within the block, for each name nobody has imported yet."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


# sqlite-utils imports numpy and pandas whenever they are installed (numpy comes with matplotlib, in the test
# environment for one), only to map their scalar types to column types. The central system never hands it such
# values, and numpy alone is 11 MB of a server's memory. A later ``import numpy`` elsewhere works as usual.
with _unimportable("numpy", "pandas"):
    from sqlite_utils import Database


class SqliteDb(Database):
    """sqlite-utils' ``Database`` plus what the shared operations need of any engine."""

    dialect: Dialect = SQLITE

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Runs an INSERT and returns the new row's ``id`` (its rowid)."""
        return int(self.execute(sql, params).lastrowid)


SCHEMA_VERSION = 1


def _create_schema(db: SqliteDb) -> None:
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


def open_database(path: str, *, check_same_thread: bool = True) -> SqliteDb:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=check_same_thread, isolation_level=None)
    db = SqliteDb(conn)
    if path != ":memory:":
        db.enable_wal()
    db.execute("PRAGMA synchronous=NORMAL" if path == ":memory:" else "PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    _create_schema(db)
    return db


class SqliteBackend:
    """The writer thread's connection to a SQLite file (see :class:`csms.storage.database.Storage`)."""

    def __init__(self, path: str):
        self.path = path
        #: What log lines call this database.
        self.label = path
        self.db: SqliteDb | None = None

    def connect(self) -> None:
        self.db = open_database(self.path)

    def begin(self) -> None:
        assert self.db is not None
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        assert self.db is not None
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db is not None and self.db.conn.in_transaction:
            self.db.execute("ROLLBACK")

    def end_read(self) -> None:
        """Reads run in autocommit mode: nothing to end."""

    def is_disconnect(self, exc: BaseException) -> bool:
        """A file never goes away the way a server does."""
        return False

    def close(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            db.conn.close()
