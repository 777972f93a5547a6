"""A site's lookups by station id (``charger``, ``group_of``, ``circuit_of``) are indexed, and answer exactly what a
scan of the lists answers: on the config as loaded, on copies with other lists (a controller's led part, a
reload), and without the index leaking into the model's equality."""

from __future__ import annotations

import copy
import gc
import time

from csms.config import parse_config
from csms.config import site as site_module
from csms.runtime.roles import led_view

from .test_circuits_config import site


def scanned(cfg, sid):  # type: ignore[no-untyped-def]
    charger = next((c for c in cfg.chargers if c.id == sid), None)
    group = next((g for g in cfg.load_balancers if sid in g.chargers), None)
    listed = next((c.id for c in cfg.circuits if sid in c.chargers), None)
    return charger, group, listed if listed is not None else (group.circuit if group is not None else None)


def test_lookups_agree_with_a_scan_on_the_config_and_on_its_copies():
    cfg = parse_config(site([{"id": "board", "max_current": 40},
                             {"id": "row", "parent": "board", "max_current": 20, "chargers": ["CP1"]}],
                            circuit="board"))
    views = [cfg, led_view(cfg, ()), led_view(cfg, ("g",)),
             cfg.model_copy(update={"chargers": cfg.chargers[:1]}),
             cfg.model_copy(update={"load_balancers": []}), cfg.model_copy(update={"circuits": cfg.circuits[1:]})]
    for view in views:
        for sid in ("CP1", "CP2", "CP3", "CP9"):
            assert (view.charger(sid), view.group_of(sid), view.circuit_of(sid)) == scanned(view, sid), (view, sid)
    assert cfg.group_of("CP3").id == "g" and led_view(cfg, ()).group_of("CP3") is None


def test_the_index_stays_out_of_equality_and_goes_with_its_config():
    data = site([])
    a, b = parse_config(copy.deepcopy(data)), parse_config(copy.deepcopy(data))
    a.charger("CP1")
    assert a == b and a.model_dump() == b.model_dump()
    gc.collect()
    before = len(site_module._LOOKUPS)
    for _ in range(20):
        parse_config(copy.deepcopy(data)).group_of("CP1")
    gc.collect()
    assert len(site_module._LOOKUPS) <= before + 1


def test_twenty_thousand_chargers_are_looked_up_in_linear_time():
    n = 20_000
    ids = [f"CP{i:05d}" for i in range(n)]
    data = copy.deepcopy(site([]))
    data["chargers"] += [{"id": sid, "password": "0123456789abcdef", "organisation": "org"} for sid in ids]
    data["load_balancers"] += [{"id": f"g{k}", "name": f"G{k}", "organisation": "org", "chargers": ids[k:k + 50],
                                "supply_max_current": 400, "max_current_online": 300, "max_current_offline": 100}
                               for k in range(0, n, 50)]
    cfg = parse_config(data)
    t0 = time.process_time()
    assert all(cfg.charger(sid).id == sid and cfg.group_of(sid).id == f"g{int(sid[2:]) // 50 * 50}"
               and cfg.circuit_of(sid) is None for sid in ids)
    assert time.process_time() - t0 < 2.0  # a scan of the lists per lookup took 30 s here
