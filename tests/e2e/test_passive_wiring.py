"""The passive commissioning check in ``csms serve`` as a process, at the shipped defaults (10 s meter values,
the meter's default poll interval): a clamp mounted backwards on L2 is warned about from normal charging alone,
cars arriving one after the other, with no check run and nothing held. The warning is one ``wiring_warning``
event with the finding, its evidence and its fix, and the status API shows it on the group.

The cars are 3-phase 10 A, so every one of them shows on L2; a 63 A fuse leaves the balancer room for all three
over the base load, so no car's limit changes while another starts (a change would make the events unclear).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from simulators.meter import MeterFaults
from tests.e2e.harness import READ_TOKEN, SLOWEST_EV, ChargerSpec, SiteSpec, ev_model, running_site, wait_until

pytestmark = pytest.mark.e2e


async def api(rig, path: str):
    port = rig.cfg.http.port
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        async with s.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {READ_TOKEN}"}) as r:
            assert r.status == 200, await r.text()
            return await r.json()


async def test_a_reversed_clamp_is_warned_about_during_normal_charging(tmp_path):
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6", rotation="RST"), ChargerSpec("CP2", "ocpp2.0.1", rotation="STR"),
                     ChargerSpec("CP3", "ocpp1.6", rotation="TRS")], fuse=63.0, http=True)
    async with running_site(tmp_path, spec, base_load=(10.0, 8.0, 9.0)) as rig:
        rig.meter.faults = MeterFaults(reversed_clamps=frozenset({2}))
        warnings: list[dict] = []

        async def warned() -> bool:
            warnings[:] = await api(rig, "/api/events?kind=wiring_warning")
            return bool(warnings)

        for c in rig.sim.fleet:  # cars arrive one by one, as on a normal evening
            c.plug_in(ev_model(name=f"car@{c.id}", max_current=10.0, phases=3))
            await rig.settle(lambda s, cid=c.id: min(s.evs[cid]) > 8, SLOWEST_EV + 20, f"{c.id}'s car charging")
            await asyncio.sleep(25)  # its next meter values (10 s) and the others' show the step
        for c in rig.sim.fleet:  # and leave again, until the evidence is enough
            if await warned():
                break
            c.unplug()
            await asyncio.sleep(25)
        deadline = asyncio.get_running_loop().time() + 30
        while not await warned() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(1)

        assert len(warnings) == 1, json.dumps(warnings, indent=1)
        w = warnings[0]
        assert w["group_id"] == "garage" and w["detail"]["finding"] == "reversed_clamp", w
        assert w["detail"]["subject"] == "AG1234567G L2" and w["detail"]["events"] >= 3, w
        assert w["detail"]["fix"].startswith("turn the clamp on L2"), w
        assert all("meter L2 -" in e for e in w["detail"]["evidence"]), w
        group = await api(rig, "/api/groups/garage")
        assert [(x["kind"], x["subject"]) for x in group["wiring_warnings"]] == [("reversed_clamp", "AG1234567G L2")]
        # Raised once: more normal charging adds evidence, not events.
        for c in rig.sim.fleet:
            if not c.connectors[1].ev:
                c.plug_in(ev_model(name=f"car@{c.id}#2", max_current=10.0, phases=3))
                await asyncio.sleep(25)
                break
        assert len(await api(rig, "/api/events?kind=wiring_warning")) == 1
