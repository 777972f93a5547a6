"""The OCPP server over real websockets on 127.0.0.1: both versions, security, bad input, persistence."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl

import pytest
import websockets
from ocpp.messages import CallResult, _validate_payload
from websockets.asyncio.client import connect

from csms.runtime.app import CentralSystemApp
from tests.csms.certs import make_pki
from tests.csms.harness import PASSWORDS, RawStation, basic_auth, raw_station, site_config

NOW = "2026-11-24T10:00:00.000Z"


@pytest.fixture
async def app(tmp_path):
    async with CentralSystemApp(site_config(tmp_path)) as app:
        yield app


def assert_valid_reply(frame: list, action: str, version: str) -> dict:
    assert frame[0] == 3, f"expected CALLRESULT for {action}, got {frame}"
    result = CallResult(frame[1], frame[2], action=action)
    _validate_payload(result, version)  # raises if the reply is not schema-valid
    return frame[2]


SV16 = [{"measurand": "Current.Import", "phase": p, "unit": "A", "value": v} for p, v in
        (("L1", "10.5"), ("L2", "0.2"), ("L3", "0.1"))] + [{"value": "1500", "unit": "Wh"}]


async def test_ocpp16_core_messages_get_valid_replies_and_update_state(app):
    async with raw_station(app, "CP0001") as st:
        r = assert_valid_reply(await st.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
                               "BootNotification", "1.6")
        assert r["status"] == "Accepted" and r["interval"] == 300
        assert_valid_reply(await st.call("Heartbeat", {}), "Heartbeat", "1.6")
        assert_valid_reply(await st.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                                                 "status": "Preparing"}), "StatusNotification", "1.6")
        r = assert_valid_reply(await st.call("Authorize", {"idTag": "ANY"}), "Authorize", "1.6")
        assert r["idTagInfo"]["status"] == "Accepted"
        r = assert_valid_reply(await st.call("StartTransaction", {"connectorId": 1, "idTag": "ANY", "meterStart": 1000,
                                                                   "timestamp": NOW}), "StartTransaction", "1.6")
        tx = r["transactionId"]
        assert app.state.stations["CP0001"].transactions[1].transaction_id == str(tx)
        assert_valid_reply(await st.call("MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
            {"timestamp": NOW, "sampledValue": SV16}]}), "MeterValues", "1.6")
        sample = app.state.stations["CP0001"].samples[1]
        assert sample.current == (10.5, 0.2, 0.1) and sample.energy_wh == 1500 and sample.phases_in_use == (1,)
        for action, payload in (("DataTransfer", {"vendorId": "acme"}),
                                ("DiagnosticsStatusNotification", {"status": "Idle"}),
                                ("FirmwareStatusNotification", {"status": "Idle"})):
            assert_valid_reply(await st.call(action, payload), action, "1.6")
        assert_valid_reply(await st.call("StopTransaction", {"transactionId": tx, "meterStop": 2500, "timestamp": NOW,
                                                              "reason": "EVDisconnected"}), "StopTransaction", "1.6")
        assert app.state.stations["CP0001"].transactions == {}
    rows = await app.storage.read(lambda db: list(db.query("SELECT * FROM transactions")))
    assert rows[0]["meter_stop_wh"] == 2500 and rows[0]["stop_reason"] == "EVDisconnected"
    mv = await app.storage.read(lambda db: list(db.query("SELECT * FROM meter_values")))
    assert len(mv) == 1 and mv[0]["current_l1"] == 10.5


def tx_event(event_type: str, seq: int, tx: str = "T-1", **extra) -> dict:
    return {"eventType": event_type, "timestamp": NOW, "triggerReason": "Authorized", "seqNo": seq,
            "transactionInfo": {"transactionId": tx, **extra.pop("info", {})}, **extra}


async def test_ocpp201_messages_get_valid_replies_and_seqno_is_recorded_once(app):
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        r = assert_valid_reply(await st.call("BootNotification", {"chargingStation": {"model": "M", "vendorName": "V"},
                                                                   "reason": "PowerUp"}), "BootNotification", "2.0.1")
        assert r["status"] == "Accepted"
        assert_valid_reply(await st.call("StatusNotification", {"timestamp": NOW, "connectorStatus": "Occupied",
                                                                 "evseId": 1, "connectorId": 1}),
                           "StatusNotification", "2.0.1")
        mv = [{"timestamp": NOW, "sampledValue": [
            {"value": 7.0, "measurand": "Current.Import", "phase": "L2", "unitOfMeasure": {"unit": "A"}},
            {"value": 1.5, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh"}}]}]
        started = tx_event("Started", 0, idToken={"idToken": "X", "type": "ISO14443"}, evse={"id": 1, "connectorId": 1},
                           info={"chargingState": "Charging"}, meterValue=mv)
        r = assert_valid_reply(await st.call("TransactionEvent", started), "TransactionEvent", "2.0.1")
        assert r["idTokenInfo"]["status"] == "Accepted"
        # The same seqNo again (a resend after a reconnect) is acknowledged but recorded once.
        assert_valid_reply(await st.call("TransactionEvent", started), "TransactionEvent", "2.0.1")
        station = app.state.stations["CP0002"]
        assert station.transactions[1].transaction_id == "T-1"
        assert station.samples[1].current == (None, 7.0, None) and station.samples[1].energy_wh == 1500
        assert station.connectors[1].status == "Charging"
        assert_valid_reply(await st.call("MeterValues", {"evseId": 1, "meterValue": mv}), "MeterValues", "2.0.1")
        others = [
            ("NotifyEvent", {"generatedAt": NOW, "seqNo": 0, "eventData": [
                {"eventId": 1, "timestamp": NOW, "trigger": "Alerting", "actualValue": "x",
                 "eventNotificationType": "HardWiredNotification", "component": {"name": "EVSE"},
                 "variable": {"name": "Problem"}}]}),
            ("NotifyReport", {"requestId": 1, "generatedAt": NOW, "seqNo": 0}),
            ("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": NOW}),
            ("FirmwareStatusNotification", {"status": "Idle"}),
            ("LogStatusNotification", {"status": "Idle"}),
            ("DataTransfer", {"vendorId": "acme"}),
            ("NotifyChargingLimit", {"chargingLimit": {"chargingLimitSource": "EMS"}}),
            ("ReportChargingProfiles", {"requestId": 1, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [
                {"id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                 "chargingProfileKind": "Relative", "chargingSchedule": [
                    {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}]}]}]}),
            ("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_three_phase"}}),
            ("NotifyEVChargingSchedule", {"timeBase": NOW, "evseId": 1, "chargingSchedule": {
                "id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}}),
            ("Heartbeat", {}),
            ("Authorize", {"idToken": {"idToken": "X", "type": "ISO14443"}}),
        ]
        for action, payload in others:
            assert_valid_reply(await st.call(action, payload), action, "2.0.1")
        ended = tx_event("Ended", 1, info={"stoppedReason": "EVDisconnected"}, triggerReason="EVCommunicationLost")
        assert_valid_reply(await st.call("TransactionEvent", ended), "TransactionEvent", "2.0.1")
        assert station.transactions == {}
    events = await app.storage.read(lambda db: list(db.query("SELECT * FROM transaction_events")))
    assert [e["seq_no"] for e in events] == [0, 1]
    tx = await app.storage.read(lambda db: list(db.query("SELECT * FROM transactions")))
    assert tx[0]["stop_reason"] == "EVDisconnected" and tx[0]["meter_start_wh"] == 1500


BAD_INPUTS = [
    # (frame, 1.6 error code, 2.0.1 error code, message id expected)
    ("{not json", "FormationViolation", "RpcFrameworkError", "-1"),
    ('{"a": 1}', "FormationViolation", "RpcFrameworkError", "-1"),
    ('[2, "b1"]', "ProtocolError", "RpcFrameworkError", "b1"),
    ('[7, "b2", "Heartbeat", {}]', "FormationViolation", "MessageTypeNotSupported", "b2"),
    ('[2, "b3", "NoSuchAction", {}]', "NotImplemented", "NotImplemented", "b3"),
    ('[2, "b4", "Reset", {"type": "Hard"}]', "NotSupported", "NotSupported", "b4"),
    ('[2, "b5", "Heartbeat", {"extra": 1}]', "FormationViolation", "FormatViolation", "b5"),
    ('[2, "b6", "Heartbeat", []]', "FormationViolation", "FormatViolation", "b6"),
    ('[2, "b7", "Authorize", {}]', "ProtocolError", "ProtocolError", "b7"),
]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_bad_input_gets_the_spec_error_and_the_session_survives(app, version):
    async with raw_station(app, "CP0001", subprotocol=version) as st:
        for frame, code16, code201, uid in BAD_INPUTS:
            reply = await st.send_raw(frame)
            expected = code16 if version == "ocpp1.6" else code201
            assert reply[0] == 4 and reply[1] == uid and reply[2] == expected, (frame, reply)
        # Wrong types and too-long strings are TypeConstraintViolation in both versions.
        if version == "ocpp1.6":
            reply = await st.call("Authorize", {"idTag": 42})
            assert reply[2] == "TypeConstraintViolation"
            reply = await st.call("Authorize", {"idTag": "x" * 30})
            assert reply[2] == "TypeConstraintViolation"
        else:
            reply = await st.call("Heartbeat", {"customData": 5})
            assert reply[2] == "TypeConstraintViolation"
        assert (await st.call("Heartbeat", {}))[0] == 3  # still connected and served


async def test_oversized_frame_is_refused_without_harming_others(tmp_path):
    async with CentralSystemApp(site_config(tmp_path, max_message_size=2048)) as app:
        async with raw_station(app, "CP0002") as other:
            async with raw_station(app, "CP0001") as st:
                await st.ws.send(json.dumps([2, "big", "DataTransfer", {"vendorId": "v", "data": "x" * 5000}]))
                with pytest.raises(websockets.ConnectionClosed) as info:
                    await asyncio.wait_for(st.ws.recv(), 5)
                assert info.value.rcvd.code == 1009  # message too big
            assert (await other.call("Heartbeat", {}))[0] == 3


async def test_flooding_station_is_throttled_but_answered(tmp_path):
    async with CentralSystemApp(site_config(tmp_path, rate_limit=200, rate_burst=5)) as app:
        async with raw_station(app, "CP0001") as st:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            for i in range(40):
                await st.ws.send(json.dumps([2, f"h{i}", "Heartbeat", {}]))
            replies = []
            while len(replies) < 40:
                frame = json.loads(await asyncio.wait_for(st.ws.recv(), 5))
                if frame[0] != 2:  # skip the CSMS's own calls (set-up of the new station)
                    replies.append(frame)
            assert all(r[0] == 3 for r in replies)
            assert loop.time() - t0 >= (40 - 5) / 200 * 0.8
            assert app.server.sessions["CP0001"].throttled > 0


async def test_handshake_refusals(app):
    url = f"ws://127.0.0.1:{app.port}/ocpp"
    cases = [
        (f"{url}/NOPE", basic_auth("NOPE", "0123456789abcdef"), ["ocpp1.6"], 404),
        (f"{url}/CP0001", basic_auth("CP0001", "wrong-password-123"), ["ocpp1.6"], 401),
        (f"{url}/CP0001", {}, ["ocpp1.6"], 401),
        (f"{url}/CP0001", basic_auth("CP0002", PASSWORDS["CP0002"]), ["ocpp1.6"], 401),
        (f"{url}/CP0001", basic_auth("CP0001", PASSWORDS["CP0001"]), ["ocpp2.0"], 400),
        (f"ws://127.0.0.1:{app.port}/other/CP0001", basic_auth("CP0001", PASSWORDS["CP0001"]), ["ocpp1.6"], 404),
    ]
    for uri, headers, protocols, status in cases:
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(uri, subprotocols=protocols, additional_headers=headers, open_timeout=5):
                pass
        assert info.value.response.status_code == status, uri
    # Query strings and percent-encoding in the path are handled.
    async with connect(f"{url}/CP0001?x=1", subprotocols=["ocpp1.6", "ocpp2.0.1"],
                       additional_headers=basic_auth("CP0001", PASSWORDS["CP0001"])) as ws:
        assert ws.subprotocol == "ocpp2.0.1"


async def test_malformed_credentials_are_refused_as_unauthorized(app):
    url = f"ws://127.0.0.1:{app.port}/ocpp/CP0001"
    password = PASSWORDS["CP0001"].encode()
    for header in ("Bearer " + PASSWORDS["CP0001"], "Basic !!!", "Basic " + base64.b64encode(b"CP0001").decode(),
                   "Basic " + base64.b64encode(b"CP0001:" + password[:-1] + b"\xff").decode()):  # not UTF-8
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(url, subprotocols=["ocpp1.6"], additional_headers={"Authorization": header},
                               open_timeout=5):
                pass
        assert info.value.response.status_code == 401, header
    async with connect(url, subprotocols=["ocpp1.6"], additional_headers=basic_auth("CP0001", PASSWORDS["CP0001"])):
        pass


async def test_profile_0_needs_no_password(tmp_path):
    async with CentralSystemApp(site_config(tmp_path, profile=0)) as app:
        async with connect(f"ws://127.0.0.1:{app.port}/ocpp/CP0001", subprotocols=["ocpp1.6"]) as ws:
            assert (await RawStation(ws).call("Heartbeat", {}))[0] == 3


def client_tls(pki, cert=None, key=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


async def test_profile_2_tls_plus_basic_auth(tmp_path):
    pki = make_pki(tmp_path)
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key)}
    async with CentralSystemApp(site_config(tmp_path, profile=2, tls=tls)) as app:
        async with raw_station(app, "CP0001", ssl_ctx=client_tls(pki)) as st:
            assert (await st.call("Heartbeat", {}))[0] == 3
        with pytest.raises(websockets.InvalidStatus) as info:
            async with raw_station(app, "CP0001", password="wrong-password-123", ssl_ctx=client_tls(pki)):
                pass
        assert info.value.response.status_code == 401
        with pytest.raises((websockets.InvalidMessage, ConnectionError, OSError, asyncio.TimeoutError)):
            async with connect(f"ws://127.0.0.1:{app.port}/ocpp/CP0001", subprotocols=["ocpp1.6"], open_timeout=3):
                pass


async def test_profile_3_mutual_tls_identity_from_certificate(tmp_path):
    pki = make_pki(tmp_path)
    tls = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_ca": str(pki.ca_cert)}
    async with CentralSystemApp(site_config(tmp_path, profile=3, tls=tls)) as app:
        url = f"wss://127.0.0.1:{app.port}/ocpp"
        good = client_tls(pki, *pki.client("CP0001"))
        async with connect(f"{url}/CP0001", subprotocols=["ocpp2.0.1"], ssl=good) as ws:
            assert (await RawStation(ws).call("Heartbeat", {}))[0] == 3
        other = client_tls(pki, *pki.client("CP0002"))
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(f"{url}/CP0001", subprotocols=["ocpp2.0.1"], ssl=other):
                pass
        assert info.value.response.status_code == 403
        with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage, OSError)):
            async with connect(f"{url}/CP0001", subprotocols=["ocpp2.0.1"], ssl=client_tls(pki), open_timeout=3) as ws:
                await ws.recv()


async def test_second_connection_replaces_the_first(app):
    async with raw_station(app, "CP0001") as first:
        async with raw_station(app, "CP0001") as second:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(first.ws.recv(), 5)
            assert (await second.call("Heartbeat", {}))[0] == 3
            assert app.state.stations["CP0001"].connected
            assert len(app.server.sessions) == 1
    await asyncio.sleep(0.05)
    assert not app.state.stations["CP0001"].connected


async def test_restart_loses_nothing_acknowledged(tmp_path):
    cfg = site_config(tmp_path)
    start = {"connectorId": 1, "idTag": "T", "meterStart": 100, "timestamp": NOW}
    async with CentralSystemApp(cfg) as app:
        async with raw_station(app, "CP0001") as st:
            first = (await st.call("StartTransaction", start))[2]["transactionId"]
            again = (await st.call("StartTransaction", start))[2]["transactionId"]
            assert again == first  # a resent StartTransaction gets the same id
            await st.call("MeterValues", {"connectorId": 1, "transactionId": first,
                                          "meterValue": [{"timestamp": NOW, "sampledValue": SV16}]})
        async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
            await st.call("TransactionEvent", tx_event("Started", 0, tx="B-1", evse={"id": 1}))
    async with CentralSystemApp(cfg) as app:
        assert app.state.stations["CP0001"].transactions[1].transaction_id == str(first)
        assert app.state.stations["CP0002"].transactions[1].transaction_id == "B-1"
        async with raw_station(app, "CP0001") as st:
            nxt = (await st.call("StartTransaction", {**start, "connectorId": 2, "timestamp": "2026-11-24T11:00:00Z"}))
            assert nxt[2]["transactionId"] > first  # monotonic across restarts
            await st.call("StopTransaction", {"transactionId": first, "meterStop": 900, "timestamp": NOW})
            await st.call("StopTransaction", {"transactionId": first, "meterStop": 900, "timestamp": NOW})
        async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
            await st.call("TransactionEvent", tx_event("Ended", 1, tx="B-1"))
        rows = await app.storage.read(lambda db: {r["transaction_id"]: r for r in db.query("SELECT * FROM transactions")})
        assert rows[str(first)]["meter_stop_wh"] == 900 and rows["B-1"]["stopped_at"] is not None
        mv = await app.storage.read(lambda db: db.execute("SELECT count(*) FROM meter_values").fetchone()[0])
        assert mv == 1


async def test_a_transaction_the_station_lost_is_superseded_by_the_next_on_its_connector(tmp_path):
    """Found by a user test: a station that lost its session (power cut, reboot) and started another on the same
    connector left the first "running" for good; after a restart it was restored and sent TxProfiles for a
    transaction the station no longer knew, whose refusals walked the delivery off TxProfile. The next start
    on the connector ends it; the station's own stop, arriving late, still says how it ended."""
    cfg = site_config(tmp_path)
    start = {"connectorId": 1, "idTag": "T", "meterStart": 100, "timestamp": NOW}
    async with CentralSystemApp(cfg) as app:
        async with raw_station(app, "CP0001") as st:
            lost = (await st.call("StartTransaction", start))[2]["transactionId"]
            kept = (await st.call("StartTransaction", {**start, "connectorId": 2}))[2]["transactionId"]
        async with raw_station(app, "CP0001") as st:  # it rebooted and lost transaction `lost`
            new = (await st.call("StartTransaction", {**start, "timestamp": "2026-11-24T10:30:00Z"}))[2]["transactionId"]
        async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
            await st.call("TransactionEvent", tx_event("Started", 0, tx="A-1", evse={"id": 1}))
            await st.call("TransactionEvent", {**tx_event("Started", 0, tx="A-2", evse={"id": 1}),
                                               "timestamp": "2026-11-24T10:30:00Z"})
        rows = await app.storage.read(lambda db: {r["transaction_id"]: r for r in db.query("SELECT * FROM transactions")})
        assert rows[str(lost)]["stop_reason"] == "Superseded" and rows["A-1"]["stop_reason"] == "Superseded"
        assert rows[str(kept)]["stopped_at"] is None and rows[str(new)]["stopped_at"] is None
        assert rows["A-2"]["stopped_at"] is None
    async with CentralSystemApp(cfg) as app:
        running = {c: t.transaction_id for c, t in app.state.stations["CP0001"].transactions.items()}
        assert running == {1: str(new), 2: str(kept)}
        assert app.state.stations["CP0002"].transactions[1].transaction_id == "A-2"
        async with raw_station(app, "CP0001") as st:  # its queued stop after all
            await st.call("StopTransaction", {"transactionId": lost, "meterStop": 700,
                                              "timestamp": "2026-11-24T10:10:00Z", "reason": "PowerLoss"})
        row = await app.storage.read(lambda db: next(iter(db.query(
            "SELECT * FROM transactions WHERE transaction_id = ?", [str(lost)]))))
        assert (row["meter_stop_wh"], row["stop_reason"]) == (700, "PowerLoss")
        assert app.state.stations["CP0001"].transactions[1].transaction_id == str(new)


@pytest.mark.parametrize("version,unknown", [("ocpp1.6", "Invalid"), ("ocpp2.0.1", "Unknown")])
async def test_authorization_lists(app, version, unknown):
    async with raw_station(app, "CP0003", subprotocol=version) as st:
        async def status(token: str) -> str:
            if version == "ocpp1.6":
                return (await st.call("Authorize", {"idTag": token}))[2]["idTagInfo"]["status"]
            reply = await st.call("Authorize", {"idToken": {"idToken": token, "type": "ISO14443"}})
            return reply[2]["idTokenInfo"]["status"]

        assert await status("GOOD") == "Accepted"
        assert await status("OLD") == "Expired"
        assert await status("STRANGER") == unknown
