"""``[cluster]``: strict like every section, errors naming the field, a unique default node name."""

from __future__ import annotations

import os

import pytest

from csms.config import ClusterConfig, ConfigError, diff_configs, parse_config


def test_defaults_name_the_host_and_process() -> None:
    cfg = parse_config({})
    assert cfg.cluster.prefix == "csms" and cfg.cluster.node.endswith(f"-{os.getpid()}")


def test_a_fixed_node_and_a_nested_prefix() -> None:
    cfg = parse_config({"cluster": {"node": "gw-1.rack_2", "prefix": "site7/csms"}})
    assert cfg.cluster == ClusterConfig(node="gw-1.rack_2", prefix="site7/csms")


@pytest.mark.parametrize(("section", "field", "words"), [
    ({"node": "gw/1"}, "cluster.node", "one MQTT topic level"),
    ({"node": "gw+"}, "cluster.node", "one MQTT topic level"),
    ({"node": ""}, "cluster.node", "1-64"),
    ({"prefix": "csms/"}, "cluster.prefix", "trailing"),
    ({"prefix": "csms/#"}, "cluster.prefix", "no \"+\" or \"#\""),
    ({"prefix": "/csms"}, "cluster.prefix", "leading"),
    ({"nodes": "gw-1"}, "cluster.nodes", "unknown key"),
])
def test_a_bad_value_is_refused_naming_its_field(section, field, words) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"cluster": section}, "site.toml")
    assert any(p.path == field and words in p.message for p in err.value.problems), err.value.problems


def test_changing_it_needs_a_restart() -> None:
    old = parse_config({"cluster": {"node": "a"}})
    new = parse_config({"cluster": {"node": "b"}})
    assert [p.path for p in diff_configs(old, new).needs_restart] == ["cluster"]
