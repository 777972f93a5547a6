"""Reservations of a connector for an id token: the record and the rules, with no storage and no protocol.

A reservation is made by the operator (``reserve``), answered by the station (Accepted: it is in force) and
ends one way: used by the matching start, cancelled, expired (past its expiry, or the 2.0.1 station says so),
or refused (the station answered anything but Accepted). Expiry is a fact of time, not an event: a
reservation past ``expires_at`` is expired when it is read, so nothing has to run at that moment.

Who may use it follows both specs (1.6 §5.13, 2.0.1 H01): its own token, or, when it was made with a parent
(group id), any token with that same parent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

#: How long a reservation lasts when the operator says nothing, and the longest one may last (seconds).
DEFAULT_DURATION = 900
MAX_DURATION = 7 * 24 * 3600


class ReservationState(StrEnum):
    ACTIVE = "active"
    USED = "used"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"


#: States a reservation never leaves.
FINAL = frozenset({ReservationState.USED, ReservationState.CANCELLED, ReservationState.EXPIRED,
                   ReservationState.REFUSED})


@dataclass(frozen=True)
class Reservation:
    id: int
    station_id: str
    #: 1.6 connectorId / 2.0.1 evseId; 0: any connector of the station.
    connector: int
    id_token: str
    #: The token's group id when it has one (1.6 parentIdTag, 2.0.1 groupIdToken).
    parent: str | None
    expires_at: float
    state: ReservationState
    created_by: str
    created_at: float
    #: The transaction that used it.
    transaction_id: str | None = None

    def state_at(self, now: float) -> ReservationState:
        """The state at ``now``: an active reservation past its expiry is expired (no timer needed)."""
        if self.state is ReservationState.ACTIVE and now >= self.expires_at:
            return ReservationState.EXPIRED
        return self.state

    def in_force(self, now: float) -> bool:
        return self.state_at(now) is ReservationState.ACTIVE

    def at(self, now: float) -> Reservation:
        """The reservation as it stands at ``now`` (its state computed)."""
        state = self.state_at(now)
        return self if state is self.state else replace(self, state=state)


def may_use(reservation: Reservation, token: str, parent: str | None) -> bool:
    """May ``token`` (whose group id is ``parent``) use ``reservation``? Its own token, or one of its group."""
    if token == reservation.id_token:
        return True
    return reservation.parent is not None and parent == reservation.parent


def covers(reservation: Reservation, connector: int) -> bool:
    """Is ``connector`` (1.6 connectorId / 2.0.1 evseId) one the reservation holds? 0 holds any."""
    return reservation.connector == 0 or reservation.connector == connector


def transition(current: ReservationState, new: ReservationState) -> ReservationState:
    """The state after ``new`` is reported: a final state is never left (a late cancel does not undo a use)."""
    return current if current in FINAL else new


def expiry(now: float, expires_in: int | None, expires_at: float | None) -> float:
    """When a reservation made at ``now`` expires: at ``expires_at`` when given, else ``expires_in`` seconds
    later (default :data:`DEFAULT_DURATION`). Raises ValueError when it is not in (now, now + MAX_DURATION]."""
    if expires_at is None:
        expires_at = now + (DEFAULT_DURATION if expires_in is None else expires_in)
    if expires_at <= now:
        raise ValueError("the expiry is not in the future")
    if expires_at - now > MAX_DURATION:
        raise ValueError(f"a reservation lasts at most {MAX_DURATION // 86400} days")
    return expires_at
