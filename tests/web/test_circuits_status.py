"""The status API's circuits: each node's load against its limit, and the balancer's budget and plan for it."""

from __future__ import annotations

import json
from types import SimpleNamespace

from csms.balancer import BalancerMemory, ChargerInput, ChargerSpec, ControlState, GroupSpec, allocate
from csms.balancer.model import circuits_of
from csms.config import parse_config
from csms.domain.state import SiteState
from csms.web import status

CFG = {
    "server": {"security_profile": 0},
    "organisations": [{"id": "org", "name": "Org"}],
    "chargers": [{"id": f"CP{i}", "organisation": "org"} for i in range(1, 4)],
    "load_balancers": [{"id": "g", "name": "G", "organisation": "org", "chargers": ["CP1", "CP2", "CP3"],
                        "supply_max_current": 40, "max_current_online": 40, "max_current_offline": 40,
                        "margin": 0}],
    "circuits": [{"id": "board", "name": "House B", "max_current": 25, "margin": 0, "chargers": ["CP2"]},
                 {"id": "carport", "parent": "board", "max_current": 16, "margin": 0, "chargers": ["CP3"]}],
}


def test_each_circuit_shows_its_fuse_load_budget_and_plan():
    cfg = parse_config(CFG)
    g = cfg.load_balancers[0]
    spec = GroupSpec.from_config(g, None, circuits=circuits_of(cfg, g))
    chargers = [ChargerInput(ChargerSpec.from_config(cfg.charger(cid), cfg.circuit_of(cid)), True, True,
                             ControlState.CONTROLLED) for cid in g.chargers]
    decision = allocate(spec, None, chargers, 0.0, BalancerMemory())
    view = SimpleNamespace(cfg=cfg, decision=lambda gid: decision, last_readings={}, meter_states={},
                           state=SiteState(), wiring_warnings=lambda gid: [])
    out = json.loads(json.dumps(status.group(view, g)))  # JSON-ready
    assert [c["id"] for c in out["circuits"]] == ["board", "carport"]  # parents first
    board, carport = out["circuits"]
    assert board["name"] == "House B" and board["parent"] is None and board["max_current"] == 25
    assert carport["parent"] == "board" and carport["chargers"] == ["CP3"]
    assert board["chargers"] == ["CP2", "CP3"]
    assert carport["budget"] == {"1": 16.0, "2": 16.0, "3": 16.0}
    # CP2 and CP3 share the board's 25 A (the carport's 16 A does not bind); CP1 gets the rest of the 40 A.
    assert carport["planned"] == {"1": 12.5, "2": 12.5, "3": 12.5}
    assert board["planned"] == {"1": 25.0, "2": 25.0, "3": 25.0}
    assert carport["current"] == {"1": 0.0, "2": 0.0, "3": 0.0} and carport["current_source"] == "chargers"
    assert carport["meter"] is None and carport["meter_status"] == "none"


def test_a_group_without_circuits_lists_none():
    cfg = parse_config({**CFG, "circuits": []})
    view = SimpleNamespace(cfg=cfg, decision=lambda gid: None, last_readings={}, meter_states={}, state=SiteState(),
                           wiring_warnings=lambda gid: [])
    assert status.group(view, cfg.load_balancers[0])["circuits"] == []
