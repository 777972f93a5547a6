"""``meter-gateway`` as a real process: run (publish, stop on SIGTERM), read, and config errors."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from meter_gateway.cli import main
from meter_gateway.config import MqttConfig
from meter_gateway.registers import load_register_map
from meter_gateway.subscriber import ReadingSubscriber

from .modbus_server import MeterServer
from .test_modbus_gateway import LIVE, SERIAL, Sink, wait_until

SITE = """
[server]            # the central system's sections are ignored by meter-gateway
port = 9000

[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
client_id = "gw-under-test"

[gateway]
mode = "mqtt"

[[meters]]
serial = "{serial}"
pin = "12345678"
organisation = "org"
profile = "em24"
port = {modbus_port}
poll_interval = 0.1
timeout = 0.5
stale_after = 1.0
"""


async def gateway_process(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meter_gateway.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.e2e
async def test_run_publishes_readings_and_stops_cleanly_on_sigterm(mosquitto, tmp_path: Path):
    async with MeterServer(load_register_map("em24"), LIVE) as server:
        config = tmp_path / "site.toml"
        config.write_text(SITE.format(mqtt_port=mosquitto.port, modbus_port=server.port, serial=SERIAL))
        got = Sink()
        cfg = MqttConfig(port=mosquitto.port, client_id="csms-under-test")
        async with ReadingSubscriber(cfg, [SERIAL], got.reading, got.state, stale_after=5):
            proc = await gateway_process("run", "--config", str(config))
            try:
                await wait_until(lambda: len(got.readings) >= 3, timeout=15)
                assert got.readings[-1].current == pytest.approx((-12.5, 31.25, 0.75))
                proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), 10)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert proc.returncode == 0, err.decode()
            await wait_until(lambda: got.states[-1].reason == "meter gateway stopped", timeout=5)
        assert b"accepted=" in err  # the per-meter counters are logged on the way out


async def test_read_prints_one_decoded_reading(tmp_path: Path):
    async with MeterServer(load_register_map("sdm630"), LIVE) as server:
        proc = await gateway_process("read", "--host", "127.0.0.1", "--port", str(server.port), "--profile", "sdm630",
                                     "--timeout", "3")
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "current_l1" in text and "-12.500" in text
    assert "L2:    31.25 A    229.4 V" in text
    assert "total power: 4466 W" in text


async def test_read_reports_an_unreachable_meter(tmp_path: Path):
    from simulators.ports import free_port

    proc = await gateway_process("read", "--host", "127.0.0.1", "--port", str(free_port()), "--profile", "ampguard",
                                 "--timeout", "1")
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"cannot connect" in err


def test_config_errors_name_file_and_field(tmp_path: Path, capsys):
    config = tmp_path / "site.toml"
    config.write_text(SITE.format(mqtt_port=70000, modbus_port=502, serial="nope"))
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert f"{config}: mqtt.port: Input should be less than or equal to 65535" in err
    assert any(line.startswith(f"{config}: meters.0.serial: ") for line in err)

    config.write_text("[[meters]]\nserial = 'AG1234567G'\npin = '12345678'\norganisation = 'o'\nprofile = 'sdm999'\n")
    assert main(["read", "--config", str(config), "--serial", "AG1234567G"]) == 2
    assert "register map 'sdm999' not found" in capsys.readouterr().err
    assert main(["run", "--config", str(config)]) == 2
    assert f"{config}: mqtt: meter-gateway run publishes to a broker" in capsys.readouterr().err
    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
