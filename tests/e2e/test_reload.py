"""Changing the config without a restart, against ``csms serve`` as a process with simulated chargers at the
shipped defaults: ``csms reload`` and SIGHUP add a charger, change a group's limit (the cars follow), deactivate
the group, remove a charger and refuse a broken file, while every charger that stays keeps its very connection
and its session. Then many reloads while cars charge: no disconnect, no lost transaction."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from tests.e2e.harness import (
    GROUP, OPERATOR_TOKEN, PASSWORD, READ_TOKEN, SLOWEST_EV, SLOWEST_RAMP, ChargerSpec, Rig, SiteSpec, ev_model,
    running_site, wait_until,
)
from tests.e2e.test_operator import csms

pytestmark = pytest.mark.e2e

#: A (A) of measurement and EV control slack when checking that the cars keep under a group's new limit.
SLACK = 1.0


def api(rig: Rig, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
    assert rig.cfg.http is not None
    token = OPERATOR_TOKEN if method == "POST" else READ_TOKEN
    req = urllib.request.Request(f"http://127.0.0.1:{rig.cfg.http.port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def edit(rig: Rig, change) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Applies ``change`` to the config file's data and writes it back (as an operator's editor would)."""
    data = tomllib.loads(rig.config_path.read_text())
    change(data)
    rig.config_path.write_text(tomli_w.dumps(data))
    return data


def group(data: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in data["load_balancers"] if g["id"] == GROUP)


async def reload(rig: Rig) -> tuple[int, str, str]:
    return await csms("reload", "--config", str(rig.config_path))


def connections(rig: Rig, ids: list[str]) -> dict[str, object]:
    """Each charger's websocket object: the same object later means the same connection, never reconnected."""
    return {cid: rig.charger(cid)._ws for cid in ids}


def transactions(rig: Rig, ids: list[str]) -> dict[str, str | None]:
    return {cid: rig.charger(cid).connectors[1].session.transaction_id for cid in ids
            if rig.charger(cid).connectors[1].session is not None}


def disconnect_lines(rig: Rig, ids: list[str]) -> list[str]:
    return [line for line in rig.csms.log_tail(10**9).splitlines()
            if any(f" {cid}: disconnected" in line or f" {cid}: connected" in line for cid in ids)]


async def test_reload_adds_changes_deactivates_removes_and_refuses_a_broken_file(tmp_path: Path):
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1"), ChargerSpec("CP3", "ocpp1.6")],
                    http=True)
    async with running_site(tmp_path, spec) as rig:
        rig.plug_in_all()
        await rig.settle(lambda s: all(sum(d) > 0 for d in s.evs.values()), SLOWEST_EV + 20, "every car to charge")
        kept = ["CP1", "CP3"]
        conns, txs = connections(rig, kept), transactions(rig, kept)
        assert len(txs) == 2 and all(txs.values()), txs
        connected_lines = disconnect_lines(rig, kept)
        status, first = api(rig, "/api/status?events=0")
        assert first["config"]["number"] == 1 and first["config"]["sha256"]

        # A charger not in the config is refused (404) until a reload adds it.
        cp4 = SimCharger(SimChargerConfig(id="CP4", password=PASSWORD, version="ocpp2.0.1", backoff_min=0.2,
                                          backoff_max=1.0, response_timeout=5.0), rig.sim.clock)
        rig.sim.fleet.add(cp4)
        rig.site.chargers.append(cp4)
        await cp4.start(f"ws://127.0.0.1:{rig.cfg.server.port}/ocpp")
        await asyncio.sleep(2.0)
        assert not cp4.connected
        edit(rig, lambda d: (d["chargers"].append({**d["chargers"][0], "id": "CP4"}), group(d)["chargers"].append("CP4")))
        code, out, err = await reload(rig)
        assert code == 0 and "chargers added: CP4" in out and "groups changed: garage" in out, (out, err)
        await cp4.wait_connected(True, timeout=15)
        cp4.plug_in(ev_model(name="car@CP4"))
        await rig.settle(lambda s: sum(s.evs["CP4"]) > 0, SLOWEST_EV + 20, "the added charger's car to charge")

        # A lower group limit: the cars follow it.
        edit(rig, lambda d: group(d).update(max_current_online=20))
        code, out, err = await reload(rig)
        assert code == 0, (out, err)
        await rig.settle(lambda s: all(s.ev_total(p) <= 20 + SLACK for p in (1, 2, 3)), SLOWEST_RAMP + 20,
                         "the cars to share the group's new 20 A")

        # Deactivated (by SIGHUP this time): the chargers keep their offline limits.
        edit(rig, lambda d: group(d).update(active=False))
        rig.csms.proc.send_signal(signal.SIGHUP)
        await rig.settle(lambda s: all(s.offered[c] <= 6.0 for c in ("CP1", "CP2", "CP3", "CP4")), 30,
                         "every charger to offer its offline current (6 A) in the inactive group")
        assert api(rig, "/api/status?events=0")[1]["config"]["number"] == 4
        edit(rig, lambda d: group(d).update(active=True))
        code, out, err = await reload(rig)
        assert code == 0, (out, err)
        await rig.settle(lambda s: max(s.offered.values()) > 6.0, 30, "the active group to raise limits again")

        # A removed charger: its session is closed, it is refused from then on, its records stay.
        cp2 = rig.charger("CP2")
        edit(rig, lambda d: (d.update(chargers=[c for c in d["chargers"] if c["id"] != "CP2"]),
                             group(d)["chargers"].remove("CP2")))
        code, out, err = await reload(rig)
        assert code == 0 and "chargers removed: CP2" in out, (out, err)
        await cp2.wait_connected(False, timeout=10)
        await asyncio.sleep(2.0)
        assert not cp2.connected
        with sqlite3.connect(rig.db_path) as db:
            assert db.execute("SELECT count(*) FROM transactions WHERE station_id = 'CP2'").fetchone()[0] == 1

        # A broken file: exit 1 naming the field, and nothing changes.
        version = api(rig, "/api/status?events=0")[1]["config"]
        edit(rig, lambda d: group(d).update(max_current_online=-3, active=False))
        code, out, err = await reload(rig)
        assert code == 1 and "load_balancers.0.max_current_online" in err, (out, err)
        status, after = api(rig, "/api/status?events=0")
        assert after["config"]["version"] == version["version"] and after["config"]["last_refused"] is not None
        await rig.hold(2.0)
        assert all(max(s.offered.values()) > 6.0 for s in rig.observer.since(rig.now() - 2.0)), "the group went off"

        # The chargers that stayed kept their very connection and their session throughout.
        assert connections(rig, kept) == conns
        assert transactions(rig, kept) == txs
        assert disconnect_lines(rig, kept) == connected_lines
        refused = api(rig, "/api/events?kind=config_reload_refused&since=0")[1]
        assert len(refused) == 1 and "load_balancers.0.max_current_online" in json.dumps(refused[0]), refused
        applied = api(rig, "/api/events?kind=config_reloaded&since=0")[1]
        assert len(applied) == 5, applied
        assert {e["detail"]["by"] for e in applied} == {"cli 127.0.0.1", "SIGHUP"}, applied  # who asked


