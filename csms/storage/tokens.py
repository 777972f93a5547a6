"""Id tokens changed at run time: one row per token in ``id_tokens``, written with its event-log entry.

A row overrides the config's entry for the same (organisation, token); a row with ``deleted = 1`` is a token
deleted at run time, so a deleted config entry stays deleted after a restart. Rows hold plain values; the
rules stay in :mod:`csms.domain.authorization`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from csms.storage.sql import Db

from csms.domain.tokens import IdToken, TokenStatus
from csms.storage.records import log_event


def stored_tokens(db: Db) -> list[tuple[tuple[str, str], IdToken | None]]:
    """Every run-time change as ((organisation, token), entry or None when deleted)."""
    out: list[tuple[tuple[str, str], IdToken | None]] = []
    for row in db.query("SELECT * FROM id_tokens ORDER BY organisation, token"):
        key = (row["organisation"], row["token"])
        if row["deleted"]:
            out.append((key, None))
            continue
        expiry = datetime.fromisoformat(row["expiry"]) if row["expiry"] else None
        out.append((key, IdToken(row["organisation"], row["token"], TokenStatus(row["status"]), expiry,
                                 row["parent"], bool(row["concurrent"]))))
    return out


def save_token(key: tuple[str, str], entry: IdToken | None, at: float, by: str, kind: str,
               **detail: object) -> Callable[[Db], None]:
    """Stores a change (``entry`` None: deleted) and logs it as ``kind`` with who asked, in one transaction."""
    organisation, token = key
    event = log_event(kind, at, organisation=organisation, token=token, by=by, **detail)

    def op(db: Db) -> None:
        if entry is None:
            values = [organisation, token, TokenStatus.ACCEPTED.value, None, None, 0, 1, at, by]
        else:
            values = [organisation, token, entry.status.value,
                      entry.expiry.isoformat() if entry.expiry is not None else None, entry.parent,
                      int(entry.concurrent), 0, at, by]
        db.execute(
            """INSERT INTO id_tokens (organisation, token, status, expiry, parent, concurrent, deleted, updated_at,
               updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(organisation, token) DO UPDATE SET status = excluded.status, expiry = excluded.expiry,
               parent = excluded.parent, concurrent = excluded.concurrent, deleted = excluded.deleted,
               updated_at = excluded.updated_at, updated_by = excluded.updated_by""",
            values,
        )
        event(db)
    return op
