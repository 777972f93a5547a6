"""The reservations table: what the operator reserved, what the station answered and how each ended.

Ids are allocated here (a counter, so an id is never reused, even for a reservation that was refused or whose
ReserveNow got no answer: a station may still hold it). The state stored is the last one reported; expiry is
computed when read (:meth:`csms.domain.reservations.Reservation.at`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csms.storage.sql import Db

from csms.domain.reservations import Reservation, ReservationState, transition
from csms.storage.records import next_counter

COUNTER = "reservation_id"
COLUMNS = ("id, station_id, connector, id_token, parent, expires_at, state, created_by, created_at, "
           "transaction_id")
_SAVED = (*COLUMNS.split(", "), "updated_at")


def _reservation(row: dict[str, Any]) -> Reservation:
    return Reservation(row["id"], row["station_id"], row["connector"], row["id_token"], row["parent"],
                       row["expires_at"], ReservationState(row["state"]), row["created_by"], row["created_at"],
                       row["transaction_id"])


def allocate_id(db: Db) -> int:
    """A fresh reservation id (one above any ever stored, so a database restored from a copy cannot reuse one)."""
    row = db.execute("SELECT MAX(id) FROM reservations").fetchone()
    return next_counter(db, COUNTER, floor=row[0] or 0)


def save(reservation: Reservation, at: float) -> Callable[[Db], None]:
    def op(db: Db) -> None:
        r = reservation
        db.execute(db.dialect.replace("reservations", _SAVED, "id"),
                   [r.id, r.station_id, r.connector, r.id_token, r.parent, r.expires_at, r.state.value, r.created_by,
                    r.created_at, r.transaction_id, at])
    return op


def change_state(reservation_id: int, state: ReservationState, at: float,
                 transaction_id: str | None = None) -> Callable[[Db], Reservation | None]:
    """Moves a reservation to ``state`` unless it is already final; the reservation after (None: no such id)."""
    def op(db: Db) -> Reservation | None:
        rows = list(db.query(f"SELECT {COLUMNS} FROM reservations WHERE id = ?", [reservation_id]))
        if not rows:
            return None
        before = _reservation(rows[0])
        new = transition(before.state, state)
        if new is not before.state:
            db.execute("UPDATE reservations SET state = ?, transaction_id = COALESCE(?, transaction_id), "
                       "updated_at = ? WHERE id = ?", [new.value, transaction_id, at, reservation_id])
        rows = list(db.query(f"SELECT {COLUMNS} FROM reservations WHERE id = ?", [reservation_id]))
        return _reservation(rows[0])
    return op


def active(db: Db) -> list[Reservation]:
    """Every reservation stored as active (some may be past their expiry)."""
    return [_reservation(r) for r in db.query(f"SELECT {COLUMNS} FROM reservations WHERE state = 'active'")]


def listing(now: float, station_id: str | None = None, state: ReservationState | None = None,
            limit: int = 200) -> Callable[[Db], list[Reservation]]:
    """Reservations newest first, as they stand at ``now`` (an active one past its expiry is expired)."""
    def op(db: Db) -> list[Reservation]:
        sql, args = f"SELECT {COLUMNS} FROM reservations", []
        if station_id is not None:
            sql, args = sql + " WHERE station_id = ?", [station_id]
        out = []
        for row in db.query(sql + " ORDER BY id DESC", args):
            r = _reservation(row).at(now)
            if state is None or r.state is state:
                out.append(r)
                if len(out) >= limit:
                    break
        return out
    return op
