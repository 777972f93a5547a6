"""Chargers that behave like real firmwares (issue 12, SAP's e-mobility simulator and field reports), at shipped
defaults: what the fuse sees and what the central system stores.

Each case is bounded (well under 40 s) and fails on the central system as it was before the fixes it names.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest

from csms.balancer.model import ControlState
from csms.config import default_margin
from simulators.misbehaviour import Misbehaviour
from simulators.profiles import Purpose
from tests.csms.harness import raw_station

from .harness import Charger, PASSWORD, interop_site, ev, wait_until

VERSIONS = ["ocpp1.6", "ocpp2.0.1"]


# ---- set-up waits for the boot ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("mode", ["drop", "error"])
async def test_setup_waits_for_the_boot_of_a_charger_that_drops_calls_before_it(tmp_path, version, mode):
    """SAP's simulator in strict mode drops (or refuses with SecurityError) calls before its boot is accepted;
    this one also boots a second after connecting. Set-up must start after the boot, so nothing is lost and
    the capabilities are read, not defaulted after a 15 s timeout."""
    mis = Misbehaviour(before_boot=mode, boot_delay=1.0)
    async with interop_site(tmp_path, [Charger("CP1", version, misbehaviour=mis)], fuse=16) as rig:
        cp = rig.charger("CP1")
        await wait_until(lambda: cp.store.profiles.get(1) is not None, 6, "fallback installed soon after the boot")
        assert cp.before_boot == [], f"calls sent before the boot was accepted: {cp.before_boot}"
        await wait_until(lambda: rig.events("capabilities", "CP1"), 3, "capabilities stored")
        assert rig.events("capabilities", "CP1")[0]["read"] is True
        assert not rig.events("capabilities_unread", "CP1")
        # The fuse: a car on a 16 A fuse with 4 A of other load is held within it.
        t0 = rig.now()
        cp.plug_in(ev())
        await wait_until(lambda: (cp.limit().amps or 0) >= 6 and cp.draw()[0] > 5, 15, "the car charges")
        await asyncio.sleep(1.0)
        assert rig.worst(t0) <= rig.fuse + 1e-9


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_reboot_on_the_same_connection_sets_the_charger_up_again(tmp_path, version):
    async with interop_site(tmp_path, [Charger("CP1", version)]) as rig:
        cp = rig.charger("CP1")
        query = "GetConfiguration" if version == "ocpp1.6" else "GetVariables"
        await wait_until(lambda: len(rig.calls("CP1", query)) == 1 and cp.store.profiles.get(1), 5, "set up once")
        cp.store.clear(1, None, None, None)  # a reboot loses what was installed...
        await cp._proto.send_boot()          # ...and boots again on the same socket
        await wait_until(lambda: len(rig.calls("CP1", query)) == 2, 5, "set up again after the reboot")
        await wait_until(lambda: cp.store.profiles.get(1) is not None, 5, "fallback installed again")
        await wait_until(lambda: rig.events("rebooted", "CP1"), 3, "reboot stored")


async def test_a_charger_that_booted_before_a_restart_is_set_up_at_its_first_message(tmp_path, caplog):
    """After a central-system restart chargers reconnect without a BootNotification: no call goes out before
    the charger speaks, and its first message (here a Heartbeat) starts the set-up. Capabilities that cannot
    be read are a warning and a stored event, not a silent default."""
    async with interop_site(tmp_path, [Charger("CP1")], wait_connected=False) as rig:
        rig.charger("CP1").disconnect()  # the simulated one stays away; a raw socket plays the charger
        async with raw_station(rig.app, "CP1", password=PASSWORD) as st:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(st.ws.recv(), 1.5)  # nothing is sent to a charger that has not spoken
            await st.ws.send(json.dumps([2, "h1", "Heartbeat", {}]))
            frames = [json.loads(await asyncio.wait_for(st.ws.recv(), 3)) for _ in range(2)]
            assert [f[0] for f in frames] == [3, 2] and frames[1][2] == "GetConfiguration"
            await st.ws.send(json.dumps([4, frames[1][1], "InternalError", "busy", {}]))
            await wait_until(lambda: rig.events("capabilities_unread", "CP1"), 3, "unread capabilities stored")
            assert "could not read the charger's capabilities" in caplog.text


async def test_a_charger_refusing_every_profile_is_retried_with_exponential_backoff(tmp_path):
    """Other failures than NotImplemented (here Rejected for every purpose) back off exponentially once the
    purpose chain is exhausted, instead of alternating 0.5 s and 1 s retries forever."""
    mis = Misbehaviour(reject_purposes=frozenset(Purpose))
    async with interop_site(tmp_path, [Charger("CP1", "ocpp2.0.1", misbehaviour=mis)], fuse=20) as rig:
        cp = rig.charger("CP1")
        t0 = rig.now()
        cp.plug_in(ev())
        times: list[float] = []
        seen = 0
        while rig.now() - t0 < 25:
            n = len(rig.calls("CP1", "SetChargingProfile"))
            times += [rig.now()] * (n - seen)
            seen = n
            await asyncio.sleep(0.05)
        assert len(times) <= 22, f"{len(times)} SetChargingProfile calls in 25 s: {[round(t - t0, 1) for t in times]}"
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) >= 4.0, f"no backoff: largest gap {max(gaps):.1f} s"
        assert rig.app.delivery.channels["CP1"].control is ControlState.UNCONTROLLED
        # Uncontrolled and unprotected (it refused its fallback too): counted at its maximum 16 A, which fits.
        assert rig.worst(t0) <= rig.fuse + 1e-9


# ---- NotImplemented: permanent for that command -------------------------------------------------------------

async def test_a_charger_without_smart_charging_is_not_stormed_and_is_counted_at_its_maximum(tmp_path):
    """A 2.0.1 charger answering NotImplemented to every SetChargingProfile got 218 calls in 180 s. It is asked
    once per purpose, stored once as a problem, counted at its maximum (so the other car gets what is left),
    and asked again only after it reconnects."""
    bad = Charger("BAD", "ocpp2.0.1", max_current=16,
                  misbehaviour=Misbehaviour(not_implemented_purposes=frozenset(Purpose)))
    good = Charger("GOOD", "ocpp1.6", max_current=32)
    async with interop_site(tmp_path, [bad, good], fuse=40, base_load=(5.0, 5.0, 5.0)) as rig:
        b, g = rig.charger("BAD"), rig.charger("GOOD")
        t0 = rig.now()
        b.plug_in(ev(name="b"))
        g.plug_in(ev(name="g"))
        await wait_until(lambda: rig.app.delivery.channels["BAD"].gave_up, 10, "delivery gives up on BAD")
        await asyncio.sleep(15)
        sets = rig.calls("BAD", "SetChargingProfile")
        assert len(sets) <= 6, f"{len(sets)} SetChargingProfile calls to a charger that implements none"
        assert len(rig.events("profiles_not_supported", "BAD")) == 1
        assert rig.app.delivery.channels["BAD"].control is ControlState.UNCONTROLLED
        lim = rig.app.balancer.decision("garage").limits["BAD"]
        assert lim.counted >= 16
        # The fuse: BAD draws its 16 A uncontrolled, GOOD gets the rest: 40 - margin - 5 - 16 A.
        assert (g.limit().amps or 0) <= 40 - default_margin(40) - 5 - 16 + 1e-9
        assert rig.worst(t0 + 1) <= rig.fuse + 1e-9
        # Reconnect: asked again (the firmware may have changed).
        before = len(sets)
        b.disconnect()
        await b.wait_connected(False)
        b.reconnect()
        await wait_until(lambda: len(rig.calls("BAD", "SetChargingProfile")) > before, 10, "asked again")


@pytest.mark.parametrize("version", VERSIONS)
async def test_not_implemented_tx_profile_moves_to_the_next_purpose_at_once(tmp_path, version):
    mis = Misbehaviour(not_implemented_purposes=frozenset({Purpose.TX}))
    async with interop_site(tmp_path, [Charger("CP1", version, misbehaviour=mis)], fuse=20) as rig:
        cp = rig.charger("CP1")
        t0 = rig.now()
        cp.plug_in(ev())
        # 20 A fuse - the default margin - 4 A other load, on the 0.1 A grid.
        expected = math.floor((20 - default_margin(20) - 4) * 10 + 1e-6) / 10
        await wait_until(lambda: cp.limit().amps == expected, 15, "limit through TxDefaultProfile")
        assert cp.store.profiles[11].purpose is Purpose.TX_DEFAULT
        tx = [p for p in rig.calls("CP1", "SetChargingProfile") if p["charging_profile_purpose"] == "TxProfile"]
        assert len(tx) == 1
        await asyncio.sleep(2)
        assert rig.worst(t0) <= rig.fuse + 1e-9


# ---- composite schedule, measurands, intervals, triggers ----------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
async def test_an_empty_composite_schedule_after_an_accepted_profile_is_a_mismatch(tmp_path, version, caplog):
    mis = Misbehaviour(empty_composite=True)
    async with interop_site(tmp_path, [Charger("CP1", version, misbehaviour=mis)], fuse=20) as rig:
        cp = rig.charger("CP1")
        cp.plug_in(ev())
        await wait_until(lambda: rig.events("composite_mismatch", "CP1"), 10, "mismatch stored")
        assert rig.events("composite_mismatch", "CP1")[0]["reason"] == "no periods"
        assert "composite schedule has no periods" in caplog.text


@pytest.mark.parametrize("version", VERSIONS)
async def test_measurands_and_interval_are_negotiated_down_and_triggers_give_fresh_samples(tmp_path, version):
    """A firmware that samples only some measurands (and refuses the whole list for one it does not know) and
    refuses intervals below 30 s: the central system keeps Current.Import, takes 30 s, records both, and asks
    for a sample once the car has followed its first limit instead of waiting for the periodic one (a sample
    taken at once would show the car not yet drawing, which the balancer cannot learn its phases from)."""
    mis = Misbehaviour(measurands=frozenset({"Current.Import", "Voltage", "Energy.Active.Import.Register"}),
                       min_meter_interval=30)
    async with interop_site(tmp_path, [Charger("CP1", version, misbehaviour=mis)], fuse=20) as rig:
        cp = rig.charger("CP1")
        await wait_until(lambda: rig.events("metering", "CP1"), 5, "metering stored")
        metering = rig.events("metering", "CP1")[0]
        assert metering["measurands"] == ["Current.Import", "Voltage", "Energy.Active.Import.Register"]
        assert metering["interval"] == 30
        assert cp.measurands == ("Current.Import", "Voltage", "Energy.Active.Import.Register")
        assert cp.meter_interval == 30
        t0 = rig.now()
        cp.plug_in(ev())
        await wait_until(lambda: rig.calls("CP1", "TriggerMessage"), 10, "TriggerMessage after the session starts")
        trig = rig.calls("CP1", "TriggerMessage")[0]
        assert trig["requested_message"] == "MeterValues"
        triggered = "SELECT current_l1 FROM meter_values WHERE station_id = 'CP1' AND context = 'Trigger'"
        await wait_until(lambda: rig.query(triggered), 5, "triggered sample stored")
        assert rig.query(triggered)[0][0] > 5, "the triggered sample shows the car drawing its limit"
        await wait_until(lambda: cp.draw()[0] > 5, 15, "the car charges")
        await asyncio.sleep(1.0)
        assert rig.worst(t0) <= rig.fuse + 1e-9


async def test_trigger_not_implemented_is_asked_once_per_connection(tmp_path):
    mis = Misbehaviour(trigger="not-implemented")
    async with interop_site(tmp_path, [Charger("A", misbehaviour=mis), Charger("B")], fuse=25) as rig:
        a, b = rig.charger("A"), rig.charger("B")
        a.plug_in(ev(name="a"))
        await wait_until(lambda: rig.calls("A", "TriggerMessage"), 10, "first TriggerMessage")
        await asyncio.sleep(3)
        b.plug_in(ev(name="b"))  # A's limit changes (shared with B): no new TriggerMessage to A
        await wait_until(lambda: rig.calls("B", "TriggerMessage"), 10, "B gets its TriggerMessage")
        t_b = rig.now()
        await asyncio.sleep(6)
        assert len(rig.calls("A", "TriggerMessage")) == 1
        assert len(rig.calls("B", "TriggerMessage")) <= 1 + (rig.now() - t_b) / 5  # rate-limited
        assert len(rig.events("command_not_supported", "A")) == 1


# ---- duplicate stops ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
async def test_duplicate_stop_messages_are_answered_stored_and_logged_once(tmp_path, version, caplog):
    caplog.set_level(logging.INFO, logger="csms")
    mis = Misbehaviour(duplicate_stop=True)
    async with interop_site(tmp_path, [Charger("CP1", version, misbehaviour=mis)], fuse=20) as rig:
        cp = rig.charger("CP1")
        cp.plug_in(ev())
        await wait_until(lambda: rig.query("SELECT COUNT(*) FROM transactions")[0][0] == 1, 5, "transaction stored")
        await asyncio.sleep(1)
        cp.unplug()
        await wait_until(lambda: rig.query("SELECT COUNT(*) FROM transactions WHERE stopped_at IS NOT NULL")[0][0]
                         == 1, 5, "transaction stopped")
        await asyncio.sleep(1.5)  # the duplicate arrives and is answered (the simulator's outbox drains)
        assert not cp._outbox
        assert rig.query("SELECT COUNT(*) FROM transactions")[0][0] == 1
        ended = [r for r in caplog.records if r.name.startswith("csms.ocpp") and " ended" in r.getMessage()]
        assert len(ended) == 1, [r.getMessage() for r in ended]
        assert rig.worst() <= rig.fuse + 1e-9


# ---- a new session on a paused charger ---------------------------------------------------------------------

async def test_a_new_session_that_must_stay_paused_gets_0_a_at_once_and_is_counted_meanwhile(tmp_path):
    """Issue 12 item 2: two 1.6 chargers, room for one car. The second car's session gets, as its first
    decision, the same 0 A its idle charger had: it must still be sent at once (before the car starts drawing
    its 6 A fallback). B answers every request 3 s late, slower than its car takes to start, so until its
    first limit is accepted the balancer counts the fallback (and A makes room for it)."""
    chargers = [Charger("A"), Charger("B", misbehaviour=Misbehaviour(answer_delay=3.0))]
    # 16 A fuse - the default margin (0.25 A) - 4 A other load = 11.75 A: one car at min_current 6 A, not two.
    async with interop_site(tmp_path, chargers, fuse=16) as rig:
        a, b = rig.charger("A"), rig.charger("B")
        a.plug_in(ev(name="a"))
        await wait_until(lambda: (a.limit().amps or 0) >= 6 and a.draw()[0] > 5, 20, "A charges")
        t0 = rig.now()
        b.plug_in(ev(name="b"))
        await wait_until(lambda: b.connectors[1].session is not None and b.connectors[1].session.transaction_id,
                         3, "B's transaction starts")
        started = rig.now()
        def tx_profiles():
            return [p for p in rig.calls("B", "SetChargingProfile") if p["charging_profile_purpose"] == "TxProfile"]

        await wait_until(tx_profiles, 2, "B's first TxProfile, at once")
        assert tx_profiles()[0]["charging_schedule"]["charging_schedule_period"][0]["limit"] == 0
        await asyncio.sleep(6)
        assert rig.worst(t0) <= rig.fuse + 1e-9, "the fuse carried more than its rating"
        counted = [json.loads(limits)["B"] for (limits,) in rig.query(
            "SELECT limits FROM decisions WHERE at >= ? ORDER BY id", started - 0.5)]
        assert any(c["counted"] >= 6 for c in counted), "B's fallback was never counted while its limit was pending"


# ---- a settled car stays settled -------------------------------------------------------------------------

async def test_a_single_car_settles_without_limit_cycling(tmp_path):
    """One car that wants more than the fuse allows, a charger reporting every 10 s (shipped default): once it
    has settled its limit stays put (at most one change in the last 30 s) and the fuse holds."""
    async with interop_site(tmp_path, [Charger("CP1", max_current=32)], fuse=20) as rig:
        cp = rig.charger("CP1")
        cp.plug_in(ev(max_current=32))
        await wait_until(lambda: cp.draw()[0] > 10, 20, "the car charges")
        await asyncio.sleep(15)
        t0 = rig.now()
        before = len(rig.calls("CP1", "SetChargingProfile"))
        limits_before = cp.limit().amps
        await asyncio.sleep(30)
        sent = rig.calls("CP1", "SetChargingProfile")[before:]
        limits = [p["charging_schedule"]["charging_schedule_period"][0]["limit"] for p in sent
                  if p["charging_profile_id"] != 1]  # dynamic limits and their refreshes, not the fallback
        assert limits, "no refresh in 30 s: the dynamic limit would expire"
        changes = set(limits) - {limits_before}
        assert len(changes) <= 1, f"limit kept changing: {limits_before} then {sorted(changes)}"
        assert rig.worst(t0) <= rig.fuse + 1e-9
        assert cp.draw()[0] >= 0.95 * (20 - default_margin(20) - 4) - 0.5
