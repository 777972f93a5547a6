"""The operator's charging-profile commands against simulated chargers of both versions over real websockets.

``set-charging-profile`` caps a charger inside what the balancer allows: the cap is the balancer's input, and the
charger learns it from the delivery's next profile (never a raw profile of the operator's). The capacity it frees
goes to the other charger of the group; ``clear-charging-profile`` lifts it again. ``get-composite-schedule`` and
(2.0.1) ``get-charging-profiles`` ask the charger what it has.

The site (:mod:`.site`): CP1 speaks OCPP 1.6, CP2 OCPP 2.0.1, both 16 A 3-phase behind one 40 A fuse with
``max_current_online`` 32 A and an 11 A base load on L3, so two cars share 28.6 A on L3 (14.3 A each), and one
capped at 8 A leaves the other its full 16 A.
"""

from __future__ import annotations

import json

import pytest

from csms.operations.results import BadArguments
from csms.storage.caps import load_caps

from .site import get, post, running_site, wait_until

OTHER = {"CP1": "CP2", "CP2": "CP1"}
VERSIONS = pytest.mark.parametrize("cid", ["CP1", "CP2"])
#: Our dynamic profiles' ids (the fallback is 1).
DYNAMIC_IDS = {10, 11, 12}


def dynamic_limits(rig, cid: str) -> list[float]:
    """The limits of the dynamic profiles the charger received (from the delivery), oldest first."""
    out = []
    for action, payload in rig.charger(cid).received:
        if action != "SetChargingProfile":
            continue
        profile = payload  # the connector / EVSE and the profile's own fields, as the simulator logs them
        pid = profile.get("charging_profile_id", profile.get("id"))
        schedule = profile["charging_schedule"]
        schedule = schedule[0] if isinstance(schedule, list) else schedule
        if pid in DYNAMIC_IDS:
            out.append(float(schedule["charging_schedule_period"][0]["limit"]))
    return out


def limit(app, cid: str) -> float:
    """The charger's limit in the group's latest decision (0 before the first)."""
    decision = app.balancer.decision("garage")
    return decision.limits[cid].limit if decision is not None and cid in decision.limits else 0.0


async def both_charging(rig) -> None:
    app = rig.app
    rig.plug_in("CP1")
    rig.plug_in("CP2")
    await wait_until(lambda: all(app.delivery.channels[c].in_force and app.delivery.channels[c].in_force >= 6
                                 for c in ("CP1", "CP2")), timeout=15, what="both chargers limited")
    await wait_until(lambda: all(limit(app, c) < 16 for c in ("CP1", "CP2")), timeout=15,
                     what="the two cars sharing L3 (each below its 16 A)")


