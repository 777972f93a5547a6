"""Firmware updates and log uploads against simulated chargers of both versions over real websockets, with the
central system's real upload endpoint: the commands as each version sends them, the statuses the chargers
report (stored with their time, shown in ``/api/chargers``), and the file that arrives in the station's folder.

CP1 speaks OCPP 1.6, CP2 OCPP 2.0.1 (see :mod:`.site`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from csms.runtime.app import CentralSystemApp

from .site import get, post, running_site, site_config, wait_until

VERSIONS = pytest.mark.parametrize("cid", ["CP1", "CP2"])
CMD = "/api/stations/{}/commands/{}"


def _received(rig, cid: str, action: str) -> list[dict]:
    return [p for a, p in rig.charger(cid).received if a == action]


async def _statuses(app, cid: str, kind: str) -> list[tuple[str, int | None]]:
    rows = await app.storage.read(lambda db: list(db.query(
        "SELECT status, request_id FROM maintenance_status WHERE station_id = ? AND kind = ? ORDER BY id", [cid, kind])))
    return [(r["status"], r["request_id"]) for r in rows]


def _status(app, cid: str, kind: str) -> str | None:
    m = app.state.station(cid).maintenance.get(kind)
    return m.status if m is not None else None


@VERSIONS
async def test_update_firmware_installs_and_reboots(tmp_path, cid):
    v16 = cid == "CP1"
    async with running_site(tmp_path) as rig:
        app = rig.app
        first = app.server.sessions[cid]
        code, body = await post(rig, CMD.format(cid, "update-firmware"),
                                {"location": "https://firmware.example.com/images/sim-2.bin"})
        assert code == 200 and body["status"] == "Accepted" and body["ok"], body
        (sent,) = _received(rig, cid, "UpdateFirmware")
        if v16:
            assert sent["location"] == "https://firmware.example.com/images/sim-2.bin" and sent["retrieve_date"]
        else:
            assert sent["firmware"]["location"] == "https://firmware.example.com/images/sim-2.bin"
            assert isinstance(sent["request_id"], int) and sent["request_id"] > 0

        await wait_until(lambda: _status(app, cid, "firmware") == "Installed", timeout=15, what="Installed")
        await wait_until(lambda: app.server.sessions.get(cid) not in (None, first), what="the reboot's new session")
        await wait_until(lambda: app.state.station(cid).boot.firmware_version == "sim-2", what="the new firmware's boot")
        request_id = None if v16 else sent["request_id"]
        expected = ["Downloading", "Downloaded", "Installing"] + (["Installed"] if v16 else ["InstallRebooting", "Installed"])
        assert await _statuses(app, cid, "firmware") == [(s, request_id) for s in expected]

        code, _, text = await get(rig, f"/api/chargers/{cid}")
        shown = json.loads(text)
        assert code == 200 and shown["firmware_status"]["status"] == "Installed"
        assert shown["firmware_status"]["request_id"] == request_id and shown["firmware_version"] == "sim-2"
        assert shown["firmware_status"]["at"] <= app.clock() and shown["log_status"] is None

        # A second command gets a new request id (allocated centrally, unique across restarts).
        assert (await app.commands.execute(cid, "update-firmware", {"location": "http://fw.example/sim-3.bin"},
                                           "test")).ok
        if not v16:
            assert _received(rig, cid, "UpdateFirmware")[-1]["request_id"] > request_id


@pytest.mark.parametrize("cid,mode,last", [("CP1", "download-fail", "DownloadFailed"),
                                           ("CP2", "download-fail", "DownloadFailed"),
                                           ("CP1", "install-fail", "InstallationFailed"),
                                           ("CP2", "install-fail", "InstallationFailed")])
async def test_firmware_failures_are_recorded(tmp_path, cid, mode, last):
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        charger.config.misbehaviour = replace(charger.config.misbehaviour, firmware=mode)
        assert (await app.commands.execute(cid, "update-firmware", {"location": "ftp://fw.example/sim-9.bin"},
                                           "test")).ok
        await wait_until(lambda: _status(app, cid, "firmware") == last, timeout=10, what=last)
        statuses = [s for s, _ in await _statuses(app, cid, "firmware")]
        assert statuses[0] == "Downloading" and statuses[-1] == last and "Installed" not in statuses
        assert app.state.station(cid).boot.firmware_version == "sim-1"
        code, _, text = await get(rig, f"/api/chargers/{cid}")
        assert json.loads(text)["firmware_status"]["status"] == last
        events = json.loads((await get(rig, f"/api/events?kind=firmware_status&station={cid}"))[2])
        assert events[0]["detail"]["status"] == last

    # A restart keeps each station's latest status for the operator view.
    async with CentralSystemApp(site_config(tmp_path, 1)) as again:
        assert again.state.station(cid).maintenance["firmware"].status == last
        assert "log" not in again.state.station(cid).maintenance


@pytest.mark.parametrize("cid,upload", [("CP1", ""), ("CP2", ""), ("CP1", "put"), ("CP2", "put")])
async def test_get_logs_uploads_the_file_to_the_central_system(tmp_path, cid, upload):
    """Multipart POST (most chargers) and PUT to location + name both land in the station's folder."""
    v16 = cid == "CP1"
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        charger.config.misbehaviour = replace(charger.config.misbehaviour, upload=upload)
        code, body = await post(rig, CMD.format(cid, "get-logs"), {})
        assert code == 200 and body["status"] == "Accepted", body
        filename = body["reply"]["fileName" if v16 else "filename"]
        (sent,) = _received(rig, cid, "GetDiagnostics" if v16 else "GetLog")
        location = sent["location"] if v16 else sent["log"]["remote_location"]
        assert location.startswith(f"{rig.base}/upload/{cid}/") and location.endswith("/")
        token = location.rstrip("/").rsplit("/", 1)[1]
        assert len(token) >= 40
        if not v16:
            assert sent["log_type"] == "DiagnosticsLog" and isinstance(sent["request_id"], int)

        await wait_until(lambda: _status(app, cid, "log") == "Uploaded", timeout=10, what="Uploaded")
        assert [s for s, _ in await _statuses(app, cid, "log")] == ["Uploading", "Uploaded"]
        ((name, content),) = charger.uploaded
        assert name == filename
        stored = tmp_path / "uploads" / cid / filename
        assert stored.read_bytes() == content and f"# {cid} ".encode() in content
        assert [p.name for p in stored.parent.iterdir()] == [filename]  # no partial file left behind

        code, _, text = await get(rig, f"/api/stations/{cid}/uploads")
        (listed,) = json.loads(text)["files"]
        assert code == 200 and listed["name"] == filename and listed["size"] == len(content)
        code, headers, text = await get(rig, f"/api/stations/{cid}/uploads/{filename}")
        assert code == 200 and text.encode() == content and "attachment" in headers["Content-Disposition"]
        code, _, text = await get(rig, f"/api/chargers/{cid}")
        assert json.loads(text)["log_status"]["status"] == "Uploaded"

        # The event log has the command with the token's first characters, never the token or the URL.
        code, _, text = await get(rig, "/api/events?kind=operator_command")
        assert token not in text and token[:6] in text


