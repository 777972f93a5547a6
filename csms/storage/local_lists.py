"""The local authorization list each station holds, as last accepted: its version and entries.

Kept so that after a restart the central system still sends only what changed, with the next version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from csms.storage.sql import Db


def stored_lists(db: Db) -> dict[str, tuple[int, dict[str, list[Any]]]]:
    """station id → (version, entries as :func:`csms.domain.local_list.to_rows` writes them)."""
    return {r["station_id"]: (r["version"], json.loads(r["entries"]))
            for r in db.query("SELECT station_id, version, entries FROM local_lists")}


def save_list(station_id: str, version: int, entries: dict[str, list[Any]], at: float) -> Callable[[Db], None]:
    def op(db: Db) -> None:
        db.execute("INSERT INTO local_lists (station_id, version, entries, updated_at) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (station_id) DO UPDATE SET version = excluded.version, entries = excluded.entries, "
                   "updated_at = excluded.updated_at", [station_id, version, json.dumps(entries), at])
    return op
