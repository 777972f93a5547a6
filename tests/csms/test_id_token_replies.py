"""What a real central system answers about id tokens over OCPP 1.6 and 2.0.1: statuses, parents, ConcurrentTx,
and run-time changes that hold across a restart. Every reply is checked against the version's schema."""

from __future__ import annotations

import pytest

from csms.runtime.app import CentralSystemApp
from tests.csms.harness import raw_station, site_config
from tests.csms.test_server import NOW, assert_valid_reply, tx_event


@pytest.fixture
async def app(tmp_path):
    async with CentralSystemApp(site_config(tmp_path)) as app:
        yield app


def start16(connector: int, tag: str, meter: int = 0) -> dict:
    return {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": NOW}


async def test_ocpp16_statuses_parent_and_concurrent_tx(app):
    async with raw_station(app, "CP0003") as st:
        async def call(action: str, payload: dict) -> dict:
            return assert_valid_reply(await st.call(action, payload), action, "1.6")

        assert (await call("Authorize", {"idTag": "LOST"}))["idTagInfo"] == {"status": "Blocked"}
        assert (await call("Authorize", {"idTag": "KID"}))["idTagInfo"] == {"status": "Accepted",
                                                                             "parentIdTag": "FAMILY"}
        assert (await call("Authorize", {"idTag": "NOBODY"}))["idTagInfo"] == {"status": "Invalid"}

        first = await call("StartTransaction", start16(1, "GOOD"))
        assert first["idTagInfo"]["status"] == "Accepted"
        again = await call("StartTransaction", start16(1, "GOOD"))  # the same start resent: same id, not concurrent
        assert again == first
        # ConcurrentTx answers a start only: the card may still authorize (e.g. to end its own session).
        assert (await call("Authorize", {"idTag": "GOOD"}))["idTagInfo"]["status"] == "Accepted"
        second = await call("StartTransaction", start16(2, "GOOD", 500))
        assert second["idTagInfo"]["status"] == "ConcurrentTx"
        # OCPP 1.6: the central system still assigns an id and records the transaction; the charger stops it.
        assert second["transactionId"] != first["transactionId"]
        assert app.state.stations["CP0003"].transactions[2].transaction_id == str(second["transactionId"])
        stop = await call("StopTransaction", {"transactionId": second["transactionId"], "meterStop": 500,
                                              "timestamp": NOW, "idTag": "GOOD", "reason": "DeAuthorized"})
        assert stop["idTagInfo"] == {"status": "Accepted"}
        blocked = await call("StartTransaction", start16(2, "LOST", 500))
        assert blocked["idTagInfo"]["status"] == "Blocked" and blocked["transactionId"] > second["transactionId"]


async def test_ocpp201_statuses_group_id_token_and_concurrent_tx(app):
    async with raw_station(app, "CP0003", subprotocol="ocpp2.0.1") as st:
        async def call(action: str, payload: dict) -> dict:
            return assert_valid_reply(await st.call(action, payload), action, "2.0.1")

        def token(t: str) -> dict:
            return {"idToken": t, "type": "ISO14443"}

        assert (await call("Authorize", {"idToken": token("LOST")}))["idTokenInfo"] == {"status": "Blocked"}
        assert (await call("Authorize", {"idToken": token("KID")}))["idTokenInfo"] == {
            "status": "Accepted", "groupIdToken": {"idToken": "FAMILY", "type": "Central"}}
        assert (await call("Authorize", {"idToken": token("NOBODY")}))["idTokenInfo"] == {"status": "Unknown"}

        r = await call("TransactionEvent", tx_event("Started", 0, "T-1", idToken=token("GOOD"), evse={"id": 1}))
        assert r["idTokenInfo"]["status"] == "Accepted"
        r = await call("TransactionEvent", tx_event("Updated", 1, "T-1", idToken=token("GOOD"), evse={"id": 1}))
        assert r["idTokenInfo"]["status"] == "Accepted"  # its own transaction is not elsewhere
        assert (await call("Authorize", {"idToken": token("GOOD")}))["idTokenInfo"]["status"] == "Accepted"
        r = await call("TransactionEvent", tx_event("Started", 0, "T-2", idToken=token("GOOD"), evse={"id": 2}))
        assert r["idTokenInfo"]["status"] == "ConcurrentTx"
        r = await call("TransactionEvent", tx_event("Started", 0, "T-2", idToken=token("GOOD"), evse={"id": 2}))
        assert r["idTokenInfo"]["status"] == "ConcurrentTx"  # the same Started resent: answered the same
        assert app.state.find_transaction("CP0003", "T-2") is not None  # recorded; the station ends it
        r = await call("TransactionEvent", tx_event("Ended", 1, "T-2", idToken=token("GOOD"), evse={"id": 2},
                                                    info={"stoppedReason": "DeAuthorized"}))
        assert r["idTokenInfo"]["status"] == "Accepted"
        r = await call("TransactionEvent", tx_event("Started", 0, "T-3", idToken=token("KID"), evse={"id": 2}))
        assert r["idTokenInfo"]["groupIdToken"] == {"idToken": "FAMILY", "type": "Central"}


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_card_blocked_at_run_time_stays_blocked_after_a_restart(tmp_path, version):
    async def status(app: CentralSystemApp, tag: str) -> str:
        async with raw_station(app, "CP0003", subprotocol=version) as st:
            if version == "ocpp1.6":
                return (await st.call("Authorize", {"idTag": tag}))[2]["idTagInfo"]["status"]
            reply = await st.call("Authorize", {"idToken": {"idToken": tag, "type": "ISO14443"}})
            return reply[2]["idTokenInfo"]["status"]

    cfg = site_config(tmp_path)
    async with CentralSystemApp(cfg) as app:
        assert await status(app, "GOOD") == "Accepted"
        await app.tokens.block_token("strict", "GOOD", by="test")
        await app.tokens.unblock_token("strict", "LOST", by="test")
        assert await status(app, "GOOD") == "Blocked"
    async with CentralSystemApp(cfg) as app:
        assert await status(app, "GOOD") == "Blocked"
        assert await status(app, "LOST") == "Accepted"
