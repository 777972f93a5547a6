"""Each operator command against simulated chargers of both versions over real websockets, through the app's
:class:`csms.ocpp.operator.OperatorCommands` (the port the write API calls): what the charger is sent, what
it answers, and what it then does (a transaction starts and stops, a reset reboots it, ...).

CP1 speaks OCPP 1.6, CP2 OCPP 2.0.1 (see :mod:`.site`).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from csms.operations.results import StationError

from .site import running_site, wait_until

VERSIONS = pytest.mark.parametrize("cid", ["CP1", "CP2"])


def _last(rig, cid: str, action: str) -> dict:
    return [p for a, p in rig.charger(cid).received if a == action][-1]


@VERSIONS
async def test_remote_start_and_stop(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        charger.config.id_tag = None  # no card: the car waits for a remote start
        rig.plug_in(cid)
        await wait_until(lambda: charger.connectors[1].ev is not None, what="the car plugged in")
        assert not app.state.station(cid).transactions

        result = await app.commands.execute(cid, "remote-start", {"id_token": "OPERATOR1", "connector": 1}, "test")
        assert result.status == "Accepted" and result.ok
        await wait_until(lambda: 1 in app.state.station(cid).transactions, what="the remote-started transaction")
        tx = app.state.station(cid).transactions[1]
        assert tx.id_token == "OPERATOR1"

        busy = await app.commands.execute(cid, "remote-start", {"id_token": "OPERATOR1", "connector": 1}, "test")
        assert busy.status == "Rejected" and not busy.ok  # a transaction runs there already

        stop = await app.commands.execute(cid, "remote-stop", {"transaction_id": tx.transaction_id}, "test")
        assert stop.status == "Accepted"
        await wait_until(lambda: not app.state.station(cid).transactions, what="the transaction to end")
        unknown = await app.commands.execute(cid, "remote-stop", {"transaction_id": "424242"}, "test")
        assert unknown.status == "Rejected"


@VERSIONS
async def test_remote_start_without_a_car_waits_then_lapses(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        charger.config.id_tag = None
        timeout = "ConnectionTimeOut" if cid == "CP1" else "TxCtrlr.EVConnectionTimeOut"
        assert (await app.commands.execute(cid, "change-configuration", {"key": timeout, "value": "1"},
                                           "test")).status == "Accepted"
        waiting = await app.commands.execute(cid, "remote-start", {"id_token": "OPERATOR1"}, "test")
        assert waiting.status == "Accepted"  # as real chargers do: accepted, then it waits for a car
        assert charger.connectors[1].remote_tag == "OPERATOR1"
        await wait_until(lambda: charger.connectors[1].remote_tag is None, timeout=5, what="the remote start to lapse")
        rig.plug_in(cid)
        await wait_until(lambda: charger.connectors[1].ev is not None, what="the car plugged in")
        await wait_until(lambda: charger.connectors[1].status == "Preparing", what="the connector to see the car")
        assert not app.state.station(cid).transactions and charger.connectors[1].session is None

        # Within the timeout, the car plugged in starts the transaction for the remote token.
        charger.unplug()
        assert (await app.commands.execute(cid, "change-configuration", {"key": timeout, "value": "30"},
                                           "test")).status == "Accepted"
        assert (await app.commands.execute(cid, "remote-start", {"id_token": "OPERATOR2"}, "test")).ok
        rig.plug_in(cid)
        await wait_until(lambda: 1 in app.state.station(cid).transactions, what="the remote-started transaction")
        assert app.state.station(cid).transactions[1].id_token == "OPERATOR2"


@VERSIONS
async def test_hard_reset_reboots_and_reconnects(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        first = app.server.sessions[cid]
        result = await app.commands.execute(cid, "reset", {"type": "hard"}, "test")
        assert result.status == "Accepted"
        assert _last(rig, cid, "Reset")["type"] == ("Hard" if cid == "CP1" else "Immediate")
        await wait_until(lambda: app.server.sessions.get(cid) not in (None, first), what="a new session after the reboot")
        await charger.wait_connected(timeout=10)
        assert app.server.sessions[cid].boots == 1  # it booted again on its new connection


async def test_soft_reset_of_a_charging_2_0_1_station_is_scheduled(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        rig.plug_in("CP2")
        await wait_until(lambda: 1 in app.state.station("CP2").transactions, what="CP2 charging")
        result = await app.commands.execute("CP2", "reset", {}, "test")
        assert result.status == "Scheduled" and result.ok
        assert _last(rig, "CP2", "Reset")["type"] == "OnIdle"
        assert app.server.sessions.get("CP2") is not None  # no reboot while it charges


@VERSIONS
async def test_unlock_availability_and_refusals(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        assert (await app.commands.execute(cid, "unlock", {"connector": 1}, "test")).status == "Unlocked"
        charger.config.misbehaviour = replace(charger.config.misbehaviour, unlock="not-supported")
        fixed = await app.commands.execute(cid, "unlock", {"connector": 1}, "test")
        assert fixed.status == ("NotSupported" if cid == "CP1" else "UnlockFailed") and not fixed.ok

        off = await app.commands.execute(cid, "change-availability", {"availability": "Inoperative"}, "test")
        assert off.status == "Accepted"
        await wait_until(lambda: not charger.connectors[1].operative, what="the connector to go inoperative")
        on = await app.commands.execute(cid, "change-availability",
                                        {"availability": "Operative", "connector": 1}, "test")
        assert on.status == "Accepted" and charger.connectors[1].operative

        rig.plug_in(cid)
        await wait_until(lambda: 1 in app.state.station(cid).transactions, what="a transaction")
        later = await app.commands.execute(cid, "change-availability",
                                           {"availability": "Inoperative", "connector": 1}, "test")
        assert later.status == "Scheduled" and charger.connectors[1].operative  # applied when the session ends


@VERSIONS
async def test_trigger_configuration_cache_and_data_transfer(tmp_path, cid):
    v16 = cid == "CP1"
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        heartbeat = "HeartbeatInterval" if v16 else "OCPPCommCtrlr.HeartbeatInterval"

        trig = await app.commands.execute(cid, "trigger-message", {"message": "StatusNotification"}, "test")
        assert trig.status == "Accepted"

        changed = await app.commands.execute(cid, "change-configuration", {"key": heartbeat, "value": "120"}, "test")
        assert changed.status == "Accepted" and charger.heartbeat_interval == 120
        read = await app.commands.execute(cid, "get-configuration", {"keys": [heartbeat]}, "test")
        assert read.status == "Accepted"
        if v16:
            assert read.reply["configurationKey"] == [{"key": "HeartbeatInterval", "readonly": False, "value": "120"}]
        else:
            (entry,) = read.reply["getVariableResult"]
            assert entry["attributeStatus"] == "Accepted" and entry["attributeValue"] == "120"
        unknown = await app.commands.execute(cid, "change-configuration",
                                             {"key": "NoSuchKey" if v16 else "NoSuchCtrlr.Thing", "value": "1"}, "test")
        assert unknown.status == ("NotSupported" if v16 else "UnknownComponent") and not unknown.ok
        if v16:
            every = await app.commands.execute(cid, "get-configuration", {}, "test")
            assert len(every.reply["configurationKey"]) > 5

        assert (await app.commands.execute(cid, "clear-cache", {}, "test")).status == "Accepted"
        echo = await app.commands.execute(cid, "data-transfer",
                                          {"vendor_id": charger.config.vendor, "message_id": "Echo", "data": "hi"},
                                          "test")
        assert echo.status == "Accepted" and echo.reply["data"] == "hi"
        other = await app.commands.execute(cid, "data-transfer", {"vendor_id": "org.example"}, "test")
        assert other.status == "UnknownVendorId"

        charger.config.misbehaviour = replace(charger.config.misbehaviour, trigger="refuse")
        refused = await app.commands.execute(cid, "trigger-message", {"message": "Heartbeat"}, "test")
        assert refused.status == "Rejected"
        charger.config.misbehaviour = replace(charger.config.misbehaviour, not_implemented_calls=frozenset({"DataTransfer"}))
        with pytest.raises(StationError) as err:
            await app.commands.execute(cid, "data-transfer", {"vendor_id": "x"}, "test")
        assert err.value.code == "NotImplemented"