@VERSIONS
async def test_a_cap_lowers_the_charger_and_frees_current_for_the_other(tmp_path, cid):
    other = OTHER[cid]
    async with running_site(tmp_path) as rig:
        app = rig.app
        await both_charging(rig)
        shared = limit(app, other)
        assert shared < 16

        result = await app.commands.execute(cid, "set-charging-profile", {"limit": 8}, "test op")
        assert result.ok and result.status == "Accepted"
        assert result.reply["operatorCap"]["limit"] == 8 and result.reply["operatorCap"]["until"] is None
        assert result.reply["allowed"]["limit"] == 8.0  # what the balancer now allows
        assert result.reply["allowed"]["reason"] == "operator cap 8.0 A"
        assert "operator cap 8.0 A" in app.balancer.explain(cid)

        # The charger gets it from the delivery, as a dynamic profile of at most 8 A.
        await wait_until(lambda: (sent := dynamic_limits(rig, cid)) and sent[-1] <= 8.0, timeout=10,
                         what=f"{cid} sent a profile within 8 A")
        await wait_until(lambda: app.delivery.channels[cid].in_force == 8.0, what=f"{cid} at 8 A in force")
        # What it freed goes to the other charger (break before make: once the mains shows the decrease).
        await wait_until(lambda: limit(app, other) > shared, timeout=15, what=f"{other} getting more")
        await wait_until(lambda: (app.delivery.channels[other].in_force or 0) > shared, timeout=15,
                         what=f"{other}'s increase in force")
        assert limit(app, other) == 16.0

        # The operator view shows the cap; storage keeps it.
        status, _, text = await get(rig, f"/api/chargers/{cid}")
        assert status == 200 and json.loads(text)["operator_cap"]["limit"] == 8
        assert json.loads(text)["operator_cap"]["by"] == "test op"
        rows = await app.storage.read(load_caps)
        assert [(r["station_id"], r["limit_a"], r["by"]) for r in rows] == [(cid, 8.0, "test op")]
        events = await app.storage.read(lambda db: list(db.query(
            "SELECT station_id, detail FROM events WHERE kind = 'operator_command'")))
        logged = [json.loads(e["detail"]) for e in events if e["station_id"] == cid]
        assert [(e["command"], e["by"], e["outcome"], e["arguments"]) for e in logged] == [
            ("set-charging-profile", "test op", "Accepted", {"limit": 8.0})]

        cleared = await app.commands.execute(cid, "clear-charging-profile", {}, "test op")
        assert cleared.ok and cleared.reply["lifted"]["limit"] == 8 and cleared.reply["operatorCap"] is None
        await wait_until(lambda: limit(app, cid) > 8.0, what=f"{cid}'s cap lifted in the balancer")
        await wait_until(lambda: dynamic_limits(rig, cid)[-1] > 8.0, timeout=20, what=f"{cid} sent more than 8 A")
        assert await app.storage.read(load_caps) == []
        status, _, text = await get(rig, f"/api/chargers/{cid}")
        assert json.loads(text)["operator_cap"] is None


