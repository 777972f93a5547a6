"""The reservation book over real SQLite storage: ids never reused, states kept across a restart, a start
from another station or a second end ignored, expiry computed when listed."""

from __future__ import annotations

from csms.domain.reservations import Reservation, ReservationState
from csms.ocpp.reservation_book import ReservationBook
from csms.storage import reservations as table
from csms.storage.database import Storage

ACTIVE, USED = ReservationState.ACTIVE, ReservationState.USED


async def test_ids_states_and_a_restart(tmp_path):
    now = [1_000.0]
    path = str(tmp_path / "csms.sqlite")
    async with Storage(path) as storage:
        book = ReservationBook(storage, lambda: now[0])
        a, b, c = await book.new_id(), await book.new_id(), await book.new_id()
        assert a < b < c
        await book.record(Reservation(a, "CP1", 1, "CARD-A", "HOUSE", 2_000.0, ACTIVE, "test", now[0]), "test")
        await book.record(Reservation(b, "CP1", 0, "CARD-B", None, 1_100.0, ACTIVE, "test", now[0]), "test")
        await book.record(Reservation(c, "CP2", 1, "CARD-C", None, 2_000.0, ReservationState.REFUSED, "test",
                                      now[0]), "test")
        assert [r.id for r in book.of_station("CP1")] == [a, b] and book.of_station("CP2") == []
        assert await book.change("CP2", a, USED, "StartTransaction", "17") is None  # not CP2's
        used = await book.change("CP1", a, USED, "StartTransaction", "17")
        assert used is not None and used.state is USED and used.transaction_id == "17"
        assert await book.change("CP1", a, ReservationState.CANCELLED, "api") is None  # already ended
    now[0] = 1_200.0  # b is past its expiry
    async with Storage(path) as storage:
        book = ReservationBook(storage, lambda: now[0])
        await book.load()
        assert set(book.active) == {b} and book.of_station("CP1") == []
        listed = await storage.read(table.listing(now[0]))
        assert [(r.id, r.state.value) for r in listed] == [(c, "refused"), (b, "expired"), (a, "used")]
        assert [r.id for r in await storage.read(table.listing(now[0], "CP1", USED))] == [a]
        assert await book.new_id() > c  # never reused after a restart
