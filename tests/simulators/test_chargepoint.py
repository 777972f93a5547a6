"""Simulated chargers against a tiny real-websocket central system (tests/simulators/csms_stub.py)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import pytest
from ocpp.v16 import call as c16
from ocpp.v201 import call as c201

from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.ev import EVModel
from simulators.fleet import ChargerFleet
from simulators.misbehaviour import Misbehaviour, parse_knob
from simulators.profiles import Purpose

from .csms_stub import StubCsms

PASSWORD = "0123456789abcdef0123"


def fast_ev(**kw) -> EVModel:
    return EVModel(max_current=kw.pop("max_current", 16), ramp_delay=0.05, ramp_time=0.1, **kw)


def config(id="CP1", version="ocpp1.6", **kw) -> SimChargerConfig:
    kw.setdefault("meter_interval", 0.3)
    return SimChargerConfig(id=id, password=PASSWORD, version=version, tick=0.05, backoff_min=0.05,
                            backoff_max=0.2, response_timeout=3, **kw)


@asynccontextmanager
async def running(*configs: SimChargerConfig, **stub_kw):
    async with StubCsms(passwords={c.id: PASSWORD for c in configs}, **stub_kw) as csms:
        fleet = ChargerFleet([SimCharger(c) for c in configs])
        await fleet.start(csms.url)
        try:
            await fleet.wait_connected(timeout=3)
            yield csms, fleet
        finally:
            await fleet.stop()


def iso(offset: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def profile16(id=1, purpose="TxDefaultProfile", level=0, limit=10.0, unit="A", valid_to=None, duration=None):
    p = {"charging_profile_id": id, "stack_level": level, "charging_profile_purpose": purpose,
         "charging_profile_kind": "Absolute",
         "charging_schedule": {"charging_rate_unit": unit, "start_schedule": iso(-5),
                               "charging_schedule_period": [{"start_period": 0, "limit": limit}]}}
    if valid_to is not None:
        p["valid_to"] = valid_to
    if duration is not None:
        p["charging_schedule"]["duration"] = duration
    return p


def profile201(id=1, purpose="TxDefaultProfile", level=0, limit=10.0, unit="A", **extra):
    return {"id": id, "stack_level": level, "charging_profile_purpose": purpose, "charging_profile_kind": "Absolute",
            "charging_schedule": [{"id": 1, "charging_rate_unit": unit, "start_schedule": iso(-5),
                                   "charging_schedule_period": [{"start_period": 0, "limit": limit}]}], **extra}


async def until(predicate, timeout=2.0):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def phase_currents(meter_values: dict) -> dict[str, float]:
    return {sv["phase"]: float(sv["value"]) for mv in meter_values["meter_value"] for sv in mv["sampled_value"]
            if sv.get("measurand") == "Current.Import"}


async def test_16_session_meter_values_and_profile():
    async with running(config()) as (csms, fleet):
        cp = fleet["CP1"]
        boot = await csms.wait_for("CP1", "BootNotification")
        assert boot["charge_point_vendor"] == "FuseGuard"
        await csms.wait_for("CP1", "StatusNotification", lambda p: p["status"] == "Available")
        cp.plug_in(fast_ev())
        await csms.wait_for("CP1", "Authorize")
        start = await csms.wait_for("CP1", "StartTransaction")
        await csms.wait_for("CP1", "StatusNotification", lambda p: p["status"] == "Charging")
        mv = await csms.wait_for("CP1", "MeterValues", lambda p: phase_currents(p).get("L3", 0) > 15)
        assert mv["transaction_id"] == start["assigned"]
        assert phase_currents(mv) == {"L1": 16.0, "L2": 16.0, "L3": 16.0}

        res = await csms.call("CP1", c16.SetChargingProfile(connector_id=1, cs_charging_profiles=profile16(limit=10)))
        assert res.status == "Accepted"
        await until(lambda: cp.draw() == (10.0, 10.0, 10.0))
        assert cp.limit().amps == 10
        comp = await csms.call("CP1", c16.GetCompositeSchedule(connector_id=1, duration=60), skip_schema_validation=True)
        assert comp.status == "Accepted"
        assert [(p["startPeriod"] if "startPeriod" in p else p["start_period"], float(p["limit"]))
                for p in comp.charging_schedule["charging_schedule_period"]] == [(0, 10.0)]

        clear = c16.ClearChargingProfile
        assert (await csms.call("CP1", clear(id=1))).status == "Accepted"
        assert (await csms.call("CP1", clear(id=1))).status == "Unknown"
        await until(lambda: cp.draw() == (16.0, 16.0, 16.0))

        cp.unplug()
        stop = await csms.wait_for("CP1", "StopTransaction")
        assert stop["transaction_id"] == start["assigned"] and stop["reason"] == "EVDisconnected"
        assert stop["meter_stop"] >= start["meter_start"]


async def test_wrong_password_is_refused_and_retried():
    async with StubCsms(passwords={"CP1": PASSWORD}) as csms:
        cp = SimCharger(SimChargerConfig(id="CP1", password="wrong-password-000", tick=0.05, backoff_min=0.05,
                                         backoff_max=0.1))
        await cp.start(csms.url)
        try:
            await until(lambda: len(csms.refused) >= 2)
            assert not cp.connected
        finally:
            await cp.stop()


async def test_201_transaction_events_variables_and_station_max():
    async with running(config("EV2", "ocpp2.0.1", phase_rotation="STR")) as (csms, fleet):
        cp = fleet["EV2"]
        await csms.wait_for("EV2", "StatusNotification", lambda p: p["connector_status"] == "Available")
        cp.plug_in(fast_ev())
        started = await csms.wait_for("EV2", "TransactionEvent", lambda p: p["event_type"] == "Started")
        assert started["seq_no"] == 0 and started["id_token"]["id_token"] == "SIMTAG0001"
        tx = started["transaction_info"]["transaction_id"]
        upd = await csms.wait_for("EV2", "TransactionEvent", lambda p: p["trigger_reason"] == "MeterValuePeriodic")
        assert upd["transaction_info"]["transaction_id"] == tx and upd["seq_no"] >= 1
        assert {sv["phase"] for sv in upd["meter_value"][0]["sampled_value"]
                if sv["measurand"] == "Current.Import"} == {"L1", "L2", "L3"}

        res = await csms.call("EV2", c201.SetChargingProfile(evse_id=0, charging_profile=profile201(
            purpose="ChargingStationMaxProfile", limit=4140, unit="W")))
        assert res.status == "Accepted"
        await until(lambda: cp.draw() == (6.0, 6.0, 6.0))
        comp = await csms.call("EV2", c201.GetCompositeSchedule(duration=300, evse_id=1, charging_rate_unit="A"))
        assert comp.schedule["charging_schedule_period"][0]["limit"] == 6.0

        got = await csms.call("EV2", c201.GetVariables(get_variable_data=[
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "ProfileStackLevel"}},
            {"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {"name": "PhaseRotation"}},
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Entries", "instance": "ChargingProfiles"}},
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
            {"component": {"name": "Nope"}, "variable": {"name": "X"}}]))
        assert [(r["attribute_status"], r.get("attribute_value")) for r in got.get_variable_result] == [
            ("Accepted", "8"), ("Accepted", "STR"), ("Accepted", "1"), ("Rejected", None), ("UnknownComponent", None)]
        put = await csms.call("EV2", c201.SetVariables(set_variable_data=[
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"},
             "attribute_value": "7"},
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "ProfileStackLevel"},
             "attribute_value": "3"},
            {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Bogus"}, "attribute_value": "3"}]))
        assert [r["attribute_status"] for r in put.set_variable_result] == ["Accepted", "Rejected", "UnknownVariable"]
        assert cp.meter_interval == 7

        stop = await csms.call("EV2", c201.RequestStopTransaction(transaction_id=tx))
        assert stop.status == "Accepted"
        ended = await csms.wait_for("EV2", "TransactionEvent", lambda p: p["event_type"] == "Ended")
        assert ended["trigger_reason"] == "RemoteStop" and ended["transaction_info"]["stopped_reason"] == "Remote"
        seqs = [p["seq_no"] for p in csms.messages("EV2", "TransactionEvent")]
        assert seqs == list(range(len(seqs)))


async def test_201_request_start_waits_for_the_car_and_installs_tx_profile():
    async with running(config("EV3", "ocpp2.0.1", id_tag=None)) as (csms, fleet):
        cp = fleet["EV3"]
        res = await csms.call("EV3", c201.RequestStartTransaction(
            id_token={"id_token": "APP1", "type": "Central"}, remote_start_id=77, evse_id=1,
            charging_profile=profile201(id=5, purpose="TxProfile", limit=8)))
        assert res.status == "Accepted"
        cp.plug_in(fast_ev())
        started = await csms.wait_for("EV3", "TransactionEvent", lambda p: p["event_type"] == "Started")
        assert started["trigger_reason"] == "RemoteStart"
        assert started["transaction_info"]["remote_start_id"] == 77
        await until(lambda: cp.draw() == (8.0, 8.0, 8.0))


async def test_16_remote_start_stop_availability_and_configuration():
    async with running(config(id_tag=None)) as (csms, fleet):
        cp = fleet["CP1"]
        cp.plug_in(fast_ev())
        await csms.wait_for("CP1", "StatusNotification", lambda p: p["status"] == "Preparing")
        assert (await csms.call("CP1", c16.RemoteStartTransaction(id_tag="APP", connector_id=1))).status == "Accepted"
        start = await csms.wait_for("CP1", "StartTransaction")
        assert start["id_tag"] == "APP" and not csms.messages("CP1", "Authorize")
        assert (await csms.call("CP1", c16.ChangeAvailability(connector_id=1, type="Inoperative"))).status == "Scheduled"
        stop = await csms.call("CP1", c16.RemoteStopTransaction(transaction_id=start["assigned"]))
        assert stop.status == "Accepted"
        await csms.wait_for("CP1", "StopTransaction", lambda p: p["reason"] == "Remote")
        await csms.wait_for("CP1", "StatusNotification", lambda p: p["status"] == "Unavailable")

        conf = await csms.call("CP1", c16.GetConfiguration(key=[
            "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ConnectorPhaseRotation",
            "MeterValueSampleInterval", "NoSuchKey"]))
        values = {k["key"]: k["value"] for k in conf.configuration_key}
        assert values == {"ChargeProfileMaxStackLevel": "8", "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
                          "ConnectorPhaseRotation": "0.RST,1.RST", "MeterValueSampleInterval": "0"}
        assert conf.unknown_key == ["NoSuchKey"]
        change = c16.ChangeConfiguration
        assert (await csms.call("CP1", change(key="MeterValueSampleInterval", value="5"))).status == "Accepted"
        assert cp.meter_interval == 5
        assert (await csms.call("CP1", change(key="MeterValuesSampledData", value="Bogus"))).status == "Rejected"
        assert (await csms.call("CP1", change(key="ChargeProfileMaxStackLevel", value="3"))).status == "Rejected"
        assert (await csms.call("CP1", change(key="Nope", value="3"))).status == "NotSupported"


@pytest.mark.parametrize("knob,profile,expected", [
    (Misbehaviour(reject_purposes=frozenset({Purpose.STATION_MAX})), profile16(purpose="ChargePointMaxProfile"),
     "Rejected"),
    (Misbehaviour(reject_purposes=frozenset({Purpose.STATION_MAX})), profile16(), "Accepted"),
    (Misbehaviour(only_watts=True), profile16(), "Rejected"),
    (Misbehaviour(only_watts=True), profile16(unit="W", limit=4000), "Accepted"),
    (Misbehaviour(max_stack_level=3, refuse_max_stack_level=True), profile16(level=3), "Rejected"),
    (Misbehaviour(max_stack_level=3, refuse_max_stack_level=True), profile16(level=2), "Accepted"),
    (Misbehaviour(max_stack_level=3), profile16(level=4), "Rejected"),
], ids=["reject-purpose", "other-purpose-ok", "only-watts-A", "only-watts-W", "refuse-max-level",
        "below-max-level", "above-max-level"])
async def test_misbehaviour_knobs_on_set_charging_profile(knob, profile, expected):
    async with running(config(meter_interval=0, misbehaviour=knob)) as (csms, _):
        res = await csms.call("CP1", c16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile))
        assert res.status == expected


async def test_ignore_limits_and_answer_delay():
    mis = Misbehaviour(ignore_limits=True, answer_delay=0.3)
    async with running(config(misbehaviour=mis, max_current=16)) as (csms, fleet):
        cp = fleet["CP1"]
        cp.plug_in(fast_ev())
        t0 = time.monotonic()
        res = await csms.call("CP1", c16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile16(limit=6)))
        assert res.status == "Accepted" and time.monotonic() - t0 >= 0.3
        await asyncio.sleep(0.3)
        assert cp.draw() == (16.0, 16.0, 16.0)


async def test_profiles_keep_applying_offline_and_transaction_messages_wait_for_reconnect():
    async with running(config()) as (csms, fleet):
        cp = fleet["CP1"]
        cp.plug_in(fast_ev())
        start = await csms.wait_for("CP1", "StartTransaction")
        send = c16.SetChargingProfile
        assert (await csms.call("CP1", send(connector_id=0, cs_charging_profiles=profile16(
            1, "ChargePointMaxProfile", 0, limit=6)))).status == "Accepted"
        assert (await csms.call("CP1", send(connector_id=0, cs_charging_profiles=profile16(
            2, "ChargePointMaxProfile", 1, limit=13, valid_to=iso(0.8))))).status == "Accepted"
        await until(lambda: cp.draw()[0] == 13)
        cp.disconnect()
        await cp.wait_connected(False)
        await until(lambda: cp.draw()[0] == 6, timeout=2)  # validTo passed while offline: the fallback applies
        cp.unplug()
        await asyncio.sleep(0.2)
        assert not csms.messages("CP1", "StopTransaction")
        cp.reconnect()
        stop = await csms.wait_for("CP1", "StopTransaction")
        assert stop["transaction_id"] == start["assigned"]
        assert len(csms.messages("CP1", "BootNotification")) == 2


async def test_drop_every_reconnects_by_itself():
    async with running(config(meter_interval=0, misbehaviour=Misbehaviour(drop_every=0.3))) as (csms, _):
        await csms.wait_for("CP1", "BootNotification", count=3, timeout=4)


async def test_fleet_runs_mixed_versions():
    cfgs = [config(f"M{i}", "ocpp1.6" if i % 2 else "ocpp2.0.1", meter_interval=0) for i in range(6)]
    async with running(*cfgs) as (csms, fleet):
        assert len(fleet) == 6 and all(c.connected for c in fleet)
        assert {type(csms.stations[f"M{i}"]).__name__ for i in range(6)} == {"Station16", "Station201"}


@pytest.mark.parametrize("knob,expected", [
    ("reject=ChargePointMaxProfile", Misbehaviour(reject_purposes=frozenset({Purpose.STATION_MAX}))),
    ("reject=TxProfile", Misbehaviour(reject_purposes=frozenset({Purpose.TX}))),
    ("only-watts", Misbehaviour(only_watts=True)),
    ("ignore-limits", Misbehaviour(ignore_limits=True)),
    ("answer-delay=2.5", Misbehaviour(answer_delay=2.5)),
    ("drop-every=30", Misbehaviour(drop_every=30)),
    ("max-stack-level=3", Misbehaviour(max_stack_level=3)),
    ("refuse-max-stack-level", Misbehaviour(refuse_max_stack_level=True)),
    ("before-boot=drop", Misbehaviour(before_boot="drop")),
    ("before-boot=error", Misbehaviour(before_boot="error")),
    ("boot-delay=1.5", Misbehaviour(boot_delay=1.5)),
    ("not-implemented=TxProfile", Misbehaviour(not_implemented_purposes=frozenset({Purpose.TX}))),
    ("not-implemented=all", Misbehaviour(not_implemented_purposes=frozenset(Purpose))),
    ("empty-composite", Misbehaviour(empty_composite=True)),
    ("measurands=Current.Import+Voltage", Misbehaviour(measurands=frozenset({"Current.Import", "Voltage"}))),
    ("min-meter-interval=30", Misbehaviour(min_meter_interval=30)),
    ("trigger=ignore", Misbehaviour(trigger="ignore")),
    ("trigger=not-implemented", Misbehaviour(trigger="not-implemented")),
    ("duplicate-stop", Misbehaviour(duplicate_stop=True)),
    ("unlock=not-supported", Misbehaviour(unlock="not-supported")),
    ("unlock=fail", Misbehaviour(unlock="fail")),
    ("not-implemented-call=ClearCache", Misbehaviour(not_implemented_calls=frozenset({"ClearCache"}))),
    ("reboot-time=4", Misbehaviour(reboot_time=4.0)),
    ("firmware=download-fail", Misbehaviour(firmware="download-fail")),
    ("firmware=install-fail", Misbehaviour(firmware="install-fail")),
    ("upload=put", Misbehaviour(upload="put")),
    ("lose=SetChargingProfile:2", Misbehaviour(lose=(("SetChargingProfile", 2),))),
])
def test_parse_knob(knob, expected):
    assert parse_knob(Misbehaviour(), knob) == expected


@pytest.mark.parametrize("bad", ["reject=Nope", "answer-delay=soon", "fly", "only-watts=yes", "before-boot=maybe",
                                 "trigger=sometimes", "not-implemented=Nope", "measurands=",
                                 "unlock=maybe", "not-implemented-call=", "firmware=explode", "upload=ftp",
                                 "lose=SetChargingProfile", "lose=:2", "lose=Reset:0", "lose=Reset:x"])
def test_parse_knob_rejects_with_the_list(bad):
    with pytest.raises(ValueError, match="knobs are"):
        parse_knob(Misbehaviour(), bad)


# ---- real-firmware knobs (tests/interop drives them against the central system) ----------------------

@pytest.mark.parametrize("mode,answer", [("drop", None), ("error", "SecurityError")])
async def test_before_boot_calls_are_dropped_or_refused(mode, answer):
    mis = Misbehaviour(before_boot=mode, boot_delay=0.5)
    async with StubCsms(passwords={"CP1": PASSWORD}) as csms:
        cp = SimCharger(config(meter_interval=0, misbehaviour=mis))
        await cp.start(csms.url)
        try:
            await until(lambda: "CP1" in csms.stations, timeout=2)
            assert not csms.messages("CP1", "BootNotification")
            if answer is None:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(csms.call("CP1", c16.GetConfiguration()), 0.3)
            else:
                from ocpp.exceptions import SecurityError
                with pytest.raises(SecurityError):
                    await csms.call("CP1", c16.GetConfiguration(), suppress=False)
            assert cp.before_boot == ["GetConfiguration"]
            await cp.wait_connected(timeout=3)
            res = await csms.call("CP1", c16.GetConfiguration(key=["MeterValueSampleInterval"]))
            assert res.configuration_key[0]["value"] == "0"
        finally:
            await cp.stop()


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_not_implemented_purposes_answer_callerror(version):
    from ocpp.exceptions import NotImplementedError as NotImpl
    mis = Misbehaviour(not_implemented_purposes=frozenset({Purpose.TX_DEFAULT}))
    async with running(config(version=version, meter_interval=0, misbehaviour=mis)) as (csms, _):
        if version == "ocpp1.6":
            def send(purpose):
                return c16.SetChargingProfile(connector_id=0, cs_charging_profiles=profile16(purpose=purpose))
        else:
            def send(purpose):
                return c201.SetChargingProfile(evse_id=0, charging_profile={
                    "id": 1, "stack_level": 0, "charging_profile_purpose": purpose, "charging_profile_kind": "Absolute",
                    "charging_schedule": [{"id": 1, "start_schedule": iso(-5), "charging_rate_unit": "A",
                                           "charging_schedule_period": [{"start_period": 0, "limit": 10.0}]}]})
        with pytest.raises(NotImpl):
            await csms.call("CP1", send("TxDefaultProfile"), suppress=False)
        station_max = "ChargePointMaxProfile" if version == "ocpp1.6" else "ChargingStationMaxProfile"
        assert (await csms.call("CP1", send(station_max))).status == "Accepted"


async def test_empty_composite_measurands_interval_and_trigger_knobs():
    mis = Misbehaviour(empty_composite=True, measurands=frozenset({"Current.Import", "Voltage"}),
                       min_meter_interval=30, trigger="refuse")
    async with running(config(meter_interval=0, misbehaviour=mis)) as (csms, _):
        res = await csms.call("CP1", c16.GetCompositeSchedule(connector_id=1, duration=60))
        assert res.status == "Accepted" and not res.charging_schedule
        change = c16.ChangeConfiguration
        assert (await csms.call("CP1", change(key="MeterValuesSampledData", value="Current.Import,Current.Offered"))
                ).status == "Rejected"
        res = await csms.call("CP1", change(key="MeterValuesSampledData", value="Current.Import"))
        assert res.status == "Accepted"
        assert (await csms.call("CP1", change(key="MeterValueSampleInterval", value="10"))).status == "Rejected"
        assert (await csms.call("CP1", change(key="MeterValueSampleInterval", value="30"))).status == "Accepted"
        res = await csms.call("CP1", c16.TriggerMessage(requested_message="MeterValues", connector_id=1))
        assert res.status == "Rejected"


@pytest.mark.parametrize("version,stop", [("ocpp1.6", "StopTransaction"), ("ocpp2.0.1", "TransactionEvent")])
async def test_duplicate_stop_sends_the_stop_twice(version, stop):
    async with running(config(version=version, meter_interval=0,
                              misbehaviour=Misbehaviour(duplicate_stop=True))) as (csms, fleet):
        cp = fleet["CP1"]
        cp.plug_in(fast_ev())
        await asyncio.sleep(0.3)
        cp.unplug()

        def stops():
            msgs = csms.messages("CP1", stop)
            return msgs if version == "ocpp1.6" else [m for m in msgs if m.get("event_type") == "Ended"]

        await until(lambda: len(stops()) == 2, timeout=3)
