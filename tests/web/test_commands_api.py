"""The write API (``POST /api/stations/{id}/commands/{command}``): who may act, and what each failure answers.

Against the simulated site of :mod:`.site` (a 1.6 charger CP1 and a 2.0.1 charger CP2 over real websockets).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from csms.config import ConfigError, parse_config

from .site import OPERATOR_TOKEN, TOKEN, get, post, running_site, wait_until

CMD = "/api/stations/{}/commands/{}"


async def _events(rig, count: int) -> list[dict]:
    """The operator_command events, once there are ``count`` (the log is written after the answer)."""
    for _ in range(100):
        code, _, body = await get(rig, "/api/events?kind=operator_command&limit=100")
        assert code == 200
        events = json.loads(body)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} operator_command events, found {len(events)}")


async def test_only_the_operator_token_may_act(tmp_path):
    async with running_site(tmp_path) as rig:
        path = CMD.format("CP1", "trigger-message")
        code, body = await post(rig, path, {"message": "Heartbeat"}, token=None)
        assert code == 401 and "token" in body["error"]
        code, body = await post(rig, path, {"message": "Heartbeat"}, token="wrong-token-wrong-token-wrong")
        assert code == 401
        code, body = await post(rig, path, {"message": "Heartbeat"}, token=TOKEN)
        assert code == 403 and "read-only" in body["error"] and "operator_token" in body["error"]
        sent = [a for a, _ in rig.charger("CP1").received if a == "TriggerMessage"]
        code, body = await post(rig, path, {"message": "Heartbeat"})
        assert code == 200, body
        assert body == {"station": "CP1", "command": "trigger-message", "status": "Accepted", "ok": True,
                        "reply": {"status": "Accepted"}}
        assert [a for a, _ in rig.charger("CP1").received if a == "TriggerMessage"] == sent + ["TriggerMessage"]
        # The operator token reads too; the read token still reads.
        assert (await get(rig, "/api/chargers", token=OPERATOR_TOKEN))[0] == 200
        assert (await get(rig, "/api/chargers", token=TOKEN))[0] == 200


async def test_without_an_operator_token_every_write_route_is_off(tmp_path):
    async with running_site(tmp_path, operator=False) as rig:
        code, body = await post(rig, CMD.format("CP1", "reset"), {}, token=TOKEN)
        assert code == 403 and "[http] operator_token" in body["error"]
        for token in (None, OPERATOR_TOKEN):  # no token, or one this site does not have: told nothing more
            code, body = await post(rig, CMD.format("CP1", "reset"), {}, token=token)
            assert code == 401 and "operator_token" not in body["error"], token
        assert not [a for a, _ in rig.charger("CP1").received if a == "Reset"]


def test_operator_token_rules():
    base = {"organisations": [{"id": "o", "name": "O"}]}
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "http": {"token": "a" * 20, "operator_token": "short"}}, "site.toml")
    assert "http.operator_token: operator_token must be at least 16 characters" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "http": {"token": "a" * 20, "operator_token": "a" * 20}}, "site.toml")
    assert "operator_token must differ from token" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({**base, "http": {"token": "a" * 20, "operator_token": "b" * 10 + " " + "b" * 10}}, "site.toml")
    assert "operator_token must be printable characters without spaces" in str(err.value)
    cfg = parse_config({**base, "http": {"token": "a" * 20, "operator_token": "b" * 20}})
    assert cfg.http.operator_token == "b" * 20


async def test_bad_requests_name_the_field_and_unknowns_are_404(tmp_path):
    async with running_site(tmp_path) as rig:
        cases = [
            ("CP1", "remote-start", {}, "id_token"),
            ("CP1", "remote-start", {"id_token": "T", "conector": 1}, "conector"),
            ("CP1", "remote-start", {"id_token": "X" * 21}, "id_token"),          # 1.6 idTag: 20 at most
            ("CP1", "remote-stop", {"transaction_id": "abc"}, "transaction_id"),  # 1.6 ids are numbers
            ("CP1", "reset", {"type": "warm"}, "type"),
            ("CP1", "unlock", {"connector": 0}, "connector"),
            ("CP1", "change-availability", {"availability": "Off"}, "availability"),
            ("CP1", "trigger-message", {"message": "TransactionEvent"}, "message"),  # a 2.0.1 message
            ("CP2", "trigger-message", {"message": "DiagnosticsStatusNotification"}, "message"),  # a 1.6 one
            ("CP1", "data-transfer", {"vendor_id": "V", "data": {"a": 1}}, "data"),  # 1.6 data is text
            ("CP2", "get-configuration", {"keys": ["HeartbeatInterval"]}, "keys.0"),  # 2.0.1 needs Component.
            ("CP2", "get-configuration", {}, "keys"),
            ("CP1", "change-configuration", {"key": "AuthorizationKey", "value": "x" * 20}, "key"),
            ("CP2", "change-configuration", {"key": "SecurityCtrlr.BasicAuthPassword", "value": "x" * 20}, "key"),
            ("CP1", "get-configuration", [], "(body)"),
        ]
        for station, command, body, field in cases:
            code, answer = await post(rig, CMD.format(station, command), body)
            assert code == 400 and answer["field"] == field, (station, command, body, answer)
            assert answer["error"].startswith(field), answer
        code, answer = await post(rig, CMD.format("CP1", "reset"), raw=b"{not json")
        assert code == 400 and answer["field"] == "(body)"
        code, answer = await post(rig, CMD.format("NOPE", "reset"), {})
        assert code == 404 and "NOPE" in answer["error"]
        code, answer = await post(rig, CMD.format("CP1", "self-destruct"), {})
        assert code == 404 and "remote-start" in answer["error"]
        # Nothing refused reached a station, and each refusal is in the event log.
        assert not [a for a, _ in rig.charger("CP1").received if a in ("RemoteStartTransaction", "Reset",
                                                                        "RemoteStopTransaction", "DataTransfer")]
        assert not [(a, p) for a, p in rig.charger("CP1").received
                    if a == "ChangeConfiguration" and p["key"] == "AuthorizationKey"]
        events = await _events(rig, len(cases) + 3)
        outcomes = [e["detail"]["outcome"] for e in events]
        assert outcomes.count("BadArguments") == len(cases) + 1
        assert "UnknownStation" in outcomes and "UnknownCommand" in outcomes
        assert all(e["detail"]["by"] == "api 127.0.0.1" for e in events)


async def test_offline_callerror_and_timeout(tmp_path):
    async with running_site(tmp_path) as rig:
        cp1, cp2 = rig.charger("CP1"), rig.charger("CP2")
        cp2.disconnect()
        await wait_until(lambda: "CP2" not in rig.app.server.sessions, what="CP2's session to end")
        code, answer = await post(rig, CMD.format("CP2", "clear-cache"), {})
        assert code == 409 and "not connected" in answer["error"]

        cp1.config.misbehaviour = replace(cp1.config.misbehaviour, not_implemented_calls=frozenset({"ClearCache"}))
        code, answer = await post(rig, CMD.format("CP1", "clear-cache"), {})
        assert code == 502 and answer["code"] == "NotImplemented" and "ClearCache" in answer["description"]

        timeout = rig.app.cfg.server.call_timeout
        cp1.config.misbehaviour = replace(cp1.config.misbehaviour, not_implemented_calls=frozenset(),
                                          answer_delay=timeout + 1)
        code, answer = await post(rig, CMD.format("CP1", "trigger-message"), {"message": "Heartbeat"})
        assert code == 504 and "did not answer" in answer["error"]

        events = {e["detail"]["outcome"]: e for e in await _events(rig, 3)}
        assert {"NotConnected", "CallError", "Timeout"} <= set(events)
        assert events["CallError"]["station_id"] == "CP1"
        assert events["Timeout"]["detail"]["arguments"] == {"message": "Heartbeat"}
