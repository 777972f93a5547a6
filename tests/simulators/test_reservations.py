"""A simulated charger's reservations without a network: which connector ReserveNow takes, what it answers,
who it lets start, and its expiry (the end-to-end runs are in ``tests/web/test_reservations.py``)."""

from __future__ import annotations

import asyncio

from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.clock import SimClock
from simulators.ev import EVModel


def _charger(connectors: int = 2) -> SimCharger:
    return SimCharger(SimChargerConfig(id="CPR", connectors=connectors, tick=0.05), SimClock())


async def test_connector_zero_takes_a_free_connector_and_the_same_id_replaces_it():
    cp = _charger()
    now = cp.clock.now()
    cp.plug_in(EVModel(max_current=16.0, name="car"), 1)
    assert cp.reserve(7, 0, "CARD-A", None, now + 60) == "Accepted"
    assert cp.connectors[2].reservation is not None and cp.connectors[2].status == "Reserved"
    assert cp.reserve(8, 2, "CARD-B", None, now + 60) == "Occupied"  # reserved for another
    assert cp.reserve(9, 0, "CARD-B", None, now + 60) == "Occupied"  # nothing free
    assert cp.reserve(7, 2, "CARD-A", "HOUSE", now + 90) == "Accepted"  # the same id: replaced
    assert cp.connectors[2].reservation.parent == "HOUSE"
    assert cp.reserve(10, 3, "CARD-A", None, now + 60) == "Rejected"  # no such connector
    assert cp.cancel_reservation(11) == "Rejected"
    assert cp.cancel_reservation(7) == "Accepted" and cp.connectors[2].status == "Available"
    await cp.stop()


async def test_only_its_card_starts_offline_and_the_reservation_expires():
    cp = _charger(1)  # never connected: cards are authorized locally, so a group cannot be checked
    now = cp.clock.now()
    assert cp.reserve(1, 1, "CARD-A", "HOUSE", now + 0.3) == "Accepted"
    cp.config.id_tag = "CARD-B"
    cp.plug_in(EVModel(max_current=16.0, name="car"), 1)
    assert cp.connectors[1].session is None and cp.connectors[1].status == "Reserved"
    cp.unplug(1)
    await asyncio.sleep(0.5)
    assert cp.connectors[1].reservation is None and cp.connectors[1].status == "Available"
    assert cp.reserve(2, 1, "CARD-A", None, cp.clock.now() + 60) == "Accepted"
    cp.config.id_tag = "CARD-A"
    cp.plug_in(EVModel(max_current=16.0, name="car"), 1)
    sess = cp.connectors[1].session
    assert sess is not None and sess.reservation_id == 2 and cp.connectors[1].reservation is None
    await cp.stop()