async def test_a_cap_below_min_current_pauses_and_a_duration_lapses(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        await both_charging(rig)
        result = await app.commands.execute("CP2", "set-charging-profile", {"limit": 4, "duration": 3}, "test")
        assert result.reply["allowed"]["limit"] == 0.0
        assert result.reply["allowed"]["reason"].startswith(
            "operator cap 4.0 A is below the group's min_current 6.0 A until ")
        await wait_until(lambda: app.delivery.channels["CP2"].in_force == 0.0, what="CP2 paused")
        # After its duration the cap lapses by itself: the next run ignores it.
        await wait_until(lambda: limit(app, "CP2") >= 6.0, timeout=10, what="the cap to lapse")
        assert app.caps.cap("CP2") is None


async def test_caps_survive_a_restart(tmp_path):
    async with running_site(tmp_path) as rig:
        await rig.app.commands.execute("CP1", "set-charging-profile", {"limit": 7.5}, "test")
    async with running_site(tmp_path) as rig:
        app = rig.app
        assert app.caps.cap("CP1").limit == 7.5
        rig.plug_in("CP1")
        # A decision made before CP1 is back counts it, uncontrolled, at its max_current: wait for one that controls it.
        await wait_until(lambda: 0 < limit(app, "CP1") and app.balancer.decision("garage").limits["CP1"].controlled,
                         what="CP1 charging under control")
        assert limit(app, "CP1") == 7.5 and app.balancer.decision("garage").limits["CP1"].reason == "operator cap 7.5 A"


async def test_cap_arguments_are_checked(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        for body, field in (({"limit": -1}, "limit"), ({}, "limit"), ({"limit": 8, "until": "2020-01-01T00:00:00Z"},
                                                                        "until"),
                            ({"limit": 8, "until": "2030-01-01T00:00:00"}, "until"),  # no zone
                            ({"limit": 8, "until": "2030-01-01T00:00:00Z", "duration": 60}, "duration"),  # the CLI names --duration
                            ({"limit": 8, "connector": 2}, "connector")):
            with pytest.raises(BadArguments) as err:
                await app.commands.execute("CP1", "set-charging-profile", body, "test")
            assert err.value.field == field, (body, err.value)
        # Over HTTP: 400 naming the field; a charger in no group would be 409.
        status, answer = await post(rig, "/api/stations/CP1/commands/set-charging-profile", {"limit": "lots"})
        assert status == 400 and answer["field"] == "limit"
        until = "2099-01-01T00:00:00Z"
        status, answer = await post(rig, "/api/stations/CP1/commands/set-charging-profile",
                                    {"limit": 10, "until": until, "connector": 1})
        assert status == 200 and answer["reply"]["operatorCap"]["until"] == until


@VERSIONS
async def test_get_composite_schedule_returns_the_chargers_composite(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        await both_charging(rig)
        await app.commands.execute(cid, "set-charging-profile", {"limit": 8}, "test")
        await wait_until(lambda: app.delivery.channels[cid].in_force == 8.0, what=f"{cid} at 8 A in force")
        result = await app.commands.execute(cid, "get-composite-schedule",
                                            {"connector": 1, "duration": 300, "unit": "A"}, "test")
        assert result.ok and result.status == "Accepted"
        expected = charger.composite(1, 300, "A")
        schedule = result.reply["chargingSchedule"] if cid == "CP1" else result.reply["schedule"]
        periods = schedule["chargingSchedulePeriod"]
        assert schedule["chargingRateUnit"] == "A"
        assert periods[0]["limit"] == expected.periods[0].limit == 8.0
        assert len(periods) == len(expected.periods)
        sent = [p for a, p in charger.received if a == "GetCompositeSchedule"][-1]
        assert sent["duration"] == 300 and sent.get("connector_id", sent.get("evse_id")) == 1


async def test_get_charging_profiles_returns_the_reported_profiles(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        await both_charging(rig)
        everything = await app.commands.execute("CP2", "get-charging-profiles", {}, "test")
        assert everything.status == "Accepted" and everything.ok
        assert everything.reply["complete"] is True
        reported = {p["id"]: (r["evseId"], p) for r in everything.reply["reports"] for p in r["chargingProfile"]}
        assert set(reported) == set(p.id for p in rig.charger("CP2").store.profiles.values())
        assert reported[1][0] == 0 and reported[1][1]["chargingProfilePurpose"] == "TxDefaultProfile"  # the fallback
        assert any(i in DYNAMIC_IDS for i in reported)
        assert everything.reply["reports"][-1]["tbc"] is False

        tx = await app.commands.execute("CP2", "get-charging-profiles", {"purpose": "TxProfile", "connector": 1},
                                        "test")
        assert all(p["chargingProfilePurpose"] == "TxProfile" for r in tx.reply["reports"]
                   for p in r["chargingProfile"])
        none = await app.commands.execute("CP2", "get-charging-profiles", {"stack_level": 99}, "test")
        assert none.status == "NoProfiles" and none.ok and "reports" not in none.reply

        with pytest.raises(BadArguments) as err:
            await app.commands.execute("CP1", "get-charging-profiles", {}, "test")
        assert "not available in OCPP 1.6; use get-composite-schedule" in str(err.value)
        status, answer = await post(rig, "/api/stations/CP1/commands/get-charging-profiles", {})
        assert status == 400 and "use get-composite-schedule" in answer["error"]


async def test_a_1_6_composite_with_limits_off_the_tenth_grid_is_returned(tmp_path):
    """Real 1.6 chargers report limits like 13.33, which the reply schema's multipleOf 0.1 refuses: the command
    takes the reply as it is (as the delivery's own GetCompositeSchedule does)."""
    from simulators.profile_store import CompositePeriod, CompositeSchedule

    async with running_site(tmp_path) as rig:
        charger = rig.charger("CP1")
        # Such a firmware: its composite is 13.33 A, and it does not check its own reply against the schema.
        charger.composite = lambda connector, duration, unit: CompositeSchedule(  # type: ignore[method-assign]
            connector, charger.clock.now(), duration, "A", (CompositePeriod(0, 13.33),))
        charger._proto.route_map["GetCompositeSchedule"]["_skip_schema_validation"] = True
        result = await rig.app.commands.execute("CP1", "get-composite-schedule", {"connector": 1}, "test")
        assert result.status == "Accepted"
        assert float(result.reply["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]) == 13.33
        status, answer = await post(rig, "/api/stations/CP1/commands/get-composite-schedule", {"connector": 1})
        assert status == 200 and answer["reply"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 13.33
