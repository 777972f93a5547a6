"""What the operator view reads back from storage: mains readings, decisions, events, transactions.

Every query is a plain function of the sqlite-utils ``Database`` for :meth:`csms.storage.Storage.read`, so it
runs on the storage thread and never blocks the event loop. Long ranges are thinned in SQL to at most
``points`` rows (one per time bucket), keeping per bucket what matters for a fuse: the highest phase
currents, the lowest budget, the last limits.

Mains readings are not part of the OCPP record, so :class:`ReadingRecorder` keeps them in their own
``meter_readings`` table, buffered and written a few seconds at a time (a meter sends about one a second).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from csms.storage import Storage

log = logging.getLogger("csms.web.history")

#: Most rows a history query returns, whatever the range.
MAX_POINTS = 5000

METER_READINGS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meter_readings (
        serial TEXT NOT NULL, taken_at REAL NOT NULL, current_l1 REAL, current_l2 REAL, current_l3 REAL,
        PRIMARY KEY (serial, taken_at))"""
)


def create_schema(db: Database) -> None:
    db.execute(METER_READINGS_SCHEMA)


class ReadingRecorder:
    """Buffers mains readings and writes them in one storage operation every ``flush_every`` seconds.

    A reading is history, not something a station was promised: the few seconds still buffered when the
    process dies are an acceptable loss, one fsync a second per meter is not.
    """

    def __init__(self, storage: Storage, clock: Callable[[], float], flush_every: float = 5.0,
                 max_rows: int = 500):
        self._storage = storage
        self._clock = clock
        self.flush_every = flush_every
        self._max_rows = max_rows
        self._rows: list[tuple[str, float, float | None, float | None, float | None]] = []
        self._since: float | None = None
        self._schema_written = False

    def add(self, serial: str, taken_at: float, current: tuple[float | None, float | None, float | None]) -> None:
        self._rows.append((serial, taken_at, *current))
        now = self._clock()
        if self._since is None:
            self._since = now
        if now - self._since >= self.flush_every or len(self._rows) >= self._max_rows:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        rows, self._rows, self._since = self._rows, [], None
        with_schema = not self._schema_written
        self._schema_written = True

        def op(db: Database) -> None:
            if with_schema:
                create_schema(db)
            db.conn.executemany(
                "INSERT OR IGNORE INTO meter_readings (serial, taken_at, current_l1, current_l2, current_l3) "
                "VALUES (?, ?, ?, ?, ?)", rows)

        self._storage.write_nowait(op, f"{len(rows)} meter reading(s)")


@dataclass(frozen=True)
class Range:
    """A validated time range [since, until] in epoch seconds and how many points it may return."""

    since: float
    until: float
    points: int = 600

    @property
    def bucket(self) -> float:
        """Seconds per returned row; 0 (an empty range) means every row."""
        return (self.until - self.since) / self.points


def _table_exists(db: Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [name]).fetchone() is not None


def phase_currents(serial: str, rng: Range):
    """Mains current per phase: ``[{"at", "l1", "l2", "l3"}]``, the highest of each bucket."""
    def op(db: Database) -> list[dict[str, Any]]:
        if not _table_exists(db, "meter_readings"):
            return []
        bucket = rng.bucket
        if bucket == 0:
            sql = ("SELECT taken_at AS at, current_l1 AS l1, current_l2 AS l2, current_l3 AS l3 FROM meter_readings "
                   "WHERE serial = ? AND taken_at BETWEEN ? AND ? ORDER BY taken_at LIMIT ?")
            args: list[Any] = [serial, rng.since, rng.until, MAX_POINTS]
        else:
            sql = ("SELECT MAX(taken_at) AS at, MAX(current_l1) AS l1, MAX(current_l2) AS l2, MAX(current_l3) AS l3 "
                   "FROM meter_readings WHERE serial = ? AND taken_at BETWEEN ? AND ? "
                   "GROUP BY MIN(CAST((taken_at - ?) / ? AS INTEGER), ?) ORDER BY at LIMIT ?")
            args = [serial, rng.since, rng.until, rng.since, bucket, rng.points - 1, MAX_POINTS]
        return [dict(r) for r in db.query(sql, args)]
    return op


def decisions(group_id: str, rng: Range):
    """The group's decisions: ``[{"at", "meter_fresh", "budget": {phase: A}, "limits": {charger: {...}}}]``.

    Thinned to the last decision of each bucket, which is the one that was in force at its end.
    """
    def op(db: Database) -> list[dict[str, Any]]:
        bucket = rng.bucket
        if bucket == 0:
            sql = ("SELECT at, meter_fresh, budget, limits FROM decisions WHERE group_id = ? AND at BETWEEN ? AND ? "
                   "ORDER BY at LIMIT ?")
            args: list[Any] = [group_id, rng.since, rng.until, MAX_POINTS]
        else:
            # SQLite returns the other columns from the row holding MAX(at).
            sql = ("SELECT MAX(at) AS at, meter_fresh, budget, limits FROM decisions "
                   "WHERE group_id = ? AND at BETWEEN ? AND ? GROUP BY MIN(CAST((at - ?) / ? AS INTEGER), ?) "
                   "ORDER BY at LIMIT ?")
            args = [group_id, rng.since, rng.until, rng.since, bucket, rng.points - 1, MAX_POINTS]
        out = []
        for row in db.query(sql, args):
            out.append({"at": row["at"], "meter_fresh": bool(row["meter_fresh"]),
                        "budget": json.loads(row["budget"] or "{}"), "limits": json.loads(row["limits"] or "{}")})
        return out
    return op


def events(since: float, until: float, limit: int, *, station_id: str | None = None, group_id: str | None = None,
           kind: str | None = None):
    """Logged events, newest first: ``[{"at", "kind", "station_id", "group_id", "meter", "detail"}]``."""
    def op(db: Database) -> list[dict[str, Any]]:
        where, args = ["at BETWEEN ? AND ?"], [since, until]
        for column, value in (("station_id", station_id), ("group_id", group_id), ("kind", kind)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT at, kind, station_id, group_id, meter, detail FROM events WHERE {' AND '.join(where)} " \
              "ORDER BY at DESC, id DESC LIMIT ?"
        out = []
        for row in db.query(sql, [*args, limit]):
            event = dict(row)
            try:
                event["detail"] = json.loads(event["detail"]) if event["detail"] else {}
            except ValueError:
                event["detail"] = {"text": event["detail"]}
            out.append(event)
        return out
    return op


def transactions(since: float, until: float, limit: int, station_id: str | None = None):
    """Transactions that started in the range, newest first (the id token is shown, it is not a secret)."""
    def op(db: Database) -> list[dict[str, Any]]:
        where, args = ["started_at BETWEEN ? AND ?"], [since, until]
        if station_id is not None:
            where.append("station_id = ?")
            args.append(station_id)
        # energy_wh: registers need not start at 0, so the energy is stop - start (null until both are known).
        sql = ("SELECT station_id, transaction_id, version, connector_id, id_token, started_at, meter_start_wh, "
               "stopped_at, meter_stop_wh, meter_stop_wh - meter_start_wh AS energy_wh, stop_reason "
               f"FROM transactions WHERE {' AND '.join(where)} "
               "ORDER BY started_at DESC LIMIT ?")
        return [dict(r) for r in db.query(sql, [*args, limit])]
    return op
