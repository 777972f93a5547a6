"""Commissioning reports (``commissioning_reports``): one row per check, written when it starts (state
``running``) and again when it ends (``done``, ``failed`` or ``cancelled``, with the report as JSON), so that an
installer can read the last check of a group after the fact and a check cut short by a restart shows as such."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from csms.storage.sql import Db


def start_report(group_id: str, started_at: float, by: str) -> Callable[[Db], int]:
    def op(db: Db) -> int:
        return db.insert_id("INSERT INTO commissioning_reports (group_id, started_at, state, by) VALUES (?, ?, ?, ?)",
                            [group_id, started_at, "running", by])
    return op


def finish_report(report_id: int, finished_at: float, state: str, report: dict[str, Any]) -> Callable[[Db], None]:
    def op(db: Db) -> None:
        db.execute("UPDATE commissioning_reports SET finished_at = ?, state = ?, ok = ?, report = ? WHERE id = ?",
                   [finished_at, state, int(bool(report.get("ok"))), json.dumps(report, default=str), report_id])
    return op


def interrupted(db: Db) -> None:
    """Marks checks still ``running`` from before a restart as ``interrupted`` (their caps lapse by themselves)."""
    db.execute("UPDATE commissioning_reports SET state = 'interrupted' WHERE state = 'running'")


def interrupted_in(group_ids: list[str]) -> Callable[[Db], None]:
    """:func:`interrupted` for these groups only (a new leader's: another controller may run its own groups')."""
    def op(db: Db) -> None:
        marks = ", ".join("?" for _ in group_ids)
        db.execute(f"UPDATE commissioning_reports SET state = 'interrupted' WHERE state = 'running' "
                   f"AND group_id IN ({marks})", list(group_ids))
    return op


def _row(row: dict[str, Any]) -> dict[str, Any]:
    report = json.loads(row["report"]) if row.get("report") else None
    return {"id": row["id"], "group": row["group_id"], "started_at": row["started_at"],
            "finished_at": row["finished_at"], "state": row["state"],
            "ok": None if row["ok"] is None else bool(row["ok"]), "by": row["by"], "report": report}


def load_report(report_id: int) -> Callable[[Db], dict[str, Any] | None]:
    def op(db: Db) -> dict[str, Any] | None:
        rows = list(db.query("SELECT * FROM commissioning_reports WHERE id = ?", [report_id]))
        return _row(rows[0]) if rows else None
    return op


def list_reports(group_id: str | None, limit: int) -> Callable[[Db], list[dict[str, Any]]]:
    def op(db: Db) -> list[dict[str, Any]]:
        where, args = ("WHERE group_id = ?", [group_id]) if group_id else ("", [])
        return [_row(r) for r in db.query(f"SELECT * FROM commissioning_reports {where} ORDER BY id DESC LIMIT ?",
                                          [*args, limit])]
    return op
