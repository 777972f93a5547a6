"""Operator config validation: every problem reported as FILE: path: message, and the CLI's exit codes."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from csms.config import ConfigError, charger_phases, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "examples" / "site.toml"

BASE = {
    "server": {"security_profile": 1},
    "organisations": [{"id": "org", "name": "Org"}],
    "meters": [{"serial": "AG1234567G", "pin": "12345678", "organisation": "org"}],
    "chargers": [
        {"id": "CP1", "password": "0123456789abcdef", "organisation": "org", "max_current": 32, "offline_current": 6},
        {"id": "CP2", "password": "0123456789abcdef", "organisation": "org", "max_current": 16, "offline_current": 6},
    ],
    "load_balancers": [{"id": "g", "name": "G", "organisation": "org", "meter": "AG1234567G", "chargers": ["CP1", "CP2"],
                        "supply_max_current": 63, "max_current_online": 50, "max_current_offline": 16}],
}


def problems(mutate) -> list[str]:
    data = copy.deepcopy(BASE)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "site.toml")
    return info.value.lines()


def test_the_example_and_base_configs_are_valid():
    load_config(EXAMPLE)
    parse_config(copy.deepcopy(BASE))


CASES = [
    ("unknown key", lambda d: d["server"].update(prot=1), "site.toml: server.prot: unknown key"),
    ("wrong type", lambda d: d["chargers"][0].update(max_current="lots"), "site.toml: chargers.0.max_current:"),
    ("duplicate charger", lambda d: d["chargers"].append(dict(d["chargers"][0])), "site.toml: chargers.2.id: duplicate id 'CP1'"),
    ("unknown organisation", lambda d: d["chargers"][1].update(organisation="x"), "site.toml: chargers.1.organisation: unknown organisation 'x'"),
    ("unknown meter", lambda d: d["load_balancers"][0].update(meter="ZZ1G"), "site.toml: load_balancers.0.meter: unknown meter"),
    ("unknown charger", lambda d: d["load_balancers"][0]["chargers"].append("CP9"), "site.toml: load_balancers.0.chargers.2: unknown charger 'CP9'"),
    ("charger in two groups", lambda d: d["load_balancers"].append({**d["load_balancers"][0], "id": "h"}),
     "site.toml: load_balancers.1.chargers.0: charger 'CP1' is already in group 'g'"),
    ("serial without G", lambda d: d["meters"][0].update(serial="AG1234567"), "site.toml: meters.0.serial: measurement device serial"),
    ("short PIN", lambda d: d["meters"][0].update(pin="1234"), "site.toml: meters.0.pin: PIN must be exactly 8 digits"),
    ("min above max", lambda d: d["load_balancers"][0].update(min_current=60), "site.toml: load_balancers.0.min_current:"),
    ("offline above online", lambda d: d["load_balancers"][0].update(max_current_offline=55), "site.toml: load_balancers.0.max_current_offline:"),
    ("phase outside 1..3", lambda d: d["load_balancers"][0].update(phases=[1, 4]), "site.toml: load_balancers.0.phases: phases [4] are outside 1..3"),
    ("one-phase site with phase 3", lambda d: (d["meters"][0].update(phases=[1]), d["load_balancers"][0].update(phases=[1, 3])),
     "site.toml: load_balancers.0.phases: phases [3] are not measured"),
    ("short password", lambda d: d["chargers"][0].update(password="short"), "site.toml: chargers.0.password: OCPP basic-auth passwords are 16-40"),
    ("password with a space", lambda d: d["chargers"][0].update(password="0123456789 abcdef"), "site.toml: chargers.0.password:"),
    ("missing password", lambda d: d["chargers"][0].pop("password"), "site.toml: chargers.0.password: security_profile 1 needs"),
    ("TLS without certificate", lambda d: d["server"].update(security_profile=2), "site.toml: server.tls_cert: security_profile 2 needs"),
    ("offline above charger max", lambda d: d["chargers"][1].update(offline_current=20), "site.toml: chargers.1.offline_current:"),
]


@pytest.mark.parametrize("name,mutate,expected", CASES, ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_its_path(name, mutate, expected):
    lines = problems(mutate)
    assert any(line.startswith(expected) for line in lines), lines


def test_every_problem_is_reported_at_once():
    def many(d):
        d["meters"][0].update(pin="1")
        d["chargers"][0].update(password="x")
        d["load_balancers"][0].update(meter="nope")
        d["chargers"][1].update(phases=2)
    lines = problems(many)
    assert [line.split(":")[1].strip() for line in lines] == [
        "meters.0.pin", "chargers.1.phases", "chargers.0.password", "load_balancers.0.meter"], lines


def test_phase_rotation_maps_charger_phases_to_building_phases():
    cfg = parse_config(copy.deepcopy(BASE))
    c = cfg.chargers[0].model_copy(update={"phase_rotation": "STR"})
    assert charger_phases(c) == (2, 3, 1)
    assert charger_phases(c.model_copy(update={"phases": 1, "phase_rotation": "TRS"})) == (3,)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "csms.runtime.cli", *args], capture_output=True, text=True, timeout=60)


def test_check_config_cli(tmp_path):
    ok = run_cli("check-config", str(EXAMPLE))
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('pin = "12345678"', 'pin = "1234"').replace("port = 9000", "port = 'x'"))
    res = run_cli("check-config", str(bad))
    assert res.returncode == 2
    assert f"{bad}: meters.0.pin: PIN must be exactly 8 digits" in res.stderr
    assert f"{bad}: server.port:" in res.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[server\n")
    res = run_cli("check-config", str(broken))
    assert res.returncode == 2 and "not valid TOML" in res.stderr
    assert run_cli("check-config", str(tmp_path / "missing.toml")).returncode == 2


def test_serve_refuses_an_invalid_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE.read_text().replace('serial = "AG1234567G"', 'serial = "AG1234567"'))
    res = run_cli("serve", "--config", str(bad))
    assert res.returncode == 2 and "meters.0.serial" in res.stderr


def test_max_current_online_above_the_fuse_is_a_warning_not_an_error(tmp_path, capsys):
    """Solar export or a sub-board rated above the main fuse: a legitimate setting, accepted with a warning."""
    import tomli_w

    from csms.runtime.cli import main
    from csms.config import config_warnings

    data = copy.deepcopy(BASE)
    data["load_balancers"][0]["max_current_online"] = 70
    path = tmp_path / "site.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "warning: load_balancers.0.max_current_online: 70" in out and "solar" in out
    cfg = parse_config(data, "site.toml")
    assert [w.path for w in config_warnings(cfg)] == ["load_balancers.0.max_current_online"]


def test_offline_currents_that_add_up_above_the_fuse_are_named(tmp_path, capsys):
    """Found by a user test: two one-phase chargers with a 20 A fallback on L1 behind a 25 A fuse passed, and put
    46 A through it once csms serve stopped. A three-phase charger counts on every phase."""
    import tomli_w

    from csms.runtime.cli import main
    from csms.config import config_warnings

    data = copy.deepcopy(BASE)
    data["load_balancers"][0].update(supply_max_current=25, max_current_online=25)
    data["chargers"][0].update(phases=1, offline_current=20)
    data["chargers"][1].update(offline_current=16)
    path = tmp_path / "site.toml"
    path.write_text(tomli_w.dumps(data))
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("warning: load_balancers.0: the chargers' offline_current add up to 36 A on L1 (CP1 20 A, CP2 16 A), "
            "above supply_max_current 25 A") in out and "(e.g. 12 A each)" in out
    assert "on L2" not in out
    data["chargers"][0]["offline_current"] = 9
    assert config_warnings(parse_config(data, "site.toml")) == []


def test_margin_defaults_to_one_percent_of_the_fuse_at_least_a_quarter_ampere():
    data = copy.deepcopy(BASE)
    data["load_balancers"][0].pop("margin", None)
    data["load_balancers"][0]["supply_max_current"] = 63
    assert parse_config(data, "site.toml").load_balancers[0].margin == pytest.approx(0.63)
    data["load_balancers"][0]["supply_max_current"] = 16
    assert parse_config(data, "site.toml").load_balancers[0].margin == pytest.approx(0.25)
    data["load_balancers"][0]["margin"] = 3
    assert parse_config(data, "site.toml").load_balancers[0].margin == 3


def test_a_bad_fuse_is_reported_alone_not_with_the_margin_derived_from_it():
    """check-config on a group whose supply_max_current is not a number used to add "margin: Field required",
    though the margin may be left out: it is derived from the fuse."""
    def bad_fuse(data):
        data["load_balancers"][0].pop("margin", None)
        data["load_balancers"][0]["supply_max_current"] = "lots"

    lines = problems(bad_fuse)
    assert len(lines) == 1 and "load_balancers.0.supply_max_current" in lines[0], lines


def test_listings_refuse_a_bad_limit_and_name_an_unreachable_database_without_a_traceback(tmp_path):
    res = run_cli("transactions", "--config", str(EXAMPLE), "--limit", "-3")
    assert res.returncode == 2 and "argument --limit: -3 is not a positive whole number" in res.stderr
    res = run_cli("commission", "--config", str(EXAMPLE), "--group", "garage", "--timeout", "-1")
    assert res.returncode == 2 and "argument --timeout: -1 is not a positive number" in res.stderr
    pg = tmp_path / "pg.toml"
    pg.write_text(EXAMPLE.read_text().replace('database = "../../var/csms.sqlite"',
                                              'url = "postgresql://u:secret@127.0.0.1:1/db"'))
    for command in ("stations", "transactions"):
        res = run_cli(command, "--config", str(pg))
        assert res.returncode == 2, res.stderr
        assert f"{pg}: storage.url: cannot use postgresql://u:***@127.0.0.1:1/db: " in res.stderr
        assert "secret" not in res.stderr and "Traceback" not in res.stderr


def test_a_listing_piped_to_another_program_is_not_cut_to_80_columns(tmp_path):
    from csms.storage.database import open_database

    path = tmp_path / "csms.sqlite"
    db = open_database(str(path))
    long_id = "CP-" + "7" * 30
    db.execute("INSERT INTO stations (id, version, vendor, model, firmware_version) VALUES (?, ?, ?, ?, ?)",
               [long_id, "ocpp2.0.1", "A vendor with a long name", "A model with a long name", "1.2.3-beta.4"])
    db.conn.commit()
    db.conn.close()
    config = tmp_path / "site.toml"
    config.write_text(EXAMPLE.read_text().replace('database = "../../var/csms.sqlite"', f'database = "{path}"'))
    res = run_cli("stations", "--config", str(config))
    assert res.returncode == 0, res.stderr
    assert long_id in res.stdout and "ocpp2.0.1" in res.stdout and "A vendor with a long name" in res.stdout


def test_output_cut_short_by_its_reader_exits_as_sigpipe_without_a_traceback(tmp_path):
    """``csms station get-configuration CP1 | head -1``: the reader goes away while the command prints."""
    script = (
        "import sys\n"
        "import csms.runtime.cli as cli\n"
        "def flood(args):\n"
        "    for _ in range(100_000):\n"
        "        print('x' * 100)\n"
        "    return 0\n"
        "cli.cmd_check_config = flood\n"
        "sys.exit(cli.main(['check-config', 'any.toml']))\n"
    )
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.read(10)
    reader.stdout.close()
    err = reader.stderr.read().decode()
    assert reader.wait(timeout=30) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err


def test_reload_of_a_file_that_is_not_there_says_so(tmp_path):
    res = run_cli("reload", "--config", str(tmp_path / "gone.toml"))
    assert res.returncode == 1 and "gone.toml: (file): cannot read" in res.stderr
    assert "the file cannot be read, so csms serve was not asked" in res.stderr, res.stderr


def test_csms_station_marks_the_options_a_command_requires():
    """Usage shows ``--id-token`` of ``reserve`` as required, as the command's arguments say, and argparse refuses
    its absence (exit 2) before the central system is asked."""
    res = run_cli("station", "reserve", "CP1", "--config", "any.toml")
    assert res.returncode == 2 and "the following arguments are required: --id-token" in res.stderr, res.stderr
    res = run_cli("station", "set-charging-profile", "--help")
    assert "--limit LIMIT" in res.stdout and "[--limit LIMIT]" not in res.stdout
