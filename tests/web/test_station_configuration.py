"""What stations say of their configuration is stored and shown: 1.6 GetConfiguration and ChangeConfiguration,
2.0.1 GetVariables, SetVariables and the NotifyReport parts a GetBaseReport brings (``GET
/api/chargers/{id}/configuration``). CP1 speaks OCPP 1.6, CP2 OCPP 2.0.1 (see :mod:`.site`)."""

from __future__ import annotations

import asyncio
import json

from .site import get, post, running_site

CMD = "/api/stations/{}/commands/{}"


async def _settings(rig, cid: str) -> dict[str, dict]:
    code, _, body = await get(rig, f"/api/chargers/{cid}/configuration")
    assert code == 200, body
    return {row["key"]: row for row in json.loads(body)["settings"]}


async def test_a_16_stations_keys_from_get_configuration_and_its_changes(tmp_path):
    async with running_site(tmp_path) as rig:
        assert await _settings(rig, "CP1") == {}
        code, body = await post(rig, CMD.format("CP1", "get-configuration"), {})
        assert code == 200 and body["status"] == "Accepted", body
        shown = await _settings(rig, "CP1")
        reported = {k["key"]: k for k in body["reply"]["configurationKey"]}
        assert set(shown) == set(reported) and "HeartbeatInterval" in shown
        assert shown["HeartbeatInterval"]["value"] == reported["HeartbeatInterval"]["value"]
        assert shown["HeartbeatInterval"]["source"] == "GetConfiguration"

        code, body = await post(rig, CMD.format("CP1", "change-configuration"),
                                {"key": "HeartbeatInterval", "value": "123"})
        assert code == 200 and body["status"] == "Accepted", body
        changed = await _settings(rig, "CP1")
        assert changed["HeartbeatInterval"]["value"] == "123"
        assert changed["HeartbeatInterval"]["source"] == "ChangeConfiguration"
        assert changed["HeartbeatInterval"]["readonly"] is False

        # 1.6 has no device-model report: the answer says what to use instead, nothing is sent.
        code, body = await post(rig, CMD.format("CP1", "get-base-report"), {})
        assert code == 400 and "get-configuration" in body["error"], body
        assert not [a for a, _ in rig.charger("CP1").received if a == "GetBaseReport"]


async def test_a_201_stations_device_model_from_its_report(tmp_path):
    async with running_site(tmp_path) as rig:
        code, body = await post(rig, CMD.format("CP2", "get-base-report"), {"report": "FullInventory"})
        assert code == 200 and body["status"] == "Accepted", body

        async def reported() -> dict:
            return await _settings(rig, "CP2")
        shown: dict = {}
        for _ in range(200):  # the NotifyReport parts follow the answer
            shown = await reported()
            if "EVSE@1.PhaseRotation" in shown and "SecurityCtrlr.BasicAuthPassword" in shown:
                break
            await asyncio.sleep(0.05)
        assert "OCPPCommCtrlr.HeartbeatInterval" in shown, shown
        assert shown["OCPPCommCtrlr.HeartbeatInterval"]["readonly"] is False
        assert shown["ChargingStation.PhaseRotation"]["readonly"] is True
        assert shown["SmartChargingCtrlr.Entries:ChargingProfiles"]["source"] == "NotifyReport"
        # A write-only variable (the password) is listed without a value.
        assert shown["SecurityCtrlr.BasicAuthPassword"]["value"] is None
        reports = [a for a, _ in rig.charger("CP2").received if a == "GetBaseReport"]
        assert reports == ["GetBaseReport"]

        code, body = await post(rig, CMD.format("CP2", "change-configuration"),
                                {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "77"})
        assert code == 200 and body["status"] == "Accepted", body
        assert (await reported())["OCPPCommCtrlr.HeartbeatInterval"]["value"] == "77"
        code, body = await post(rig, CMD.format("CP2", "get-configuration"), {"keys": ["TxCtrlr.EVConnectionTimeOut"]})
        assert code == 200, body
        assert (await reported())["TxCtrlr.EVConnectionTimeOut"]["source"] == "GetVariables"


async def test_an_unknown_chargers_configuration_is_404(tmp_path):
    async with running_site(tmp_path) as rig:
        code, _, body = await get(rig, "/api/chargers/NOPE/configuration")
        assert code == 404 and "GET /api/chargers" in body