@VERSIONS
async def test_get_logs_failures_and_refusals(tmp_path, cid):
    v16 = cid == "CP1"
    async with running_site(tmp_path) as rig:
        app, charger = rig.app, rig.charger(cid)
        # Nothing listens on port 1: the charger reports the failed upload.
        code, body = await post(rig, CMD.format(cid, "get-logs"), {"location": "http://127.0.0.1:1/logs/"})
        assert code == 200 and body["ok"]
        failed = "UploadFailed" if v16 else "UploadFailure"
        await wait_until(lambda: _status(app, cid, "log") == failed, timeout=10, what=failed)
        assert not charger.uploaded

        # What the version cannot express names the field.
        if v16:
            code, body = await post(rig, CMD.format(cid, "get-logs"), {"log_type": "security"})
            assert code == 400 and body["field"] == "log_type"
            code, body = await post(rig, CMD.format(cid, "update-firmware"),
                                    {"location": "http://fw.example/a.bin", "signature": "c2ln"})
            assert code == 400 and body["field"] == "signature"
        else:
            assert (await app.commands.execute(cid, "get-logs", {"log_type": "security", "since": 1795000000},
                                               "test")).ok
            sent = _received(rig, cid, "GetLog")[-1]
            assert sent["log_type"] == "SecurityLog" and sent["log"]["oldest_timestamp"].startswith("2026-11-18T")
        code, body = await post(rig, CMD.format(cid, "update-firmware"), {"location": "file:///etc/passwd"})
        assert code == 400 and body["field"] == "location"
        code, body = await post(rig, CMD.format(cid, "get-logs"), {"since": 10, "until": 5})
        assert code == 400 and body["field"] == "until"

        # A CALLERROR (a firmware without GetDiagnostics / GetLog): 502, and the upload URL made for it is revoked.
        charger.config.misbehaviour = replace(charger.config.misbehaviour,
                                              not_implemented_calls=frozenset({"GetDiagnostics", "GetLog"}))
        live = len(app.uploads._grants)
        code, body = await post(rig, CMD.format(cid, "get-logs"), {})
        assert code == 502 and body["code"] == "NotImplemented"
        assert len(app.uploads._grants) == live
        # The event is written after the answer: wait for it.
        events: list = []

        async def logged() -> bool:
            events[:] = json.loads((await get(rig, "/api/events?kind=operator_command&limit=1"))[2])
            return events[0]["detail"]["outcome"] == "CallError"
        for _ in range(50):
            if await logged():
                break
            await asyncio.sleep(0.05)
        assert events[0]["detail"]["outcome"] == "CallError" and events[0]["detail"]["upload_token"].endswith("…")

        # A station that is not connected: 409, as for every command, and no upload URL is issued.
        charger.disconnect()
        await wait_until(lambda: cid not in app.server.sessions, what="the station gone")
        for command, args in (("get-logs", {}), ("update-firmware", {"location": "http://fw.example/a.bin"})):
            code, body = await post(rig, CMD.format(cid, command), args)
            assert code == 409 and body["outcome"] == "NotConnected", body
