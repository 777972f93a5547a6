"""A charger's reservations, as real chargers keep them: ReserveNow, CancelReservation, expiry, and who may
start on a reserved connector.

While a connector is reserved (status Reserved) only the reserved card, or a card of its group, may start
there. The group is known from the parent the central system sent with ReserveNow: a card other than the
reserved one is authorized first, and its Authorize answer's parent must be that one (1.6 §5.13); without a
parent any other card is refused at once, locally, and no transaction starts. The start that uses the
reservation carries its id (1.6 StartTransaction / 2.0.1 TransactionEvent reservationId) and ends it. At its
expiry the connector is Available again (a 2.0.1 charger also sends ReservationStatusUpdate Expired).

Mixed into :class:`~simulators.charger.Charger`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.connector import Connector, Reservation, Session
from simulators.outbox import Outgoing

if TYPE_CHECKING:
    from collections.abc import Coroutine

log = logging.getLogger(__name__)


class ChargerReservations:
    id: str
    config: SimChargerConfig
    clock: SimClock
    connectors: dict[int, Connector]

    if TYPE_CHECKING:  # provided by the other mixins on the charger
        def queue(self, item: Outgoing) -> None: ...
        def _refresh_status(self, conn: Connector) -> None: ...
        def _spawn(self, coro: Coroutine, name: str) -> None: ...

    def reserve(self, reservation_id: int, connector: int, id_tag: str, parent: str | None,
                expires_at: float) -> str:
        """ReserveNow: Accepted, Occupied (a car or another reservation is there), Unavailable (inoperative),
        Rejected (no such connector, or the misbehaviour says so). Connector 0 (any) takes the first free one."""
        if self.config.misbehaviour.reserve == "refuse":
            return "Rejected"
        if connector == 0:
            free = [c for c in self.connectors.values() if c.operative and c.session is None and c.ev is None
                    and (c.reservation is None or c.reservation.id == reservation_id)]
            if not free:
                return "Occupied" if any(c.operative for c in self.connectors.values()) else "Unavailable"
            conn = free[0]
        elif connector in self.connectors:
            conn = self.connectors[connector]
        else:
            return "Rejected"
        if not conn.operative:
            return "Unavailable"
        if conn.session is not None or conn.ev is not None:
            return "Occupied"
        if conn.reservation is not None and conn.reservation.id != reservation_id:
            return "Occupied"
        for other in self.connectors.values():  # the same id again replaces the reservation (both specs)
            if other.reservation is not None and other.reservation.id == reservation_id:
                other.reservation = None
                self._refresh_status(other)
        res = Reservation(reservation_id, id_tag, parent, expires_at)
        conn.reservation = res
        self._refresh_status(conn)
        self._spawn(self._expire(conn, res), f"{self.id}-reservation-{reservation_id}")
        return "Accepted"

    def cancel_reservation(self, reservation_id: int) -> str:
        """CancelReservation: Accepted and the connector Available again, Rejected for an id it does not hold."""
        for conn in self.connectors.values():
            if conn.reservation is not None and conn.reservation.id == reservation_id:
                conn.reservation = None
                self._refresh_status(conn)
                return "Accepted"
        return "Rejected"

    def refused_by_reservation(self, conn: Connector, id_tag: str, will_authorize: bool) -> bool:
        """Is ``id_tag`` refused at ``conn`` before anything is sent? Yes when the connector is reserved for
        another card and the card's group cannot be learnt (no parent in the reservation, or no Authorize)."""
        res = conn.reservation
        return res is not None and id_tag != res.id_tag and (res.parent is None or not will_authorize)

    def claim_reservation(self, conn: Connector, sess: Session, parent: str | None) -> bool:
        """The session's card is authorized (``parent``: its group, when known): it takes the connector's
        reservation if it may use it (then its start names it). False: reserved for another card."""
        res = conn.reservation
        if res is None:
            return True
        if sess.id_tag != res.id_tag and (res.parent is None or parent != res.parent):
            log.info("%s: connector %s is reserved for %s; %s refused", self.id, conn.id, res.id_tag, sess.id_tag)
            return False
        conn.reservation = None
        sess.reservation_id = res.id
        return True

    async def _expire(self, conn: Connector, res: Reservation) -> None:
        await self.clock.sleep(max(0.0, res.expires_at - self.clock.now()))
        if conn.reservation is res:
            log.info("%s: reservation %s on connector %s expired", self.id, res.id, conn.id)
            conn.reservation = None
            self._refresh_status(conn)
            self.queue(Outgoing(f"reservation {res.id}",
                                lambda proto, r=res.id: proto.send_reservation_ended(r, "Expired")))
