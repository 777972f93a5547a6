"""A reloaded config: the diff is right, a valid file is applied without touching what did not change, and a
broken file or one that needs a restart changes nothing (in-process; the real-process test is in tests/e2e)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from websockets.exceptions import InvalidStatus

from csms.config import diff_configs, parse_config, read_config
from csms.runtime.app import CentralSystemApp
from tests.csms.harness import PASSWORDS, raw_station

NEW_PASSWORD = "0f1e2d3c4b5a69788796a5b4"


def site(tmp_path: Path) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1},
        "storage": {"database": str(tmp_path / "csms.sqlite")},
        "organisations": [{"id": "org", "name": "Org"}],
        "chargers": [{"id": cid, "password": PASSWORDS[cid], "organisation": "org"} for cid in ("CP0001", "CP0002")],
        "load_balancers": [{"id": "garage", "name": "Garage", "organisation": "org", "chargers": ["CP0001", "CP0002"],
                            "supply_max_current": 40, "max_current_online": 40, "max_current_offline": 20}],
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(data))
    return path


async def boot(st) -> None:
    reply = await st.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert reply[2]["status"] == "Accepted"


# ---- the diff ---------------------------------------------------------------------------------------

def test_the_diff_names_what_was_added_removed_and_changed(tmp_path):
    old = site(tmp_path)
    new = copy.deepcopy(old)
    new["chargers"][1]["max_current"] = 16
    new["chargers"].append({"id": "CP0003", "password": PASSWORDS["CP0003"], "organisation": "org"})
    new["load_balancers"][0]["max_current_online"] = 25
    new["load_balancers"].append({"id": "yard", "name": "Yard", "organisation": "org", "chargers": ["CP0003"],
                                  "supply_max_current": 25, "max_current_online": 25, "max_current_offline": 10})
    diff = diff_configs(parse_config(old), parse_config(new))
    assert (diff.chargers.added, diff.chargers.removed, diff.chargers.changed) == (("CP0003",), (), ("CP0002",))
    assert (diff.groups.added, diff.groups.changed) == (("yard",), ("garage",))
    assert not diff.needs_restart and not diff.meters
    assert diff.summary() == ["chargers added: CP0003", "chargers changed: CP0002", "groups added: yard",
                              "groups changed: garage"]
    back = diff_configs(parse_config(new), parse_config(old))
    assert back.chargers.removed == ("CP0003",) and back.groups.removed == ("yard",)


def test_an_unchanged_file_is_no_diff_and_a_restart_only_section_is_named(tmp_path):
    data = site(tmp_path)
    assert not diff_configs(parse_config(data), parse_config(copy.deepcopy(data)))
    moved = copy.deepcopy(data)
    moved["server"]["port"] = 9999
    moved["smart_charging"] = {"failsafe_ttl": 120}
    diff = diff_configs(parse_config(data), parse_config(moved))
    assert [p.path for p in diff.needs_restart] == ["server", "smart_charging"]
    assert all("restart csms serve" in p.message for p in diff.needs_restart)


# ---- the app ----------------------------------------------------------------------------------------

async def test_a_reload_adds_changes_and_removes_without_touching_the_rest(tmp_path):
    data = site(tmp_path)
    path = write(tmp_path / "site.toml", data)
    cfg, digest = read_config(path)
    async with CentralSystemApp(cfg, config_path=path, digest=digest) as app:
        first = app.reloader.version
        assert first.number == 1 and first.digest == digest
        with pytest.raises(InvalidStatus) as refused:
            async with raw_station(app, "CP0003"):
                pass
        assert refused.value.response.status_code == 404
        async with raw_station(app, "CP0001") as cp1, raw_station(app, "CP0002") as cp2:
            await boot(cp1)
            await boot(cp2)
            data["chargers"].append({"id": "CP0003", "password": PASSWORDS["CP0003"], "organisation": "org"})
            data["load_balancers"][0]["chargers"].append("CP0003")
            data["load_balancers"][0]["max_current_online"] = 21
            data["chargers"] = [c for c in data["chargers"] if c["id"] != "CP0002"]
            data["load_balancers"][0]["chargers"].remove("CP0002")
            write(path, data)
            result = await app.reloader.reload("test")
            assert result.applied, result.problems
            assert set(result.changes) == {"chargers added: CP0003", "chargers removed: CP0002",
                                           "groups changed: garage"}
            assert app.reloader.version.number == 2 and app.reloader.version.digest != digest
            async with asyncio.timeout(5):
                await cp2.ws.wait_closed()  # the removed station's session is closed...
            assert cp2.ws.close_reason == "removed from the site config"
            assert app.server.sessions.get("CP0001") is not None and cp1.ws.state.name == "OPEN"  # ...no other
            await boot(cp1)  # and it still talks
            async with raw_station(app, "CP0003") as cp3:  # the added station is let in
                await boot(cp3)
                decision = await app.balancer.next_decision("CP0003", 2.0)
                assert decision is not None and set(decision.limits) == {"CP0001", "CP0003"}
                assert decision.budget is not None
            assert "CP0002" not in app.delivery.channels and "CP0003" in app.delivery.channels
            assert app.delivery.channels["CP0001"].group.max_current_online == 21
            with pytest.raises(InvalidStatus) as gone:
                async with raw_station(app, "CP0002"):
                    pass
            assert gone.value.response.status_code == 404
            events = await app.storage.read(lambda db: [r["kind"] for r in db.query("SELECT kind FROM events")])
            assert "config_reloaded" in events


@contextlib.asynccontextmanager
async def one_station_booted(tmp_path: Path, data: dict[str, Any]):
    """The app on ``data`` written to a file, with CP0001 connected and booted: (app, the file, the station)."""
    path = write(tmp_path / "site.toml", data)
    cfg, digest = read_config(path)
    async with CentralSystemApp(cfg, config_path=path, digest=digest) as app:
        async with raw_station(app, "CP0001") as cp1:
            await boot(cp1)
            yield app, path, cp1


async def test_a_broken_file_or_a_restart_only_change_changes_nothing(tmp_path):
    data = site(tmp_path)
    async with one_station_booted(tmp_path, data) as (app, path, cp1):
        cfg = app.cfg
        broken = copy.deepcopy(data)
        broken["load_balancers"][0]["max_current_online"] = "lots"
        broken["chargers"].append({"id": "CP0003", "password": PASSWORDS["CP0003"], "organisation": "org"})
        write(path, broken)
        result = await app.reloader.reload("test")
        assert not result.applied
        assert any("load_balancers.0.max_current_online" in line for line in result.problems), result.problems
        assert app.cfg is cfg and app.reloader.version.number == 1
        assert app.reloader.status()["last_refused"] is not None
        path.write_text("[server\nport = 1")
        result = await app.reloader.reload("test")
        assert not result.applied and "(syntax)" in result.problems[0]
        moved = copy.deepcopy(data)
        moved["server"]["heartbeat_interval"] = 60
        moved["chargers"][0]["password"] = NEW_PASSWORD
        write(path, moved)
        result = await app.reloader.reload("test")
        assert not result.applied and result.problems[0].endswith(
            "server: changed; the OCPP listener (address, TLS, security profile, limits) is set when csms "
            "serve starts: restart csms serve to apply it (nothing of this file was applied)")
        assert app.cfg is cfg
        with pytest.raises(InvalidStatus):  # CP0003 was in the broken file only
            async with raw_station(app, "CP0003"):
                pass
        with pytest.raises(InvalidStatus) as wrong:  # the password did not change either
            async with raw_station(app, "CP0001", password=NEW_PASSWORD):
                pass
        assert wrong.value.response.status_code == 401
        events = await app.storage.read(lambda db: [r["kind"] for r in db.query("SELECT kind FROM events")])
        assert events.count("config_reload_refused") == 3


async def test_a_reload_puts_a_new_sub_board_in_force_at_the_next_decision(tmp_path):
    """Circuits are part of what a reload applies: a sub-board added to the file bounds its chargers from the
    group's next decision, with no reconnect."""
    data = site(tmp_path)
    async with one_station_booted(tmp_path, data) as (app, path, cp1):
        data["circuits"] = [{"id": "carport", "name": "Carport", "max_current": 10, "chargers": ["CP0001"]}]
        write(path, data)
        result = await app.reloader.reload("test")
        assert result.applied, result.problems
        assert result.changes == ("circuits added: carport",)
        decision = await app.balancer.next_decision("CP0001", 2.0)
        assert decision is not None and "carport" in decision.circuits
        assert cp1.ws.state.name == "OPEN"
        data.pop("circuits")
        write(path, data)
        result = await app.reloader.reload("test")
        assert result.applied and result.changes == ("circuits removed: carport",)
        decision = await app.balancer.next_decision("CP0001", 2.0)
        assert decision is not None and not decision.circuits


