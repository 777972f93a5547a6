"""``simulate site`` as a real process against the stub central system, and the scenario runner in-process."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from csms.config import parse_config
from meter_gateway.registers import load_register_map
from simulators.cli import main
from simulators.clock import ManualClock, SimClock
from simulators.scenarios import SCENARIOS, Scenario, ScenarioPlayer, get_scenario
from simulators.simulation import Simulation, central_system_url
from simulators.ports import free_port

from .csms_stub import StubCsms

PASSWORDS = {"CP0001": "0123456789abcdef", "CP0002": "fedcba9876543210"}


def site_toml(csms_port: int, meter_port: int) -> str:
    return f"""
[server]
port = {csms_port}
[[organisations]]
id = "org"
name = "Org"
[[meters]]
serial = "AG1234567G"
pin = "12345678"
organisation = "org"
port = {meter_port}
[[chargers]]
id = "CP0001"
password = "{PASSWORDS['CP0001']}"
organisation = "org"
[[chargers]]
id = "CP0002"
password = "{PASSWORDS['CP0002']}"
organisation = "org"
phases = 1
phase_rotation = "TRS"
offline_phase = 3
[[load_balancers]]
id = "g"
name = "G"
organisation = "org"
meter = "AG1234567G"
chargers = ["CP0001", "CP0002"]
supply_max_current = 63
max_current_online = 50
max_current_offline = 16
"""


async def read_meter(port: int) -> dict[str, float]:
    rmap = load_register_map("ampguard")
    words = {}
    async with AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0) as client:
        for block in rmap.read_blocks():
            rr = await client.read_input_registers(block.address, count=block.count, device_id=1)
            words.update({(block.function, block.address + i): w for i, w in enumerate(rr.registers)})
    return rmap.decode(words)


@pytest.mark.e2e
async def test_simulate_site_process_connects_serves_meter_and_stops_on_sigterm(tmp_path: Path):
    async with StubCsms(passwords=PASSWORDS) as csms:
        csms_port = int(csms.url.split(":")[2].split("/")[0])
        meter_port = free_port()
        cfg = tmp_path / "site.toml"
        cfg.write_text(site_toml(csms_port, meter_port))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulators.cli", "site", "--config", str(cfg), "--scenario", "steady",
            "--print-every", "0.5", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            await csms.wait_for("CP0001", "BootNotification", timeout=10)
            await csms.wait_for("CP0002", "BootNotification", timeout=5)
            assert {type(csms.stations[c]).__name__ for c in PASSWORDS} == {"Station16", "Station201"}
            await csms.wait_for("CP0001", "StartTransaction", timeout=5)
            await csms.wait_for("CP0002", "TransactionEvent", lambda p: p["event_type"] == "Started", timeout=5)
            async with asyncio.timeout(5):
                while (values := await read_meter(meter_port))["current_l1"] < 15:  # base load 10 A + a car
                    await asyncio.sleep(0.2)
            assert values["voltage_l1"] == pytest.approx(230, abs=0.1)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, err.decode()
        assert b"AG1234567G" in out
        await csms.wait_for("CP0001", "StatusNotification", timeout=1)


def test_bad_config_names_the_field(tmp_path: Path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[server]\nport = 70000\n")
    assert main(["site", "--config", str(cfg)]) == 2
    assert "server.port" in capsys.readouterr().err


def test_misbehave_option_names_the_problem(tmp_path: Path, capsys):
    cfg = tmp_path / "site.toml"
    cfg.write_text(site_toml(9000, 5020))
    assert main(["site", "--config", str(cfg), "--misbehave", "NOPE:ignore-limits"]) == 2  # usage, as argparse's
    assert "CHARGER_ID:KNOB" in capsys.readouterr().err
    assert main(["site", "--config", str(cfg), "--misbehave", "CP0001:fly"]) == 2
    assert "knobs are" in capsys.readouterr().err
    assert main(["site", "--config", str(cfg), "--fault", "nonsense"]) == 2
    assert "faults are" in capsys.readouterr().err


def test_scenario_list_and_unknown_name(capsys):
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("steady", "evening-peak", "meter-dropout", "solar"))
    with pytest.raises(ValueError, match="unknown scenario 'nope'"):
        get_scenario("nope")


def test_central_system_url_and_tls_refusal():
    cfg = parse_config(_cfg_dict(security_profile=1, host="0.0.0.0"))
    assert central_system_url(cfg) == "ws://127.0.0.1:9000/ocpp"
    tls = cfg.model_copy(update={"server": cfg.server.model_copy(update={"security_profile": 2})})
    with pytest.raises(ValueError, match="security_profile 2"):
        central_system_url(tls)


def _cfg_dict(**server) -> dict:
    return {"server": {"port": 9000, **server}}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_plays_on_a_manual_clock(name):
    """Each scenario played for 120 s of clock time without a central system: cars plug in and draw
    (chargers without profiles charge unconstrained, as offline chargers do), and meters go offline
    exactly when the scenario says so."""
    clock = ManualClock(start=1_795_000_000.0, seed=3)
    sim = Simulation.from_config(parse_config(_toml_dict()), clock)
    player = ScenarioPlayer(sim, get_scenario(name))
    offline, measured_l2 = [], []
    for _ in range(240):
        clock.advance(0.5)
        for c in sim.fleet:
            c.step()
        player.tick()
        offline.append(not sim.meters["AG1234567G"].online)
        measured_l2.append(sim.meters["AG1234567G"].sample().current[1])
    site = sim.sites["AG1234567G"]
    assert len(site.history) == 240
    assert max(max(r.phases) for r in site.history) > 25  # cars drew current on top of the base load
    assert all(c.connectors[1].ev is not None for c in sim.fleet)
    assert any(offline) == (name == "meter-dropout")
    if name != "solar":  # PV export reads negative by itself
        assert any(a < 0 for a in measured_l2) == (name == "faulty-clamp")  # the reversed clamp reads negative
    if name == "faulty-clamp":
        assert all(a < 0 for a in measured_l2[40:118]) and all(a > 0 for a in measured_l2[200:])
    if name == "meter-dropout":
        assert offline.index(True) == 39 and offline[100:] == [False] * 140  # offline from 20 s to 50 s


def _toml_dict() -> dict:
    import tomllib
    return tomllib.loads(site_toml(9000, 5020))


async def test_scenarios_are_reproducible_with_the_seed():
    def plan(seed: int) -> list[tuple[float, str]]:
        sim = Simulation.from_config(parse_config(_toml_dict()), SimClock(seed=seed))
        return [(round(t, 3), what) for t, what, _ in get_scenario("evening-peak").setup(sim, 0.0).events]

    assert plan(1) == plan(1) != plan(2)


def test_scenario_type_is_public():
    assert isinstance(SCENARIOS["steady"], Scenario)
