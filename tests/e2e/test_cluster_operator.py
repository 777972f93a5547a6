"""The operator's tools in the scaled-out form (two gateways, two controllers, mosquitto, PostgreSQL, the simulated
site at shipped defaults): a cap set on any node is applied by the controller leading the group, survives that
controller's SIGKILL (the new leader applies it) and a controller's restart (nothing deletes it); a station command
sent to a gateway runs wherever the station is (one another gateway holds is relayed by a controller); the
commissioning check runs on the leading controller and is refused, saying where to go, elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from csms.runtime.operator_caps import REFRESH_EVERY
from tests.e2e.harness import OPERATOR_TOKEN, ev_model, wait_until
from tests.e2e.test_cluster import BASE, TAKEOVER_SLACK, Cluster, command, running_cluster, status
from tests.support.postgres import unavailable_reason

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))]

#: The leader's next decision after it read the cap, and the charger's answer.
APPLY_SLACK = 5.0


@contextlib.asynccontextmanager
async def charging_cluster(tmp_path: Path) -> AsyncIterator[tuple[Cluster, str, str]]:
    """The cluster with every car charging: (cluster, the controller leading the group, the other one)."""
    async with running_cluster(tmp_path) as c:
        for cp in c.sim.fleet:
            cp.plug_in(ev_model(name=f"car@{cp.id}"))
        await c.balanced(BASE, 60, "the cars charge")
        leader = c.leader()
        assert leader is not None
        yield c, leader, next(n for n in c.controllers if n != leader)


def stored_caps(url: str) -> dict[str, float]:
    with psycopg.connect(url, connect_timeout=5) as db:
        return {r[0]: r[1] for r in db.execute("SELECT station_id, limit_a FROM operator_caps")}


async def test_a_cap_set_on_any_node_is_applied_by_the_leader_and_outlives_controllers(tmp_path: Path) -> None:
    async with charging_cluster(tmp_path) as (c, leader, standby):
        cp1, cp2 = c.sim.fleet["CP1"], c.sim.fleet["CP2"]
        assert cp1.limit().amps > 7 and cp2.limit().amps > 7, "the caps below must lower the limits"

        # A cap on a gateway and one on the standby controller: stored, and applied by the leader.
        code, answer = await asyncio.to_thread(command, c.http["gw1"], "CP1", "set-charging-profile", {"limit": 6})
        assert code == 200 and "does not balance" in answer["reply"]["allowed"]["reason"], answer
        code, answer = await asyncio.to_thread(command, c.http[standby], "CP2", "set-charging-profile", {"limit": 7})
        assert code == 200, answer
        took = await wait_until(lambda: cp1.limit().amps <= 6.0 and cp2.limit().amps <= 7.0,
                                REFRESH_EVERY + APPLY_SLACK, f"the caps applied by the leader {leader}")
        print(f"caps set on gw1 and {standby} applied by {leader} within {took:.1f} s")

        # The leader dies: the standby leads, and its limits keep the caps.
        killed = time.monotonic()
        c.controllers[leader].kill()
        await wait_until(lambda: c.leader() == standby, c.stale_after + TAKEOVER_SLACK, f"{standby} leads")
        await wait_until(lambda: c.profiled_since(killed) == set(c.installed), c.stale_after + TAKEOVER_SLACK,
                         f"every charger got a profile from {standby}")
        await asyncio.sleep(2)
        assert cp1.limit().amps <= 6.0 and cp2.limit().amps <= 7.0, (cp1.limit(), cp2.limit())

        # The dead controller starts again (leading nothing at first): the stored caps stay.
        await c.controllers[leader].start()
        await asyncio.sleep(REFRESH_EVERY)
        assert stored_caps(c.pg.url) == {"CP1": 6.0, "CP2": 7.0}
        assert cp1.limit().amps <= 6.0 and cp2.limit().amps <= 7.0
        assert c.fuse_held() == "never above the fuse", c.fuse_held()

        # A station command through gw1 for every station: those gw2 holds are relayed by a controller, and
        # each is logged once, by the gateway that sent it to the station.
        held = {gw: (await asyncio.to_thread(status, c.http[gw]))["stations"] for gw in ("gw1", "gw2")}
        assert held["gw2"] >= 1 and sum(held.values()) == len(c.installed), held
        for cid in sorted(c.installed):
            code, answer = await asyncio.to_thread(command, c.http["gw1"], cid, "trigger-message",
                                                   {"message": "Heartbeat"})
            assert (code, answer["status"]) == (200, "Accepted"), (cid, code, answer)
            assert any(a == "TriggerMessage" for a, _ in c.sim.fleet[cid].received[-5:]), cid
            # The node that ran it logs the command through its storage writer, a moment after answering.
            def triggers(cid: str = cid) -> list[dict]:
                return [e for e in c.operator_events(cid) if e["command"] == "trigger-message"]
            await wait_until(lambda: bool(triggers()), 10, f"{cid}: the command in the event log")
            assert len(triggers()) == 1, c.operator_events(cid)
        print(f"station commands through gw1: all {len(c.installed)} answered ({held['gw2']} relayed to gw2)")


def api(http_port: int, method: str, path: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", method=method, data=b"" if method == "POST"
                                 else None, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_the_commissioning_check_runs_on_the_leading_controller(tmp_path: Path) -> None:
    async with charging_cluster(tmp_path) as (c, leader, standby):
        start = "/api/groups/garage/commission"
        code, answer = await asyncio.to_thread(api, c.http["gw1"], "POST", start)
        assert code == 501 and "controller that leads the group" in answer["error"], answer
        code, answer = await asyncio.to_thread(api, c.http[standby], "POST", start)
        assert code == 409 and "does not lead group 'garage'" in answer["error"], answer

        code, answer = await asyncio.to_thread(api, c.http[leader], "POST", start)
        assert code == 202, answer
        began = time.monotonic()
        while (row := (await asyncio.to_thread(api, c.http[leader], "GET", answer["report"]))[1])["state"] == "running":
            assert time.monotonic() - began < 180, row
            await asyncio.sleep(1)
        report = row["report"]
        assert row["state"] == "done" and report["ok"] and report["findings"] == [], json.dumps(report, indent=1)
        assert all(ch["tested"] for ch in report["chargers"]), report["chargers"]
        print(f"commissioning on {leader}: {len(report['chargers'])} chargers in {time.monotonic() - began:.0f} s")
        await c.balanced(BASE, 60, "every hold lifted: the cars share the fuse again")
        assert c.fuse_held() == "never above the fuse", c.fuse_held()
