"""What the operator view reads back from storage: decisions, events, transactions.

Every query is a plain function of the database (:class:`~csms.storage.sql.Db`) for :meth:`csms.storage.database.Storage.read`,
so it runs on the storage thread and never blocks the event loop. Long ranges are thinned in SQL to at most
``points`` rows (one per time bucket), keeping per bucket what matters for a fuse: the highest phase
currents, the lowest budget, the last limits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from csms.storage.sql import Db

#: Most rows a history query returns, whatever the range.
MAX_POINTS = 5000


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


def decisions(group_id: str, rng: Range):
    """The group's decisions: ``[{"at", "meter_fresh", "budget": {phase: A}, "limits": {charger: {...}}}]``.

    Thinned to the last decision of each bucket, which is the one that was in force at its end.
    """
    def op(db: Db) -> list[dict[str, Any]]:
        bucket = rng.bucket
        if bucket == 0:
            sql = ("SELECT at, meter_fresh, budget, limits FROM decisions WHERE group_id = ? AND at BETWEEN ? AND ? "
                   "ORDER BY at LIMIT ?")
            args: list[Any] = [group_id, rng.since, rng.until, MAX_POINTS]
        else:
            # The other columns come from the row holding the bucket's latest ``at``.
            sql = db.dialect.last_per_bucket("meter_fresh, budget, limits", "decisions",
                                             "group_id = ? AND at BETWEEN ? AND ?", "at")
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
    def op(db: Db) -> list[dict[str, Any]]:
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
    def op(db: Db) -> list[dict[str, Any]]:
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


def station_settings(station_id: str):
    """The station's configuration as last reported, by key: ``[{"key", "value", "readonly", "source",
    "updated_at"}]``."""
    def query(db: Db) -> list[dict[str, Any]]:
        rows = db.query("SELECT key, value, readonly, source, updated_at FROM station_settings "
                        "WHERE station_id = ? ORDER BY key", [station_id])
        return [{**r, "readonly": None if r["readonly"] is None else bool(r["readonly"])} for r in rows]
    return query
