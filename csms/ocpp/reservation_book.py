"""The reservations in force, kept in memory for the live view and stored for the record.

Both the operator's commands (:mod:`csms.ocpp.reservations`) and the stations' messages (a start that uses a
reservation, a 2.0.1 ReservationStatusUpdate) change a reservation through this book, so the memory, the
``reservations`` table and the event log (``kind = reservation``) always agree. No protocol here: the
inbound handlers reach it through the session context, the commands through :class:`ReservationCommands`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from csms.domain.reservations import Reservation, ReservationState
from csms.storage import reservations as table
from csms.storage.database import Storage
from csms.storage.records import log_event

log = logging.getLogger("csms.ocpp.reservations")

#: An active reservation this long past its expiry is dropped from memory (it stays expired in storage).
FORGET_AFTER = 3600.0


class ReservationBook:
    def __init__(self, storage: Storage, clock: Callable[[], float]):
        self.storage = storage
        self.clock = clock
        #: Reservations stored as active, by id (some may be past their expiry: see :meth:`of_station`).
        self.active: dict[int, Reservation] = {}

    async def load(self) -> None:
        self.active = {r.id: r for r in await self.storage.read(table.active)}

    async def new_id(self) -> int:
        return await self.storage.write(table.allocate_id)

    async def record(self, reservation: Reservation, by: str) -> None:
        """Stores a new reservation (active or refused) and logs it."""
        now = self.clock()
        await self.storage.write(table.save(reservation, now))
        if reservation.state is ReservationState.ACTIVE:
            self.active[reservation.id] = reservation
        self._log(reservation, by, connector=reservation.connector, id_token=reservation.id_token,
                  expires_at=reservation.expires_at)

    async def change(self, station_id: str, reservation_id: int, state: ReservationState, by: str,
                     transaction_id: str | None = None) -> Reservation | None:
        """Moves an active reservation of ``station_id`` to ``state``; None when the station has no such active
        reservation (an unknown id, another station's, or one that already ended: a final state is never left)."""
        held = self.active.get(reservation_id)
        if held is None or held.station_id != station_id:
            log.warning("%s: reservation %s is not an active reservation of this station (%s ignored)", station_id,
                        reservation_id, state)
            return None
        after = await self.storage.write(table.change_state(reservation_id, state, self.clock(), transaction_id))
        self.active.pop(reservation_id, None)
        if after is not None:
            self._log(after, by, transaction_id=transaction_id)
        return after

    def of_station(self, station_id: str) -> list[Reservation]:
        """The station's reservations in force now, oldest first."""
        now = self.clock()
        for rid in [rid for rid, r in self.active.items() if now - r.expires_at > FORGET_AFTER]:
            del self.active[rid]
        return sorted((r for r in self.active.values() if r.station_id == station_id and r.in_force(now)),
                      key=lambda r: r.id)

    def _log(self, r: Reservation, by: str, **detail: object) -> None:
        self.storage.write_nowait(log_event("reservation", self.clock(), station_id=r.station_id,
                                            reservation_id=r.id, state=r.state.value, by=by,
                                            **{k: v for k, v in detail.items() if v is not None}))
