"""Simulated chargers against the real central system (in process, real websockets), behaving as real chargers
do: a card refused at Authorize (Blocked) never charges; a transaction refused at its start (ConcurrentTx because
the card already charges elsewhere, or Blocked after an offline start) is stopped with reason DeAuthorized."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from csms.config import parse_config
from csms.runtime.app import CentralSystemApp
from simulators.chargepoint import SimCharger
from simulators.fleet import ChargerFleet

from .test_chargepoint import PASSWORD, config, fast_ev, until

VERSIONS = ["ocpp1.6", "ocpp2.0.1"]


def site(tmp_path, ids: list[str]) -> dict:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1},
        "storage": {"database": str(tmp_path / "csms.sqlite")},
        "organisations": [{"id": "home", "name": "Home", "authorization": "list"}],
        "id_tokens": [{"organisation": "home", "token": "CARD"},
                      {"organisation": "home", "token": "LOST", "status": "Blocked"}],
        "chargers": [{"id": i, "password": PASSWORD, "organisation": "home"} for i in ids],
    }


@asynccontextmanager
async def running(tmp_path, *chargers):
    async with CentralSystemApp(parse_config(site(tmp_path, [c.id for c in chargers]))) as app:
        fleet = ChargerFleet([SimCharger(c) for c in chargers])
        await fleet.start(f"ws://127.0.0.1:{app.port}/ocpp")
        try:
            await fleet.wait_connected(timeout=5)
            yield app, fleet
        finally:
            await fleet.stop()


async def never_draws(cp: SimCharger, seconds: float = 0.6) -> None:
    """The car is plugged in well past its ramp delay and draws nothing the whole time."""
    for _ in range(int(seconds / 0.02)):
        assert cp.draw() == (0.0, 0.0, 0.0) and cp.connectors[1].status != "Charging"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_blocked_card_never_charges(tmp_path, version):
    async with running(tmp_path, config("CP1", version, id_tag="LOST")) as (app, fleet):
        cp = fleet["CP1"]
        cp.plug_in(fast_ev())
        await never_draws(cp)
        assert cp.connectors[1].session is None
        assert not app.state.station("CP1").transactions


async def stored(app: CentralSystemApp, station: str) -> list[dict]:
    return await app.storage.read(lambda db: list(db.query("SELECT * FROM transactions WHERE station_id = ?",
                                                           [station])))


async def stopped_deauthorized(app: CentralSystemApp, station: str, token: str) -> None:
    """The station's one transaction is stored, for ``token``, stopped with reason DeAuthorized."""
    async with asyncio.timeout(5):
        while not ((rows := await stored(app, station)) and rows[0]["stopped_at"] is not None):
            await asyncio.sleep(0.05)
    assert len(rows) == 1 and rows[0]["id_token"] == token and rows[0]["stop_reason"] == "DeAuthorized"


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_card_charging_elsewhere_is_concurrent_tx_and_stopped(tmp_path, version):
    async with running(tmp_path, config("CP1", version, id_tag="CARD"),
                       config("CP2", version, id_tag="CARD")) as (app, fleet):
        fleet["CP1"].plug_in(fast_ev())
        await until(lambda: fleet["CP1"].draw()[0] > 0)
        fleet["CP2"].plug_in(fast_ev())  # Authorize: Accepted; the start: ConcurrentTx
        await stopped_deauthorized(app, "CP2", "CARD")
        await never_draws(fleet["CP2"])
        assert fleet["CP2"].connectors[1].session is None and not app.state.station("CP2").transactions
        assert fleet["CP1"].draw()[0] > 0 and app.state.station("CP1").transactions  # the first is untouched


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_card_started_offline_and_blocked_is_stopped_deauthorized(tmp_path, version):
    async with running(tmp_path, config("CP1", version, id_tag="LOST")) as (app, fleet):
        cp = fleet["CP1"]
        cp.disconnect()
        await cp.wait_connected(False)
        cp.plug_in(fast_ev())  # offline: the charger authorizes locally and charges
        await until(lambda: cp.draw()[0] > 0)
        cp.reconnect()
        await stopped_deauthorized(app, "CP1", "LOST")
        await until(lambda: cp.draw() == (0.0, 0.0, 0.0))
        assert cp.connectors[1].session is None