async def test_many_reloads_under_load_lose_no_connection_and_no_session(tmp_path: Path):
    n, reloads = 100, 100
    # 1-phase cars on chargers wired RST, STR and TRS in turn: a third of them on each building phase, so that the
    # 400 A (public clamp) fuse gives every one of the 100 cars more than its 6 A minimum and all of them charge.
    spec = SiteSpec([ChargerSpec(f"CP{i:03d}", "ocpp1.6" if i % 2 else "ocpp2.0.1",
                                 rotation=("RST", "STR", "TRS")[i % 3]) for i in range(n)], fuse=400, http=True)
    async with running_site(tmp_path, spec, base_load=(10.0, 10.0, 10.0)) as rig:
        ids = [c.id for c in rig.sim.fleet]
        rig.plug_in_all(phases=1, max_current=16.0)
        await wait_until(lambda: len(transactions(rig, ids)) == n and all(transactions(rig, ids).values()), 60,
                         "a transaction on every charger")
        await rig.settle(lambda s: all(max(d) > 5 for d in s.evs.values()), SLOWEST_EV + 60, "all 100 cars charging")
        conns, txs = connections(rig, ids), transactions(rig, ids)
        assert len(txs) == n
        lines = disconnect_lines(rig, ids)
        started = time.monotonic()
        for i in range(reloads):
            def change(d: dict[str, Any], i: int = i) -> None:
                group(d)["max_current_online"] = 360 if i % 2 else 380
                d["chargers"] = [c for c in d["chargers"] if c["id"] != "SPARE"]
                if i % 10 == 5:  # a charger added (and removed by the next reload) that no simulated charger is
                    d["chargers"].append({**d["chargers"][0], "id": "SPARE"})
            edit(rig, change)
            if i % 10 == 0:
                rig.csms.proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.2)
                continue
            status, answer = await asyncio.to_thread(api, rig, "/api/config/reload", "POST")
            assert status == 200 and answer["outcome"] == "applied", answer
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
        status, final = api(rig, "/api/status?events=0")
        assert final["config"]["number"] >= reloads, final["config"]  # each applied (SIGHUPs may coalesce none)
        assert all(c.connected for c in rig.sim.fleet)
        assert connections(rig, ids) == conns, "a charger reconnected"
        assert transactions(rig, ids) == txs, "a session was lost"
        assert disconnect_lines(rig, ids) == lines
        with sqlite3.connect(rig.db_path) as db:
            running = db.execute("SELECT count(*) FROM transactions WHERE stopped_at IS NULL").fetchone()[0]
        assert running == n
        assert "Traceback" not in rig.csms.log_tail(10**9)
        # Every charger's outbox empties (a message may be on the wire at any instant, so each one is watched
        # until it has been seen empty once; one stuck behind an unanswered call never is).
        drained: set[str] = set()

        def all_drained() -> bool:
            drained.update(c.id for c in rig.sim.fleet if len(c._outbox) == 0)
            return len(drained) == n
        await wait_until(all_drained, 30, "every charger's messages answered (none left unsent)")
        await rig.settle(lambda s: all(max(d) > 5 for d in s.evs.values()), SLOWEST_EV + 30, "all 100 cars charging")
        print(f"{reloads} reloads under {n} charging cars in {elapsed:.1f} s")
