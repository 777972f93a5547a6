"""Every storage operation, the same code on both engines: what it writes reads back the same, retries are
recorded once, a failing write fails only its own caller."""

from __future__ import annotations

import math

import pytest

from csms.domain.reservations import Reservation, ReservationState
from csms.domain.settings import Setting
from csms.domain.state import BootInfo, PhaseSample, Transaction
from csms.domain.tokens import IdToken, TokenStatus
from csms.storage import caps, commissioning, history, local_lists, records, reservations, tokens
from csms.storage.database import Storage


async def test_stations_transactions_and_meter_values(storage_target):
    async with Storage(storage_target, commit_interval=0) as s:
        await s.write(records.station_connected("CP1", "ocpp1.6", 10.0))
        await s.write(records.station_booted("CP1", BootInfo("V", "M", "SN", "1.0"), 11.0))
        await s.write(records.connector_status("CP1", 1, "Preparing", None, 12.0))
        start = records.start_transaction_16("CP1", 1, "TAG", 13.0, 1000.0)
        first, again = await s.write(start), await s.write(start)
        assert first == (1, True) and again == (1, False)  # a retried StartTransaction keeps its id
        assert await s.write(records.start_transaction_16("CP1", 1, "TAG", 14.0, 1000.0)) == (2, True)
        sample = PhaseSample(13.5, (10.5, 0.2, None), energy_wh=1500.0)
        mv = records.meter_values("CP1", 1, "1", [(sample, "Sample.Periodic", [{"value": "1500"}])])
        await s.write(mv)
        await s.write(mv)  # a retry: recorded once
        stopped = await s.write(records.stop_transaction("CP1", "1", 20.0, 2500.0, "EVDisconnected"))
        assert stopped["meter_stop_wh"] == 2500.0 and stopped["stop_reason"] == "EVDisconnected"
        assert await s.write(records.stop_transaction("CP1", "404", 20.0, None, None)) is None
        await s.write(records.station_disconnected("CP1", 21.0))

        (station,) = await s.read(lambda db: list(db.query("SELECT * FROM stations")))
        assert (station["vendor"], station["connected"], station["last_disconnected"]) == ("V", 0, 21.0)
        rows = await s.read(lambda db: list(db.query("SELECT * FROM meter_values")))
        assert len(rows) == 1 and rows[0]["current_l1"] == 10.5 and rows[0]["current_l3"] is None
        assert rows[0]["sampled"] == '[{"value":"1500"}]'
        assert [r["transaction_id"] for r in await s.read(records.open_transactions)] == ["2"]
        shown = await s.read(history.transactions(0, 100, 10, station_id="CP1"))
        assert [(t["transaction_id"], t["energy_wh"]) for t in shown] == [("2", None), ("1", 1500.0)]


async def test_meter_values_of_one_moment_split_over_entries_are_merged(storage_target):
    """Found by a user test: a charger that sends the currents and the energy register of one moment in two
    entries (or two MeterValues) with the same timestamp had the second acknowledged and dropped as a retry."""
    currents = PhaseSample(50.0, (13.0, 12.5, None))
    energy = PhaseSample(50.0, energy_wh=250.0)
    async with Storage(storage_target, commit_interval=0) as s:
        await s.write(records.meter_values("CP1", 1, "7", [
            (currents, "Sample.Periodic", [{"value": "13.0", "measurand": "Current.Import", "phase": "L1"}]),
            (energy, "Sample.Periodic", [{"value": "0.250", "unit": "kWh"}])]))
        again = records.meter_values("CP1", 1, "7", [(energy, "Sample.Periodic", [{"value": "0.250", "unit": "kWh"}])])
        await s.write(again)  # a retry of the second: nothing changes
        await s.write(records.meter_values("CP1", 1, "7", [(PhaseSample(50.0, (99.0, None, None)), "Trigger", [])]))
        rows = await s.read(lambda db: list(db.query("SELECT * FROM meter_values ORDER BY context")))
        assert [(r["context"], r["current_l1"], r["current_l2"], r["energy_wh"]) for r in rows] == [
            ("Sample.Periodic", 13.0, 12.5, 250.0), ("Trigger", 99.0, None, None)]
        assert rows[0]["sampled"] == ('[{"value":"13.0","measurand":"Current.Import","phase":"L1"},'
                                      '{"value":"0.250","unit":"kWh"}]')


