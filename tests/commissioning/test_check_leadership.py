"""The commissioning check and group leadership (:class:`csms.runtime.commissioning.Commissioning` with real
SQLite storage, the operator caps' keeper and a fake balancer): only the process leading the group starts a
check, one that stops leading it mid-check ends the check as failed (every hold lifted), and a new leader marks
a check its predecessor left running as interrupted (another group's running check is left alone)."""

from __future__ import annotations

import asyncio

import pytest

from csms.commissioning.port import CheckRefused
from csms.config import parse_config
from csms.domain.state import SiteState, Transaction
from csms.runtime.commissioning import Commissioning
from csms.runtime.operator_caps import OperatorCaps
from csms.storage import commissioning as stored
from csms.storage.caps import load_caps
from csms.storage.database import Storage

METER = "AG1G"


def config(tmp_path):
    return parse_config({
        "server": {"security_profile": 0},
        "storage": {"database": str(tmp_path / "csms.sqlite")},
        "organisations": [{"id": "org", "name": "Org"}],
        "meters": [{"serial": METER, "pin": "87654321", "organisation": "org", "host": "127.0.0.1"}],
        "chargers": [{"id": "CP1", "organisation": "org"}, {"id": "CP2", "organisation": "org"}],
        "load_balancers": [{"id": "garage", "name": "Garage", "organisation": "org", "meter": METER,
                            "chargers": ["CP1", "CP2"], "supply_max_current": 63, "max_current_online": 63,
                            "max_current_offline": 10}],
    })


class Balancer:
    def __init__(self) -> None:
        self.caps: dict[str, float | None] = {}

    def set_operator_cap(self, charger_id: str, amps: float | None, until: float | None = None) -> bool:
        self.caps[charger_id] = amps
        return True

    async def next_decision(self, charger_id: str, timeout: float):
        return None


def charging(state: SiteState) -> None:
    for i, cid in enumerate(("CP1", "CP2"), 1):
        st = state.station(cid)
        st.connected = True
        st.transactions[1] = Transaction(str(i), 1, "TAG", 0.0, 0.0)


async def test_only_the_leader_starts_a_check_and_a_lost_lead_fails_it_with_every_hold_lifted(tmp_path):
    cfg = config(tmp_path)
    state, balancer, leading = SiteState(), Balancer(), {"garage": False}
    charging(state)
    async with Storage(cfg.storage.database) as storage:
        caps = OperatorCaps(cfg, balancer, storage, lambda: 1000.0)  # type: ignore[arg-type]
        check = Commissioning(lambda: cfg, state, caps, {}, None, storage,  # type: ignore[arg-type]
                              lambda: 1000.0, leads=lambda g: leading[g])
        with pytest.raises(CheckRefused, match="does not lead group 'garage'") as refused:
            await check.start("garage", "test")
        assert refused.value.status == 409

        leading["garage"] = True
        report_id = await check.start("garage", "test")
        async with asyncio.timeout(5):
            while balancer.caps != {"CP1": 0.0, "CP2": 0.0}:  # both held before anything is released
                await asyncio.sleep(0.01)
        leading["garage"] = False  # another controller leads from now on
        async with asyncio.timeout(30):
            while (row := await check.report(report_id))["state"] == "running":
                await asyncio.sleep(0.1)
        assert row["state"] == "failed" and not row["report"]["ok"], row
        assert "stopped leading group 'garage' during the check" in row["report"]["error"], row["report"]
        assert balancer.caps == {"CP1": None, "CP2": None} and await storage.read(load_caps) == []


async def test_a_new_leader_marks_only_its_groups_checks_interrupted(tmp_path):
    cfg = config(tmp_path)
    async with Storage(cfg.storage.database) as storage:
        garage = await storage.write(stored.start_report("garage", 1.0, "api"))
        yard = await storage.write(stored.start_report("yard", 1.0, "api"))
        check = Commissioning(lambda: cfg, SiteState(), None, {}, None, storage,  # type: ignore[arg-type]
                              lambda: 1000.0)
        await check.restore(["garage"])
        assert (await check.report(garage))["state"] == "interrupted"
        assert (await check.report(yard))["state"] == "running"
        await check.restore([])
        assert (await check.report(yard))["state"] == "running"
        await check.restore()  # one process: every check it left
        assert (await check.report(yard))["state"] == "interrupted"
