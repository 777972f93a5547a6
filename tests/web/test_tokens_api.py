"""Id tokens changed at run time through the write API (``/api/tokens``) and ``csms token``: who may, what
each refusal names, that a change is in force for the next Authorize and logged with who asked."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from simulators.ports import free_port

from .site import OPERATOR_TOKEN, TOKEN, get, running_site
from .test_station_cli import ROOT, _config

ONE = "/api/tokens/org/{}"


async def _send(rig, method: str, path: str, body: object = None, token: str | None = OPERATOR_TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        async with s.request(method, rig.base + path, json=body, headers=headers) as r:
            return r.status, await r.json()


def _verdict(rig, token: str) -> str:
    return rig.app.ctx.authorizer.authorize("CP1", token, rig.app.clock()).verdict.value


async def test_the_operator_changes_tokens_and_each_change_is_in_force_at_once(tmp_path):
    async with running_site(tmp_path) as rig:
        code, body = await _send(rig, "PUT", ONE.format("CARD-1"), {"parent": "HOUSE-12"}, token=TOKEN)
        assert code == 403 and "operator_token" in body["error"]  # the read token reads only
        code, body = await _send(rig, "PUT", ONE.format("CARD-1"), {"parent": "HOUSE-12"}, token=None)
        assert code == 401

        code, body = await _send(rig, "PUT", ONE.format("CARD-1"), {"parent": "HOUSE-12"})
        assert code == 200, body
        assert body == {"organisation": "org", "token": "CARD-1", "status": "Accepted", "expiry": None,
                        "parent": "HOUSE-12", "concurrent": False, "source": "runtime"}
        code, _, text = await get(rig, "/api/tokens?organisation=org")  # the read token lists
        assert code == 200 and "CARD-1" in {t["token"] for t in json.loads(text)["tokens"]}

        code, body = await _send(rig, "POST", ONE.format("CARD-1") + "/block")
        assert code == 200 and body["status"] == "Blocked" and body["parent"] == "HOUSE-12"
        assert _verdict(rig, "CARD-1") == "Blocked"
        code, body = await _send(rig, "POST", ONE.format("CARD-1") + "/unblock")
        assert code == 200 and body["status"] == "Accepted"
        assert _verdict(rig, "CARD-1") == "Accepted"

        # Refusals name the field to fix.
        for change, field in (({"status": "Expired"}, "status"), ({"colour": "red"}, "colour"),
                              ({"parent": "P" * 21}, "parent"), ({"expiry": "next week"}, "expiry")):
            code, body = await _send(rig, "PUT", ONE.format("CARD-2"), change)
            assert code == 400 and body["field"] == field, (change, body)
        code, body = await _send(rig, "PUT", "/api/tokens/nobody/CARD-2", {})
        assert code == 400 and body["field"] == "organisation" and "[[organisations]]" in body["error"]
        code, body = await _send(rig, "POST", ONE.format("NEVER-SEEN") + "/unblock")
        assert code == 404

        code, body = await _send(rig, "DELETE", ONE.format("CARD-1"))
        assert code == 200 and body["deleted"] is True
        code, _, _ = await get(rig, ONE.format("CARD-1"))
        assert code == 404

        code, _, text = await get(rig, "/api/events?kind=id_token_blocked")
        events = json.loads(text)
        assert len(events) == 1, events
        detail = events[0]["detail"]
        assert (json.loads(detail) if isinstance(detail, str) else detail)["by"] == "api 127.0.0.1"


async def _csms_token(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CSMS_OPERATOR_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "csms.runtime.cli", "token", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env, cwd=str(ROOT))
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def test_csms_token_as_a_process(tmp_path: Path):
    async with running_site(tmp_path) as rig:
        cfg = str(_config(tmp_path, rig.app.http_port))
        code, out, err = await _csms_token("put", "org", "CARD-9", "--parent", "HOUSE-1", "--config", cfg)
        assert (code, out.strip()) == (0, "org CARD-9 Accepted parent HOUSE-1 (runtime)"), err
        code, out, err = await _csms_token("block", "org", "CARD-9", "--config", cfg)
        assert (code, out.strip()) == (0, "org CARD-9 Blocked parent HOUSE-1 (runtime)"), err
        assert _verdict(rig, "CARD-9") == "Blocked"
        code, out, err = await _csms_token("list", "--organisation", "org", "--config", cfg)
        assert code == 0 and "org CARD-9 Blocked" in out, err
        code, out, err = await _csms_token("put", "org", "CARD-9", "--status", "Expired", "--config", cfg)
        assert code == 2 and "(option --status)" in err, (out, err)
        code, out, err = await _csms_token("delete", "org", "CARD-9", "--config", cfg)
        assert (code, out.strip()) == (0, "org CARD-9: deleted"), err
        code, out, err = await _csms_token("show", "org", "CARD-9", "--config", cfg)
        assert code == 2 and "CARD-9" in err
        events = [e for e in json.loads((await get(rig, "/api/events?kind=id_token_deleted"))[2])]
        assert events
    unreachable = str(_config(tmp_path, free_port(), name="down.toml"))
    code, _, err = await _csms_token("list", "--config", unreachable)
    assert code == 1 and "is csms serve running?" in err


async def test_csms_token_reads_with_the_read_only_token_where_no_operator_token_is_set(tmp_path: Path):
    """Reading tokens is allowed with either token (README), so list and show make do with ``token``."""
    async with running_site(tmp_path, operator=False) as rig:
        cfg = str(_config(tmp_path, rig.app.http_port, operator=False))
        code, out, err = await _csms_token("list", "--config", cfg)
        assert code == 0 and "Traceback" not in err, err
        code, _, err = await _csms_token("put", "org", "CARD-9", "--config", cfg)
        assert code == 2 and "no operator token" in err, err
