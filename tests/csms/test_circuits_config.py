"""The ``[[circuits]]`` tree in the operator config: what it accepts, what it refuses and how it says so."""

from __future__ import annotations

import copy

import pytest

from csms.config import ConfigError, config_warnings, parse_config

from .test_config import BASE


def site(circuits: list[dict], **group) -> dict:
    data = copy.deepcopy(BASE)
    data["chargers"].append({"id": "CP3", "password": "0123456789abcdef", "organisation": "org"})
    data["load_balancers"][0]["chargers"].append("CP3")
    data["load_balancers"][0].update(group)
    data["circuits"] = circuits
    return data


def problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "site.toml")
    return info.value.lines()


def test_a_tree_is_accepted_and_each_charger_knows_its_path():
    cfg = parse_config(site([{"id": "house-b", "max_current": 35, "chargers": ["CP1"]},
                             {"id": "garage", "parent": "house-b", "max_current": 20, "chargers": ["CP2"]}]))
    assert cfg.circuit_of("CP1") == "house-b"
    assert cfg.circuit_of("CP2") == "garage"
    assert cfg.circuit_of("CP3") is None  # directly under the main fuse
    assert cfg.circuit_path("garage") == ["garage", "house-b"]
    assert cfg.circuit("garage").margin == 0.25  # 1 % of 20 A, at least 0.25 A
    assert config_warnings(cfg) == []


def test_a_group_naming_a_circuit_puts_its_unlisted_chargers_on_it():
    cfg = parse_config(site([{"id": "board", "max_current": 40},
                             {"id": "row", "parent": "board", "max_current": 20, "chargers": ["CP1"]}],
                            circuit="board"))
    assert [cfg.circuit_of(c) for c in ("CP1", "CP2", "CP3")] == ["row", "board", "board"]


def test_the_flat_config_has_no_circuits():
    cfg = parse_config(copy.deepcopy(BASE))
    assert cfg.circuits == [] and cfg.circuit_of("CP1") is None


def test_references_are_checked_with_a_fix():
    lines = problems(site([
        {"id": "a", "parent": "nope", "max_current": 20, "chargers": ["CP9"]},
        {"id": "b", "max_current": 20, "meter": "AG0000000G"},
    ], circuit="zzz"))
    assert "site.toml: circuits.0.parent: unknown circuit 'nope'; add it under [[circuits]] or omit parent " \
           "for a circuit directly under the main fuse" in lines
    assert "site.toml: circuits.0.chargers.0: unknown charger 'CP9'; add it under [[chargers]]" in lines
    assert any(line.startswith("site.toml: circuits.1.meter: unknown meter 'AG0000000G'") for line in lines)
    assert any(line.startswith("site.toml: circuits.1.max_current_offline: a circuit with a meter needs") for line in lines)
    assert any(line.startswith("site.toml: load_balancers.0.circuit: unknown circuit 'zzz'") for line in lines)


def test_cycles_are_refused():
    lines = problems(site([{"id": "a", "parent": "b", "max_current": 20},
                           {"id": "b", "parent": "a", "max_current": 20},
                           {"id": "c", "parent": "c", "max_current": 20}]))
    assert "site.toml: circuits.0.parent: circuits a -> b -> a form a cycle; every parent chain must end at a " \
           "circuit without parent (under the main fuse)" in lines
    assert not any(line.startswith("site.toml: circuits.1.parent") for line in lines)  # the same cycle, once
    assert any(line.startswith("site.toml: circuits.2.parent: a circuit cannot be its own parent") for line in lines)


def test_a_charger_on_two_circuits_or_in_no_group_is_refused():
    data = site([{"id": "a", "max_current": 20, "chargers": ["CP1", "CP4"]},
                 {"id": "b", "max_current": 20, "chargers": ["CP1"]}])
    data["chargers"].append({"id": "CP4", "password": "0123456789abcdef", "organisation": "org"})
    lines = problems(data)
    assert "site.toml: circuits.1.chargers.0: charger 'CP1' is already on circuit 'a'; a charger is wired on one " \
           "circuit" in lines
    assert any(line.startswith("site.toml: circuits.0.chargers.1: charger 'CP4' is in no load-balancing group")
               for line in lines)


