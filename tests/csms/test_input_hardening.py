"""Hostile or odd input from a station never costs a session, an acknowledged message or the log (issue 12)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from ocpp.v16.call import GetConfiguration

from csms.ocpp.metervalues import to_sample
from csms.runtime.app import CentralSystemApp
from csms.storage import records
from tests.csms.harness import raw_station, site_config
from tests.csms.test_server import NOW, tx_event

LATER = "2026-11-24T10:30:00.000Z"


@pytest.fixture
async def app(tmp_path):
    async with CentralSystemApp(site_config(tmp_path)) as app:
        yield app


def energy(value: float, context: str, at: str = NOW, **unit) -> dict:
    return {"timestamp": at, "sampledValue": [{"value": value, "context": context,
                                               "measurand": "Energy.Active.Import.Register",
                                               "unitOfMeasure": {"unit": "Wh", **unit}}]}


async def transactions(app) -> list[dict]:
    return await app.storage.read(lambda db: list(db.query("SELECT * FROM transactions")))


async def tx_event_rows(app) -> list[dict]:
    return await app.storage.read(lambda db: list(db.query("SELECT * FROM transaction_events")))


# -- item 3: the Ended event's energy is the Transaction.End register --------------------------------


async def test_201_stop_register_is_the_transaction_end_sample_not_the_first(app):
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        await st.call("TransactionEvent", tx_event("Started", 0, evse={"id": 1}))
        ended = tx_event("Ended", 1, meterValue=[energy(0, "Transaction.Begin"),
                                                 energy(343.89, "Transaction.End", LATER)])
        assert (await st.call("TransactionEvent", ended))[0] == 3
    (row,) = await transactions(app)
    assert row["meter_start_wh"] == 0 and row["meter_stop_wh"] == 343.89


async def test_201_register_that_starts_non_zero_is_stored_faithfully(app):
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        await st.call("TransactionEvent", tx_event("Started", 0, evse={"id": 1},
                                                   meterValue=[energy(5000, "Transaction.Begin")]))
        # No context on the stop samples: the latest one counts.
        ended = tx_event("Ended", 1, meterValue=[energy(5100, "", LATER.replace("30", "20")),
                                                 energy(5343.89, "", LATER)])
        for sample in ended["meterValue"]:
            del sample["sampledValue"][0]["context"]
        await st.call("TransactionEvent", ended)
    (row,) = await transactions(app)
    assert row["meter_start_wh"] == 5000 and row["meter_stop_wh"] == 5343.89
    from csms.storage import history

    (shown,) = await app.storage.read(history.transactions(0, 1e12, 10))
    assert shown["energy_wh"] == pytest.approx(343.89)  # what the operator view shows


async def test_201_start_register_unknown_until_the_ended_event_names_it(app):
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        await st.call("TransactionEvent", tx_event("Started", 0, evse={"id": 1}))
        await st.call("TransactionEvent", tx_event("Ended", 1, meterValue=[
            energy(7.5, "Transaction.End", LATER, multiplier=3), energy(7000, "Transaction.Begin")]))
    (row,) = await transactions(app)
    assert row["meter_start_wh"] == 7000 and row["meter_stop_wh"] == 7500


# -- item 7.3/7.4: scaling is checked, and an event is committed whole or not at all --------------------


@pytest.mark.parametrize("value,multiplier", [(1e308, 1), (1.0, 400), (1.0, -400), (5.0, 309)])
def test_a_value_that_is_not_finite_after_scaling_is_refused(value, multiplier):
    mv = {"timestamp": NOW, "sampled_value": [{"value": value, "measurand": "Energy.Active.Import.Register",
                                               "unit_of_measure": {"unit": "Wh", "multiplier": multiplier}}]}
    sample, _ = to_sample(mv, 0.0)
    if multiplier < 0:
        assert sample.energy_wh == 0.0  # a tiny number is a number
    else:
        assert sample.energy_wh is None


async def test_multiplier_400_does_not_lose_the_transaction(app):
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        started = tx_event("Started", 0, evse={"id": 1}, meterValue=[energy(1, "Transaction.Begin", multiplier=400)])
        assert (await st.call("TransactionEvent", started))[0] == 3
    assert [r["transaction_id"] for r in await transactions(app)] == ["T-1"]
    assert len(await tx_event_rows(app)) == 1
    assert app.state.find_transaction("CP0002", "T-1") is not None


async def test_a_failed_event_leaves_no_row_and_its_retry_is_applied(app, monkeypatch):
    real = records.upsert_transaction
    failing = [True]

    def flaky(*args, **kw):
        op = real(*args, **kw)

        def fail_while_failing(db):
            if failing[0]:
                raise OverflowError("disk says no")
            return op(db)
        return fail_while_failing

    monkeypatch.setattr(records, "upsert_transaction", flaky)
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        started = tx_event("Started", 0, evse={"id": 1}, meterValue=[energy(10, "Transaction.Begin")])
        assert (await st.call("TransactionEvent", started))[2] == "InternalError"
        assert await tx_event_rows(app) == [] and await transactions(app) == []
        assert await app.storage.read(lambda db: db.execute("SELECT count(*) FROM meter_values").fetchone()[0]) == 0
        assert app.state.find_transaction("CP0002", "T-1") is None
        failing[0] = False
        assert (await st.call("TransactionEvent", started))[0] == 3  # the retry is applied, not a duplicate
    (row,) = await transactions(app)
    assert row["meter_start_wh"] == 10 and len(await tx_event_rows(app)) == 1
    assert app.state.find_transaction("CP0002", "T-1") is not None


# -- item 7.5: deep nesting and huge numbers get a CALLERROR, the session lives, one log line ------------


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE = [
    ('[2, "d1", "DataTransfer", {"vendorId": "v", "data": %s}]' % json.dumps(json.dumps(1)), None),  # control
    ('[2, "d2", "DataTransfer", {"vendorId": "v", "customData": %s}]'
     % ('{"vendorId": "x", "a": ' * 800 + "1" + "}" * 800), "d2"),
    ('[2, "d3", "DataTransfer", {"vendorId": "v", "x": %s}]' % ("1" * 5000), "d3"),
    ('[2, "d4", "DataTransfer", {"vendorId": "v", "x": %s}]' % nested(5000), "d4"),
    (nested(5000), "-1"),
    ('[2, "d6", "DataTransfer", {"vendorId": "v", "x": 1.%s}]' % ("5" * 5000), "d6"),
    ('[2, "d7", "Heartbeat", {"x": NaN}]', "d7"),
]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_deep_nesting_and_huge_numbers_get_a_callerror_and_one_log_line(app, version, caplog):
    code = "FormationViolation" if version == "ocpp1.6" else "FormatViolation"
    async with raw_station(app, "CP0001", subprotocol=version) as st:
        for frame, uid in HOSTILE:
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="csms"):
                reply = await st.send_raw(frame)
            if uid is None:
                assert reply[0] == 3, reply
                continue
            assert reply[:3] == [4, uid, code], (frame[:60], reply)
            lines = [r for r in caplog.records if r.levelno >= logging.INFO]
            assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage()[:200] for r in lines]
            assert len(lines[0].getMessage()) < 1000
        assert (await st.call("Heartbeat", {}))[0] == 3


# -- item 7.2: replies nobody asked for are dropped at once and counted -------------------------------


async def test_unsolicited_replies_are_dropped_counted_and_logged_once(tmp_path, caplog):
    async with CentralSystemApp(site_config(tmp_path, rate_limit=5000, rate_burst=1000)) as app, \
            raw_station(app, "CP0001") as st:
        await st.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        session = app.server.sessions["CP0001"]
        with caplog.at_level(logging.INFO, logger="csms"):
            for i in range(300):
                await st.ws.send(json.dumps([3, f"nobody-{i}", {"x": "y" * 1000}]))
                await st.ws.send(json.dumps([4, f"nobody-e{i}", "InternalError", "", {}]))
            assert (await st.call("Heartbeat", {}))[0] == 3  # every frame before it has been routed
        # Nothing is kept for them: the protocol has no reply queue, a reply to no awaited call is dropped.
        assert session.connection.unsolicited_replies == 600
        lines = [r for r in caplog.records if "unsolicited" in r.getMessage() or "unknown unique id" in r.getMessage()]
        assert len(lines) == 1
        # A call the CSMS makes still gets its own reply (the delivery's own calls are refused meanwhile).
        task = asyncio.create_task(session.connection.call(GetConfiguration()))
        while not task.done():
            try:
                frame = json.loads(await asyncio.wait_for(st.ws.recv(), 0.5))
            except asyncio.TimeoutError:
                continue
            if frame[0] == 2 and frame[2] == "GetConfiguration":
                await st.ws.send(json.dumps([3, "someone-else", {}]))
                await st.ws.send(json.dumps([3, frame[1], {"configurationKey": []}]))
                break
            if frame[0] == 2:
                await st.ws.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
        result = await asyncio.wait_for(task, 5)
        assert result.configuration_key == []
        assert session.connection.unsolicited_replies == 601


def test_nesting_is_measured_outside_strings():
    from meter_gateway.boundedjson import nests_deeper_than

    assert not nests_deeper_than(json.dumps({"a": "[" * 100, "b": '\\"[[[['}).encode(), 32)
    assert not nests_deeper_than(nested(32).encode(), 32)
    assert nests_deeper_than(nested(33).encode(), 32)
    assert nests_deeper_than(("[" * 40 + '"]]]"' + "]" * 40).encode(), 32)
    assert not nests_deeper_than(b"[" * 100, 32)  # unbalanced: left for the parser to name


# -- weaker points: password guessing, connection replacement, secrets in the log, absurd values ----------

import websockets  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from tests.csms.harness import PASSWORDS, basic_auth  # noqa: E402


async def handshake_status(app, station_id: str, user: str, password: str) -> int:
    try:
        async with connect(f"ws://127.0.0.1:{app.port}/ocpp/{station_id}", subprotocols=["ocpp1.6"],
                           additional_headers=basic_auth(user, password), open_timeout=5):
            return 101
    except websockets.InvalidStatus as exc:
        return exc.response.status_code


async def test_password_guessing_backs_off_per_address(app):
    throttle = app.server.auth_throttle
    now = [1000.0]
    throttle.clock = lambda: now[0]
    for _ in range(throttle.free_failures):
        assert await handshake_status(app, "CP0001", "CP0001", "wrong-password-123") == 401
    # Now even the right password is not checked: the address waits, the wait doubles with each failure.
    assert await handshake_status(app, "CP0001", "CP0001", PASSWORDS["CP0001"]) == 429
    assert await handshake_status(app, "CP0002", "CP0002", PASSWORDS["CP0002"]) == 429  # per address, not station
    now[0] += throttle.base_delay + 0.1
    assert await handshake_status(app, "CP0001", "CP0001", "wrong-password-123") == 401
    now[0] += throttle.base_delay + 0.1
    assert await handshake_status(app, "CP0001", "CP0001", PASSWORDS["CP0001"]) == 429  # 2 s now
    now[0] += 2 * throttle.base_delay
    assert await handshake_status(app, "CP0001", "CP0001", PASSWORDS["CP0001"]) == 101
    assert await handshake_status(app, "CP0001", "CP0001", "wrong-password-123") == 401  # success reset it


def test_auth_throttle_memory_is_bounded():
    from csms.ocpp.server import AuthThrottle

    throttle = AuthThrottle(max_addresses=100, clock=lambda: 0.0)
    for i in range(10_000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle) <= 100


async def test_a_station_cannot_replace_its_connection_again_and_again(app, caplog):
    async with raw_station(app, "CP0001") as first:
        async with raw_station(app, "CP0001") as second:  # one replacement: a reconnect after a glitch
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(first.ws.recv(), 5)
            with caplog.at_level(logging.WARNING, logger="csms"):
                for _ in range(3):
                    assert await handshake_status(app, "CP0001", "CP0001", PASSWORDS["CP0001"]) == 429
            assert (await second.call("Heartbeat", {}))[0] == 3  # the live connection is kept
            assert len([r for r in caplog.records if "refused to replace" in r.getMessage()]) == 1
            app.server.replacement_interval = 0.0
            assert await handshake_status(app, "CP0001", "CP0001", PASSWORDS["CP0001"]) == 101


async def test_a_swapped_user_and_password_never_reach_the_log(app, caplog):
    secret = PASSWORDS["CP0001"]
    with caplog.at_level(logging.DEBUG):
        assert await handshake_status(app, "CP0001", secret, "CP0001") == 401
        assert await handshake_status(app, "CP0001", "CP0001", secret + "x") == 401
        assert await handshake_status(app, "CP0001", secret + ":" + secret, "x") == 401
    ours = [r for r in caplog.records if r.name.startswith("csms")]  # websockets' DEBUG lines are off in serve
    assert ours and not any(secret in r.getMessage() for r in ours)


async def events(app, kind: str) -> list[dict]:
    rows = await app.storage.read(lambda db: list(db.query("SELECT * FROM events WHERE kind = ?", [kind])))
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


async def test_absurd_transaction_values_are_stored_and_flagged(app):
    async with raw_station(app, "CP0001") as st:
        tx = (await st.call("StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": -5,
                                                  "timestamp": "9999-12-31T00:00:00Z"}))[2]["transactionId"]
        await st.call("StopTransaction", {"transactionId": tx, "meterStop": 10**20, "timestamp": NOW})
        ok = (await st.call("StartTransaction", {"connectorId": 2, "idTag": "T", "meterStart": 100,
                                                  "timestamp": NOW}))[2]["transactionId"]
        await st.call("StopTransaction", {"transactionId": ok, "meterStop": 900, "timestamp": LATER})
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        await st.call("TransactionEvent", {**tx_event("Started", 0, tx="OLD", evse={"id": 1},
                                                      meterValue=[energy(5, "Transaction.Begin")]),
                                           "timestamp": "1999-12-31T23:59:59Z"})
    await asyncio.sleep(0.05)
    rows = {r["transaction_id"]: r for r in await transactions(app)}
    assert rows[str(tx)]["meter_start_wh"] == -5 and rows[str(tx)]["meter_stop_wh"] == 1e20  # stored as sent
    flagged = await events(app, "implausible_transaction")
    by_tx: dict[str, list[str]] = {}
    for e in flagged:
        by_tx.setdefault(e["detail"]["transaction_id"], []).extend(e["detail"]["problems"])
    assert str(ok) not in by_tx
    assert any("meter_start_wh" in p for p in by_tx[str(tx)]) and any("started_at" in p for p in by_tx[str(tx)])
    assert any("meter_stop_wh" in p for p in by_tx[str(tx)])
    assert any("started_at" in p for p in by_tx["OLD"])


async def test_station_text_cannot_forge_a_log_line(app, caplog):
    forged = "V\nCRITICAL csms: fuse blown"
    with caplog.at_level(logging.INFO, logger="csms"):
        async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
            await st.call("BootNotification", {"chargingStation": {"model": forged[:20], "vendorName": forged},
                                               "reason": "PowerUp"})
            await st.call("SecurityEventNotification", {"type": forged, "timestamp": NOW})
            await st.call("TransactionEvent", tx_event("Started", 0, tx="T\nCRITICAL", evse={"id": 1}))
    lines = [r.getMessage() for r in caplog.records]
    assert any("CRITICAL" in m for m in lines) and not any("\n" in m for m in lines), lines
