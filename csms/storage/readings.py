"""Mains readings: buffered into their own ``meter_readings`` table and read back per phase.

Mains readings are not part of the OCPP record, so :class:`ReadingRecorder` keeps them in their own
table (migration 1 creates it on both engines), buffered and written a few seconds at a time (a meter sends
about one a second), and :func:`phase_currents` thins them like the rest of :mod:`csms.storage.history`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csms.storage.sql import Db

from csms.storage.database import Storage
from csms.storage.history import MAX_POINTS, Range

_COLUMNS = ("serial", "taken_at", "current_l1", "current_l2", "current_l3")


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

        def op(db: Db) -> None:
            db.executemany(db.dialect.insert_ignore("meter_readings", _COLUMNS), rows)

        self._storage.write_nowait(op, f"{len(rows)} meter reading(s)")


def phase_currents(serial: str, rng: Range):
    """Mains current per phase: ``[{"at", "l1", "l2", "l3"}]``, the highest of each bucket."""
    def op(db: Db) -> list[dict[str, Any]]:
        bucket = rng.bucket
        if bucket == 0:
            sql = ("SELECT taken_at AS at, current_l1 AS l1, current_l2 AS l2, current_l3 AS l3 FROM meter_readings "
                   "WHERE serial = ? AND taken_at BETWEEN ? AND ? ORDER BY taken_at LIMIT ?")
            args: list[Any] = [serial, rng.since, rng.until, MAX_POINTS]
        else:
            sql = ("SELECT MAX(taken_at) AS at, MAX(current_l1) AS l1, MAX(current_l2) AS l2, MAX(current_l3) AS l3 "
                   "FROM meter_readings WHERE serial = ? AND taken_at BETWEEN ? AND ? "
                   f"GROUP BY {db.dialect.bucket('taken_at')} ORDER BY at LIMIT ?")
            args = [serial, rng.since, rng.until, rng.since, bucket, rng.points - 1, MAX_POINTS]
        return [dict(r) for r in db.query(sql, args)]
    return op