def test_one_tree_belongs_to_one_group():
    data = site([{"id": "board", "max_current": 30, "chargers": ["CP1"]},
                 {"id": "row", "parent": "board", "max_current": 20, "chargers": ["CP4"]}])
    data["chargers"].append({"id": "CP4", "password": "0123456789abcdef", "organisation": "org"})
    data["load_balancers"].append({"id": "h", "name": "H", "organisation": "org", "chargers": ["CP4"],
                                   "supply_max_current": 63, "max_current_online": 50, "max_current_offline": 16})
    lines = problems(data)
    assert any(line.startswith("site.toml: circuits.1.chargers.0: charger 'CP4' puts group 'h' under circuit tree "
                               "'board', which already holds group 'g'") for line in lines), lines


def test_a_charger_outside_its_groups_circuit_is_refused():
    lines = problems(site([{"id": "a", "max_current": 20}, {"id": "b", "max_current": 20, "chargers": ["CP1"]}],
                          circuit="a"))
    assert any("charger 'CP1' of group 'g' is on circuit 'b', which is not under the group's circuit 'a'" in line
               for line in lines), lines


def test_a_circuit_sharing_a_group_id_and_offline_above_its_fuse_are_refused():
    lines = problems(site([{"id": "g", "max_current": 20, "meter": "AG1234567G", "max_current_offline": 25}]))
    assert any(line.startswith("site.toml: circuits.0.id: 'g' is also a load-balancing group's id") for line in lines)
    assert "site.toml: circuits.0.max_current_offline: 25.0 A is above max_current 20.0 A" in lines


def test_a_broken_circuit_is_reported_beside_the_cross_checks():
    lines = problems(site([{"id": "a", "max_current": -1}, {"id": "b", "parent": "a", "max_current": 10, "colour": 1}]))
    assert any(line.startswith("site.toml: circuits.0.max_current:") for line in lines)
    assert any(line.startswith("site.toml: circuits.1.colour: unknown key") for line in lines)
    assert not any("unknown circuit 'a'" in line for line in lines)  # a is invalid, not unknown


def test_limits_worth_a_second_look_are_warnings():
    cfg = parse_config(site([{"id": "board", "max_current": 80, "chargers": ["CP1"]},
                             {"id": "row", "parent": "board", "max_current": 100, "chargers": ["CP2"]},
                             {"id": "tiny", "max_current": 6, "chargers": ["CP3"]}]))
    warnings = [f"{w.path}: {w.message}" for w in config_warnings(cfg)]
    assert "circuits.1.max_current: 100.0 A is above its parent 'board' (80.0 A): the parent's fuse binds first" \
        in warnings
    assert any(w.startswith("circuits.0.max_current: 80.0 A is above the main fuse (supply_max_current 63.0 A)")
               for w in warnings)
    assert any(w.startswith("circuits.2.max_current: 6.0 A less the margin 0.25 A is below min_current 6.0 A")
               for w in warnings)


def test_a_sub_board_meter_is_read_even_when_no_group_names_it():
    """The central system reads the meters its groups name and those of metered circuits: a sub-board's meter
    that nobody read would leave its circuit on ``max_current_offline`` for ever."""
    from csms.runtime.app import CentralSystemApp

    data = site([{"id": "carport", "max_current": 20, "chargers": ["CP1"], "meter": "AG7654321G",
                  "max_current_offline": 10}])
    data["meters"].append({"serial": "AG7654321G", "pin": "87654321", "organisation": "org"})
    cfg = parse_config(data)
    assert {m.serial for m in CentralSystemApp._used_meters(cfg)} >= {"AG7654321G"}
