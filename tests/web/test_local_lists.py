"""Local authorization lists: sent on the operator's request, then kept in step with every token change
(differential updates with the next version), for 1.6 (CP1) and 2.0.1 (CP2) simulated chargers."""

from __future__ import annotations

import asyncio
import json

import pytest

from csms.domain import local_list
from csms.domain.authorization import Authorization, Verdict

from .site import get, post, running_site, wait_until
from .test_tokens_api import ONE, _send

VERSIONS = pytest.mark.parametrize("cid", ["CP1", "CP2"])
CMD = "/api/stations/{}/commands/{}"


def test_a_differential_update_is_exactly_what_changed():
    a, b = Authorization(Verdict.ACCEPTED), Authorization(Verdict.BLOCKED, parent="H")
    held = {"K1": a, "K2": a, "K3": a}
    want = {"K1": a, "K2": b, "K4": a}
    assert local_list.changes(held, want) == {"K2": b, "K4": a, "K3": None}
    assert local_list.changes(want, want) == {}
    assert local_list.from_rows(local_list.to_rows(want)) == want


@VERSIONS
async def test_sent_once_then_kept_in_step(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        charger = rig.charger(cid)
        assert (await _send(rig, "PUT", ONE.format("CARD-A"), {}))[0] == 200
        assert (await _send(rig, "PUT", ONE.format("CARD-B"), {"parent": "HOUSE"}))[0] == 200

        code, body = await post(rig, CMD.format(cid, "send-local-list"), {})
        assert code == 200 and body["status"] == "Accepted", body
        assert body["reply"]["update"] == "full" and body["reply"]["version"] == 1
        assert charger.local_list == {"CARD-A": "Accepted", "CARD-B": "Accepted"}
        code, body = await post(rig, CMD.format(cid, "get-local-list-version"), {})
        assert code == 200 and 1 in body["reply"].values(), body

        # A change of the organisation's tokens reaches the station by itself, as a differential update.
        assert (await _send(rig, "POST", ONE.format("CARD-A") + "/block"))[0] == 200
        await wait_until(lambda: charger.local_list.get("CARD-A") == "Blocked", what="the block in the local list")
        assert charger.local_list_version == 2
        updates = [p for a, p in charger.received if a == "SendLocalList"]
        assert [p["update_type"] for p in updates] == ["Full", "Differential"]
        assert (await _send(rig, "DELETE", ONE.format("CARD-B")))[0] == 200
        await wait_until(lambda: "CARD-B" not in charger.local_list, what="the removal in the local list")
        assert charger.local_list_version == 3

        # Asked again with nothing changed: nothing is sent.
        code, body = await post(rig, CMD.format(cid, "send-local-list"), {})
        assert code == 200 and body["reply"]["update"] == "none"
        assert len([a for a, _ in charger.received if a == "SendLocalList"]) == 3

        kinds: list = []
        for _ in range(100):  # the event log is written after the answer
            code, _, text = await get(rig, f"/api/events?kind=local_list&station={cid}")
            kinds = [json.loads(e["detail"]) if isinstance(e["detail"], str) else e["detail"] for e in json.loads(text)]
            if len(kinds) >= 3:
                break
            await asyncio.sleep(0.05)
        assert [(k["update"], k["by"].split()[0]) for k in kinds][::-1] == [
            ("full", "api"), ("differential", "token"), ("differential", "token")]


@VERSIONS
async def test_a_change_made_while_the_station_was_away_reaches_it_once_it_is_back(tmp_path, cid):
    async with running_site(tmp_path) as rig:
        charger = rig.charger(cid)
        assert (await _send(rig, "PUT", ONE.format("CARD-A"), {}))[0] == 200
        code, body = await post(rig, CMD.format(cid, "send-local-list"), {})
        assert code == 200 and body["status"] == "Accepted", body
        away = asyncio.create_task(charger.power_cycle(2.0))
        try:
            await wait_until(lambda: cid not in rig.app.server.sessions, what="the station to go away")
            assert (await _send(rig, "POST", ONE.format("CARD-A") + "/block"))[0] == 200
            assert charger.local_list == {"CARD-A": "Accepted"}  # it could not be told
            await wait_until(lambda: charger.local_list.get("CARD-A") == "Blocked", timeout=20,
                             what="the block once the station is back")
            assert charger.local_list_version == 2
        finally:
            await away