async def test_transaction_events_are_idempotent_and_roll_back_with_their_steps(storage_target):
    tx = Transaction("T-1", 1, "TAG", 5.0, 100.0)
    async with Storage(storage_target, commit_interval=0) as s:
        then = [records.upsert_transaction("CP2", "ocpp2.0.1", tx)]
        assert await s.write(records.transaction_event("CP2", "T-1", 0, "Started", "Authorized", 5.0, then)) is True
        assert await s.write(records.transaction_event("CP2", "T-1", 0, "Started", "Authorized", 5.0, then)) is False

        def boom(db):
            raise RuntimeError("disk on fire")

        with pytest.raises(RuntimeError, match="disk on fire"):
            await s.write(records.transaction_event("CP2", "T-1", 1, "Updated", "MeterValue", 6.0, [boom]))
        # the failed event was rolled back with its step, so the station's retry is applied
        assert await s.write(records.transaction_event("CP2", "T-1", 1, "Updated", "MeterValue", 6.0)) is True
        seqs = await s.read(lambda db: [r["seq_no"] for r in db.query(
            "SELECT seq_no FROM transaction_events ORDER BY seq_no")])
        assert seqs == [0, 1]


async def test_a_failing_write_fails_only_its_caller_in_a_group_commit(storage_target):
    async with Storage(storage_target, commit_interval=0.05) as s:
        good = [s.submit(records.log_event("ok", float(i))) for i in range(5)]
        bad = s.submit(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)"))
        more = s.submit(records.log_event("ok", 9.0))
        for f in good + [more]:
            await f
        with pytest.raises(Exception, match="no_such_table"):
            await bad
        assert len(await s.read(history.events(0, 10, 100, kind="ok"))) == 6
        await s.write(records.log_event("after", 10.0))  # the writer survived


async def test_a_failing_write_nobody_waits_for_is_logged_and_the_rest_of_its_commit_lands(storage_target, caplog):
    async with Storage(storage_target, commit_interval=0.05) as s:
        s.write_nowait(records.log_event("ok", 1.0))
        s.write_nowait(lambda db: db.execute("INSERT INTO no_such_table VALUES (1)"), "the answer's event")
        s.write_nowait(records.log_event("ok", 2.0))
        await s.write(records.log_event("ok", 3.0))  # committed after the three above
        assert len(await s.read(history.events(0, 10, 100, kind="ok"))) == 3
    assert any("no_such_table" in r.getMessage() and r.getMessage().startswith("the answer's event failed")
               for r in caplog.records)
    s.write_nowait(records.log_event("late", 4.0))  # closed: dropped with a warning, not raised
    assert "storage closed, dropped write" in caplog.text


async def test_events_of_one_group_commit_are_inserted_together_and_read_back_the_same(storage_target):
    """A decision's answers are logged in one group commit: consecutive entries go in one executemany, in
    order, between other writes, and their details read back as they were logged (the JSON is written by
    orjson where it can be, by ``json`` where it cannot: a key that is not a string, an integer past 64 bits,
    NaN, an object only ``str`` can write)."""
    odd = {"phases": {1: 2.5}, "big": 2**70, "nan": float("nan"), "obj": Reservation}
    async with Storage(storage_target, commit_interval=0.05) as s:
        calls: list[int] = []
        first = [s.submit(records.log_event("answer", float(i), station_id=f"CP{i}", limit=10.5, outcome="Accepted"))
                 for i in range(50)]
        between = s.submit(records.station_connected("CP1", "ocpp1.6", 60.0))
        last = [s.submit(records.log_event("answer", 70.0 + i, group_id="g", **(odd if i == 0 else {})))
                for i in range(3)]
        real = s._backend.db.executemany

        def counted(sql, rows):
            rows = list(rows)
            calls.append(len(rows))
            return real(sql, rows)
        s._backend.db.executemany = counted
        for f in first + [between] + last:
            await f
        assert calls == [50, 3]
        shown = await s.read(history.events(0, 100, 100, kind="answer"))
        assert [e["at"] for e in reversed(shown)] == [float(i) for i in range(50)] + [70.0, 71.0, 72.0]
        assert shown[-1]["detail"] == {"limit": 10.5, "outcome": "Accepted"} and shown[-1]["station_id"] == "CP0"
        detail = shown[2]["detail"]
        assert math.isnan(detail.pop("nan"))
        assert detail == {"phases": {"1": 2.5}, "big": 2**70, "obj": str(Reservation)}
        assert shown[0]["detail"] == {} and shown[0]["group_id"] == "g"


