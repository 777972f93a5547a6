"""The operator's caps on chargers (``operator_caps``: one row per capped station), so that a restart keeps them.

Written when an operator sets or lifts a cap, read once at start (:meth:`csms.runtime.operator_caps.OperatorCaps
.restore`); a lapsed cap is dropped there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csms.storage.sql import Db


def save_cap(station_id: str, limit: float, until: float | None, set_at: float, by: str) -> Callable[[Db], None]:
    def op(db: Db) -> None:
        db.execute("INSERT INTO operator_caps (station_id, limit_a, until, set_at, by) VALUES (?, ?, ?, ?, ?) "
                   "ON CONFLICT(station_id) DO UPDATE SET limit_a = excluded.limit_a, until = excluded.until, "
                   "set_at = excluded.set_at, by = excluded.by", [station_id, limit, until, set_at, by])
    return op


def delete_cap(station_id: str) -> Callable[[Db], None]:
    def op(db: Db) -> None:
        db.execute("DELETE FROM operator_caps WHERE station_id = ?", [station_id])
    return op


def load_caps(db: Db) -> list[dict[str, Any]]:
    return list(db.query("SELECT station_id, limit_a, until, set_at, by FROM operator_caps ORDER BY station_id"))
