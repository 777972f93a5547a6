"""``csms station ...`` as a process against a running central system (the simulated site of :mod:`.site`):
what it prints and its exit codes (0 accepted, 1 refused or unreachable, 2 bad usage or config)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from simulators.ports import free_port

from .site import OPERATOR_TOKEN, TOKEN, get, running_site, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, port: int, operator: bool = True, name: str = "cli.toml") -> Path:
    """The part of a site config the CLI reads: where the API listens and the operator token."""
    path = tmp / name
    lines = ["[server]", "call_timeout = 3", "", "[http]", 'host = "127.0.0.1"', f"port = {port}",
             f'token = "{TOKEN}"']
    if operator:
        lines.append(f'operator_token = "{OPERATOR_TOKEN}"')
    lines += ["", "[[organisations]]", 'id = "org"', 'name = "BRF Test"', ""]
    path.write_text("\n".join(lines))
    return path


async def _csms(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    environment.pop("CSMS_OPERATOR_TOKEN", None)
    environment.update(env or {})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "csms.runtime.cli", "station", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=environment, cwd=str(ROOT))
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, out.decode(), err.decode()


async def test_csms_station_commands_and_exit_codes(tmp_path):
    async with running_site(tmp_path) as rig:
        cfg = str(_config(tmp_path, rig.app.http_port))

        code, out, err = await _csms("trigger-message", "CP1", "--message", "Heartbeat", "--config", cfg)
        assert (code, out.strip()) == (0, "CP1 trigger-message: Accepted"), err

        code, out, err = await _csms("get-configuration", "CP2", "--key", "OCPPCommCtrlr.HeartbeatInterval",
                                     "--config", cfg, "--json")
        assert code == 0, err
        answer = json.loads(out)
        assert answer["status"] == "Accepted" and answer["reply"]["getVariableResult"][0]["attributeValue"]

        charger = rig.charger("CP1")
        charger.config.misbehaviour = replace(charger.config.misbehaviour, unlock="not-supported")
        code, out, err = await _csms("unlock", "CP1", "--connector", "1", "--config", cfg)
        assert code == 1 and "CP1 unlock: NotSupported" in out

        code, out, err = await _csms("remote-start", "CP1", "--config", cfg)  # refused by argparse
        assert code == 2 and "required: --id-token" in err
        code, out, err = await _csms("remote-start", "CP1", "--id-token", "", "--config", cfg)  # by the server
        assert code == 2 and "id_token" in err and "(option --id-token)" in err, err
        code, out, err = await _csms("reset", "NOPE", "--config", cfg)
        assert code == 2 and "NOPE" in err
        code, out, err = await _csms("reset", "CP1", "--type", "warm", "--config", cfg)
        assert code == 2 and "type" in err
        assert not [a for a, _ in charger.received if a == "Reset"]

        charger.disconnect()
        await wait_until(lambda: "CP1" not in rig.app.server.sessions, what="CP1's session to end")
        code, out, err = await _csms("clear-cache", "CP1", "--config", cfg)
        assert code == 1 and "csms station: CP1: station 'CP1' is not connected" in err, err

        # The environment's token overrides the file's; the read-only token cannot act.
        code, out, err = await _csms("clear-cache", "CP2", "--config", cfg, env={"CSMS_OPERATOR_TOKEN": TOKEN})
        assert code == 2 and "read-only" in err
        bare = str(_config(tmp_path, rig.app.http_port, operator=False, name="bare.toml"))
        code, out, err = await _csms("clear-cache", "CP2", "--config", bare)
        assert code == 2 and "operator_token" in err and "CSMS_OPERATOR_TOKEN" in err
        code, out, err = await _csms("clear-cache", "CP2", "--config", bare,
                                     env={"CSMS_OPERATOR_TOKEN": OPERATOR_TOKEN})
        assert (code, out.strip()) == (0, "CP2 clear-cache: Accepted"), err

        code, _, body = await get(rig, "/api/events?kind=operator_command&limit=50")
        by = {e["detail"]["by"] for e in json.loads(body)}
        assert by == {"cli 127.0.0.1"}


async def test_csms_station_says_when_nothing_listens(tmp_path):
    port = free_port()
    code, out, err = await _csms("clear-cache", "CP1", "--config", str(_config(tmp_path, port)))
    assert code == 1 and f"is csms serve running? could not connect to 127.0.0.1:{port}" in err
    code, out, err = await _csms("clear-cache", "CP1", "--config", str(tmp_path / "missing.toml"))
    assert code == 2 and "missing.toml" in err
    code, out, err = await _csms("frobnicate", "CP1")
    assert code == 2


async def test_csms_station_pointed_at_something_else_than_the_api_says_so(tmp_path):
    """An HTTP server that answers without JSON (the OCPP port, a proxy's error page) is not the API."""
    from aiohttp import web

    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        code, _, err = await _csms("clear-cache", "CP1", "--config", str(_config(tmp_path, port)))
    finally:
        await runner.cleanup()
    assert code == 1 and f"127.0.0.1:{port} answered HTTP 404 Not Found without JSON" in err, err
    assert "[http] port" in err


async def test_csms_station_firmware_and_logs(tmp_path):
    async with running_site(tmp_path) as rig:
        cfg = str(_config(tmp_path, rig.app.http_port))
        code, out, err = await _csms("get-logs", "CP2", "--since", "2026-12-01T00:00:00Z", "--config", cfg)
        assert code == 0 and out.startswith("CP2 get-logs: Accepted") and '"filename"' in out, (out, err)
        await wait_until(lambda: len(rig.charger("CP2").uploaded) == 1, what="the upload")
        code, out, err = await _csms("get-logs", "CP1", "--log-type", "security", "--config", cfg)
        assert code == 2 and "OCPP 1.6 has diagnostics only" in err and "(option --log-type)" in err
        code, out, err = await _csms("update-firmware", "CP1", "--location", "http://fw.example/sim-5.bin",
                                     "--retrieve-date", "tomorrow", "--config", cfg)
        assert code == 2 and "(option --retrieve-date)" in err
        code, out, err = await _csms("update-firmware", "CP1", "--location", "http://fw.example/sim-5.bin",
                                     "--config", cfg)
        assert (code, out.strip()) == (0, "CP1 update-firmware: Accepted"), err


async def test_csms_station_caps_a_charger_and_reads_its_composite(tmp_path):
    async with running_site(tmp_path) as rig:
        cfg = str(_config(tmp_path, rig.app.http_port))
        code, out, err = await _csms("set-charging-profile", "CP2", "--limit", "8", "--duration", "600",
                                     "--config", cfg)
        assert code == 0, err
        assert out.startswith("CP2 set-charging-profile: Accepted")
        answer = json.loads(out.split("\n", 1)[1])
        assert answer["operatorCap"]["limit"] == 8 and answer["operatorCap"]["by"].startswith("cli ")
        assert rig.app.caps.cap("CP2").limit == 8

        code, _, err = await _csms("set-charging-profile", "CP2", "--limit", "8", "--connector", "3", "--config", cfg)
        assert code == 2 and "(option --connector)" in err

        code, out, err = await _csms("clear-charging-profile", "CP2", "--config", cfg)
        assert code == 0 and rig.app.caps.cap("CP2") is None, err

        code, out, err = await _csms("get-composite-schedule", "CP1", "--connector", "1", "--duration", "60",
                                     "--json", "--config", cfg)
        assert code == 0, err
        assert json.loads(out)["reply"]["status"] == "Accepted"
        code, _, err = await _csms("get-charging-profiles", "CP1", "--config", cfg)
        assert code == 2 and "use get-composite-schedule" in err