# ---- the meter across a reload ------------------------------------------------------------------------

SERIAL = "AG1234567G"


@contextlib.asynccontextmanager
async def metered(tmp_path: Path):
    """The app on a site whose group reads a simulated Amp Guard over Modbus TCP: (app, the file, its data),
    once the meter is online."""
    from simulators.meter import AmpGuardSim

    meter = AmpGuardSim(SERIAL, lambda: (5.0, 6.0, 7.0))
    port = await meter.serve_modbus()
    data = site(tmp_path)
    data["meters"] = [{"serial": SERIAL, "pin": "12345678", "organisation": "org", "port": port,
                       "poll_interval": 0.2}]
    data["load_balancers"][0]["meter"] = SERIAL
    path = write(tmp_path / "site.toml", data)
    cfg, digest = read_config(path)
    try:
        async with CentralSystemApp(cfg, config_path=path, digest=digest) as app:
            await until(lambda: app.meter_states.get(SERIAL) is not None
                        and app.meter_states[SERIAL].status == "online", "the meter online")
            yield app, path, data
    finally:
        await meter.stop()


async def until(predicate, what: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def read_on(app) -> None:
    """Readings of the meter keep reaching the balancer."""
    before = app.last_readings[SERIAL].taken_at
    await until(lambda: app.last_readings[SERIAL].taken_at > before, "a newer reading")
    assert app.meter_states[SERIAL].status == "online"


async def meter_events(app) -> list[str]:
    await app.storage.write(lambda db: None)  # behind every write queued before it
    return await app.storage.read(lambda db: [r["kind"] for r in db.query(
        "SELECT kind FROM events WHERE kind LIKE 'meter_%' ORDER BY rowid")])


async def test_a_reload_naming_a_register_map_that_is_not_there_is_refused_and_the_meter_read_on(tmp_path):
    async with metered(tmp_path) as (app, path, data):
        cfg = app.cfg
        bad = copy.deepcopy(data)
        bad["meters"][0]["profile"] = "nosuchmap"
        bad["load_balancers"][0]["max_current_online"] = 30
        write(path, bad)
        result = await app.reloader.reload("test")
        assert not result.applied
        assert any("meters.0.profile" in line and "'nosuchmap' not found" in line for line in result.problems), \
            result.problems
        assert app.cfg is cfg and app.delivery.channels["CP0001"].group.max_current_online == 40
        await read_on(app)


async def test_a_register_map_gone_between_the_check_and_the_apply_changes_nothing(tmp_path, monkeypatch):
    """The meter source is built before anything of the new file is put in force: a map that cannot be loaded
    then (deleted after the check) leaves the old config, and the old source reading, in force."""
    import csms.config.loading

    async with metered(tmp_path) as (app, path, data):
        cfg, meters = app.cfg, app.meters
        bad = copy.deepcopy(data)
        bad["meters"][0]["profile"] = "nosuchmap"
        bad["load_balancers"][0]["max_current_online"] = 30
        write(path, bad)
        monkeypatch.setattr(csms.config.loading, "check_files", lambda cfg: [])
        result = await app.reloader.reload("test")
        assert not result.applied and "(internal)" in result.problems[0]
        assert app.cfg is cfg and app.meters is meters
        assert app.delivery.channels["CP0001"].group.max_current_online == 40
        await read_on(app)


async def test_a_reload_that_changes_the_meter_keeps_it_online(tmp_path):
    """The new source starts before the old one stops, and its "no reading yet" does not make a meter that is
    being read offline (the balancer would fall back to max_current_offline for a moment)."""
    async with metered(tmp_path) as (app, path, data):
        seen: list[bool] = []
        on_meter_state = app.balancer.on_meter_state

        def spy(serial: str, online: bool) -> None:
            seen.append(online)
            on_meter_state(serial, online)
        app.balancer.on_meter_state = spy
        before = await meter_events(app)
        old = app.meters
        data["meters"][0]["poll_interval"] = 0.3
        write(path, data)
        result = await app.reloader.reload("test")
        assert result.applied, result.problems
        assert app.meters is not old
        await read_on(app)
        await read_on(app)
        assert False not in seen, seen
        assert await meter_events(app) == before
