"""What a controller puts in force of the site (the groups it leads), and what a role needs of the config."""

from __future__ import annotations

import subprocess
import sys

import tomli_w

from csms.config import parse_config
from csms.runtime.roles import UNGROUPED, led_view, role_problems


def site(**extra):  # type: ignore[no-untyped-def]
    chargers = [{"id": f"CP{i}", "password": "0123456789abcdef", "organisation": "org"} for i in range(1, 6)]
    data = {
        "organisations": [{"id": "org", "name": "Org"}],
        "meters": [{"serial": "AG1234567G", "pin": "12345678", "organisation": "org"}],
        "chargers": chargers,
        "circuits": [{"id": "carport", "max_current": 20, "chargers": ["CP2"]}],
        "load_balancers": [
            {"id": "a", "name": "A", "organisation": "org", "meter": "AG1234567G", "chargers": ["CP1", "CP2"],
             "supply_max_current": 40, "max_current_online": 40, "max_current_offline": 20},
            {"id": "b", "name": "B", "organisation": "org", "chargers": ["CP3", "CP4"],
             "supply_max_current": 40, "max_current_online": 40, "max_current_offline": 20}],
        **extra,
    }
    return data


def test_a_controller_sees_only_the_groups_it_leads_with_their_chargers_and_circuits() -> None:
    cfg = parse_config(site(), "site.toml")
    view = led_view(cfg, {"a"})
    assert [g.id for g in view.load_balancers] == ["a"]
    assert [c.id for c in view.chargers] == ["CP1", "CP2"]
    assert [c.id for c in view.circuits] == ["carport"]
    assert view.meters == cfg.meters and view.smart_charging == cfg.smart_charging
    assert [c.id for c in led_view(cfg, {"b"}).chargers] == ["CP3", "CP4"]
    assert led_view(cfg, {"b"}).circuits == []
    nothing = led_view(cfg, ())
    assert nothing.load_balancers == [] and nothing.chargers == [] and nothing.circuits == []
    assert [c.id for c in led_view(cfg, {UNGROUPED}).chargers] == ["CP5"]  # in no group: a lease of its own
    assert cfg.chargers[4].id == "CP5" and len(cfg.chargers) == 5  # the config itself is untouched


def test_the_roles_need_a_broker_and_postgresql_and_say_which_setting() -> None:
    cfg = parse_config(site(), "site.toml")
    assert role_problems(cfg, "all") == []
    problems = role_problems(cfg, "controller")
    assert any(p.startswith("mqtt:") for p in problems) and any(p.startswith("storage.url:") for p in problems)
    ok = parse_config(site(mqtt={"host": "127.0.0.1"}, storage={"url": "postgresql://csms@db/csms"}), "site.toml")
    assert role_problems(ok, "gateway") == [] and role_problems(ok, "controller") == []


def test_csms_serve_refuses_a_role_its_config_cannot_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "site.toml"
    path.write_text(tomli_w.dumps(site(storage={"database": str(tmp_path / "csms.sqlite")})))
    done = subprocess.run([sys.executable, "-m", "csms.runtime.cli", "serve", "--config", str(path), "--role",
                           "controller", "--node", "c1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert f"{path}: storage.url:" in done.stderr and f"{path}: mqtt:" in done.stderr
