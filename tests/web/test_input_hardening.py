"""The operator view under hostile input: standard JSON only, no forged log lines, no 500 (issue 12)."""

from __future__ import annotations

import asyncio
import json
import logging
import math

import pytest

from csms.config import parse_config
from csms.domain.state import PhaseSample, Transaction
from csms.runtime.app import CentralSystemApp
from tests.csms.harness import raw_station
from tests.csms.test_server import NOW, tx_event

TOKEN = "test-token-0123456789abcdef"


def strict_json(text: str):
    """``JSON.parse``: NaN and Infinity are not JSON."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture
async def app(tmp_path):
    cfg = parse_config({
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1},
        "storage": {"database": str(tmp_path / "csms.sqlite")},
        "http": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
        "organisations": [{"id": "org", "name": "Org"}],
        "chargers": [{"id": "CP0002", "password": "fedcba9876543210", "organisation": "org"}],
    }, "test.toml")
    async with CentralSystemApp(cfg) as app:
        yield app


async def fetch(app, path: str, token: str | bytes | None = TOKEN) -> tuple[int, str]:
    """GET over a bare socket, so the header bytes are exactly those given."""
    auth = b"" if token is None else b"Authorization: Bearer " + (token if isinstance(token, bytes)
                                                                 else token.encode()) + b"\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n")
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return int(head.split()[1]), body.decode()


def _unchunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            break
        out, body = out + rest[:n], rest[n + 2:]
    return out


async def test_infinity_reported_or_already_stored_never_reaches_the_json(app):
    async with raw_station(app, "CP0002", subprotocol="ocpp2.0.1") as st:
        mv = [{"timestamp": NOW, "sampledValue": [
            {"value": 1e308, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "kWh"}},
            {"value": 1e308, "measurand": "Current.Import", "phase": "L1", "unitOfMeasure": {"unit": "A",
                                                                                           "multiplier": 1}}]}]
        assert (await st.call("TransactionEvent", tx_event("Started", 0, evse={"id": 1}, meterValue=mv)))[0] == 3
        assert (await st.call("MeterValues", {"evseId": 1, "meterValue": mv}))[0] == 3
    sample = app.state.stations["CP0002"].samples[1]
    assert sample.energy_wh is None and sample.current == (None, None, None)
    # What an older version stored, and a live sample with it, must not break the API either.
    await app.storage.write(lambda db: db.execute(
        "INSERT INTO transactions (station_id, transaction_id, version, started_at, meter_start_wh, meter_stop_wh)"
        " VALUES ('CP0002', 'OLD', 'ocpp2.0.1', ?, ?, ?)", [app.clock(), math.inf, -math.inf]))
    app.state.station("CP0002").transactions[2] = Transaction("NAN", 2, None, app.clock(), math.nan)
    app.state.sampled("CP0002", 2, PhaseSample(app.clock(), (math.inf, None, None), (None, None, None), math.inf))
    for path in ("/api/status", "/api/chargers", "/api/chargers/CP0002", "/api/transactions", "/api/events"):
        code, body = await fetch(app, path)
        assert code == 200, (path, body)
        strict_json(body)
    tx = strict_json((await fetch(app, "/api/transactions"))[1])
    old = next(t for t in tx["history"] if t["transaction_id"] == "OLD")
    assert old["meter_start_wh"] is None and old["meter_stop_wh"] is None


async def test_request_path_cannot_forge_a_log_line(app, caplog):
    with caplog.at_level(logging.INFO, logger="csms"):
        await fetch(app, "/api/x%0d%0aCRITICAL%20csms:%20fuse%20blown", token=None)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("csms.web")]
    assert lines and all("\n" not in m and "\r" not in m for m in lines), lines
    assert any("\\r\\nCRITICAL" in m for m in lines)


@pytest.mark.parametrize("token", ["tökén-0123456789abcdef".encode(), "токен".encode(), b"\xff\xfe"])
async def test_non_ascii_bearer_token_is_401(app, token):
    code, body = await fetch(app, "/api/status", token=token)
    assert code == 401 and "token" in strict_json(body)["error"]


async def test_meter_refusals_are_counted_in_the_api_and_metrics(tmp_path):
    from meter_gateway.publisher import reading_topic
    from prometheus_client.parser import text_string_to_metric_families

    meter = "AG7654321G"
    cfg = parse_config({
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1},
        "storage": {"database": str(tmp_path / "csms.sqlite")},
        "http": {"host": "127.0.0.1", "port": 0, "token": TOKEN},
        "mqtt": {"host": "127.0.0.1", "port": 1},
        "gateway": {"mode": "mqtt"},
        "organisations": [{"id": "org", "name": "Org"}],
        "meters": [{"serial": meter, "pin": "87654321", "organisation": "org", "source": "mqtt"}],
        "chargers": [{"id": "CP0002", "password": "fedcba9876543210", "organisation": "org"}],
        "load_balancers": [{"id": "g", "name": "G", "organisation": "org", "meter": meter, "chargers": ["CP0002"],
                            "supply_max_current": 40, "max_current_online": 32, "max_current_offline": 10}],
    }, "test.toml")
    async with CentralSystemApp(cfg) as app:
        topic = reading_topic(cfg.mqtt.publish_prefix, meter)
        for raw in (b'{"current": ' + b"[" * 500 + b"]" * 500 + b"}", b"{not json", b"[]"):
            app.meters._message(topic, raw)
        code, body = await fetch(app, f"/api/meters/{meter}")
        assert code == 200 and strict_json(body)["refused"] == {"bad_reading": 3}
        assert strict_json((await fetch(app, "/api/meters"))[1])[0]["refused"] == {"bad_reading": 3}
        code, text = await fetch(app, "/metrics")
        samples = {(s.labels.get("meter"), s.labels.get("reason")): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "csms_meter_readings_refused_total"}
        assert samples == {(meter, "bad_reading"): 3.0}


@pytest.mark.parametrize("body, field, words", [
    ({"limit": True, "duration": 60}, "limit", "valid number"),
    ({"limit": "8", "duration": 60}, "limit", "valid number"),
    ({"limit": 8, "duration": "60"}, "duration", "valid integer"),
    ({"limit": math.nan, "duration": 60}, "limit", "finite number"),
    ({"limit": math.inf, "duration": 60}, "limit", "finite number"),
])
def test_a_command_argument_of_the_wrong_type_is_refused_not_converted(body, field, words):
    """``{"limit": true}`` was a 1 A cap (a paused car) and ``"8"`` was 8 A: a type mistake is the caller's to fix."""
    from csms.operations.catalogue import parse
    from csms.operations.results import BadArguments

    with pytest.raises(BadArguments) as refused:
        parse("set-charging-profile", body)
    assert refused.value.field == field and words in str(refused.value), str(refused.value)