async def test_counters_settings_maintenance_and_decisions(storage_target):
    async with Storage(storage_target, commit_interval=0) as s:
        assert [await s.write(records.allocate_request_id) for _ in range(3)] == [1, 2, 3]
        await s.write(records.station_settings("CP1", [Setting("A", "1", True), Setting("B", "x", None)], "Get", 1.0))
        await s.write(records.station_settings("CP1", [Setting("A", "2", None)], "NotifyReport", 2.0))
        rows = await s.read(history.station_settings("CP1"))
        assert [(r["key"], r["value"], r["readonly"], r["source"]) for r in rows] == [
            ("A", "2", True, "NotifyReport"), ("B", "x", None, "Get")]
        for i, status in enumerate(("Downloading", "Installed")):
            await s.write(records.maintenance_status("CP1", "firmware", status, 7, float(i)))
        await s.write(records.maintenance_status("CP1", "log", "Uploading", None, 1.0))
        latest = {(r["kind"], r["status"]) for r in await s.read(records.latest_maintenance)}
        assert latest == {("firmware", "Installed"), ("log", "Uploading")}
        await s.write(records.record_decision("g", 5.0, True, {"1": 30.0}, lambda: {"CP1": {"limit": 16.0}}))
        (d,) = await s.read(history.decisions("g", history.Range(0, 10)))
        assert d == {"at": 5.0, "meter_fresh": True, "budget": {"1": 30.0}, "limits": {"CP1": {"limit": 16.0}}}


async def test_tokens_caps_lists_reservations_and_commissioning(storage_target):
    async with Storage(storage_target, commit_interval=0) as s:
        token = IdToken("org", "T1", TokenStatus.BLOCKED, None, "P", True)
        await s.write(tokens.save_token(("org", "T1"), token, 1.0, "ops", "token_changed"))
        await s.write(tokens.save_token(("org", "T2"), None, 2.0, "ops", "token_deleted"))
        assert await s.read(tokens.stored_tokens) == [(("org", "T1"), token), (("org", "T2"), None)]

        await s.write(caps.save_cap("CP1", 10.0, None, 1.0, "ops"))
        await s.write(caps.save_cap("CP1", 8.0, 99.0, 2.0, "ops"))
        assert [dict(r) for r in await s.read(caps.load_caps)] == [
            {"station_id": "CP1", "limit_a": 8.0, "until": 99.0, "set_at": 2.0, "by": "ops"}]
        await s.write(caps.delete_cap("CP1"))
        assert await s.read(caps.load_caps) == []

        await s.write(local_lists.save_list("CP1", 3, {"A": [1]}, 1.0))
        assert await s.read(local_lists.stored_lists) == {"CP1": (3, {"A": [1]})}

        rid = await s.write(reservations.allocate_id)
        r = Reservation(rid, "CP1", 1, "TAG", None, 100.0, ReservationState.ACTIVE, "ops", 1.0, None)
        await s.write(reservations.save(r, 1.0))
        await s.write(reservations.save(r, 2.0))  # saved again: replaced, not doubled
        assert [x.id for x in await s.read(reservations.active)] == [rid]
        after = await s.write(reservations.change_state(rid, ReservationState.USED, 3.0, "T-9"))
        assert after is not None and after.state is ReservationState.USED and after.transaction_id == "T-9"
        assert await s.read(reservations.active) == []
        assert await s.write(reservations.allocate_id) == rid + 1

        first = await s.write(commissioning.start_report("garage", 1.0, "installer"))
        second = await s.write(commissioning.start_report("garage", 2.0, "installer"))
        assert second > first
        await s.write(commissioning.finish_report(first, 5.0, "done", {"ok": True}))
        await s.write(commissioning.interrupted)
        listed = await s.read(commissioning.list_reports("garage", 10))
        assert [(x["id"], x["state"], x["ok"]) for x in listed] == [(second, "interrupted", None), (first, "done", True)]