def test_command_times_are_still_iso_text_or_epoch_seconds():
    from csms.operations.catalogue import parse

    assert parse("set-charging-profile", {"limit": 8, "until": "2030-01-01T00:00:00Z"}).until is not None
    assert parse("get-logs", {"location": "https://logs.example/up", "since": 1_900_000_000}).since is not None


def test_a_token_body_of_the_wrong_type_is_refused_and_its_expiry_is_still_text():
    from pydantic import ValidationError

    from csms.web.tokens import TokenBody

    with pytest.raises(ValidationError, match="concurrent"):
        TokenBody.model_validate({"concurrent": "yes"})
    assert TokenBody.model_validate({"expiry": "2030-01-01T00:00:00"}).expiry is not None


def test_a_rule_across_two_arguments_names_one_of_them_in_its_own_words():
    from csms.operations.catalogue import parse
    from csms.operations.results import BadArguments

    with pytest.raises(BadArguments) as refused:
        parse("set-charging-profile", {"limit": 8, "duration": 60, "until": "2030-01-01T00:00:00Z"})
    assert (refused.value.field, refused.value.message) == ("duration", "give until or duration, not both")
    with pytest.raises(BadArguments) as refused:
        parse("update-firmware", {"location": "nope"})
    assert refused.value.field == "location" and refused.value.message.startswith("location must be a URL")
