"""The operator view's HTTP API and /metrics against a running simulated site."""

from __future__ import annotations

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from csms.config import ConfigError, parse_config
from csms.web import dashboard_url

from .site import SECRETS, TOKEN, get, running_site, wait_until


def _metrics(text: str) -> dict[str, list]:
    """Samples by sample name (e.g. csms_ocpp_messages_total), parsed by prometheus-client's own parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


async def test_api_and_metrics_need_the_token_and_the_page_does_not(tmp_path):
    async with running_site(tmp_path) as rig:
        for path in ("/api/status", "/api/chargers", "/api/history/phases?group=garage", "/metrics"):
            code, headers, body = await get(rig, path, token=None)
            assert code == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert "token" in json.loads(body)["error"]
            code, _, _ = await get(rig, path, token="wrong-token-wrong-token")
            assert code == 401, path
            code, _, _ = await get(rig, path)
            assert code == 200, path
        code, headers, body = await get(rig, "/", token=None)
        assert code == 200 and "<title>" in body and "/static/dashboard.js" in body
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        code, _, body = await get(rig, "/static/uPlot.iife.min.js", token=None)
        assert code == 200 and "MIT License" in body[:2000] and "uPlot" in body[:200]
        code, _, _ = await get(rig, "/static/../server.py", token=None)
        assert code in (403, 404)
        code, headers, body = await get(rig, "/api/nothing")  # an API path answers JSON, even when there is none
        assert code == 404 and headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"] == "no GET /api/nothing; the routes are listed at /openapi.json"
        code, _, body = await get(rig, "/api/events?since=99999999999")
        assert code == 400 and "after until (now, as none was given)" in json.loads(body)["error"], body


async def test_status_shows_groups_meters_chargers_and_transactions_live(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        await rig.charging_at_full("CP1")
        code, _, body = await get(rig, "/api/status")
        assert code == 200
        status = json.loads(body)
        assert status["connected_stations"] == 2
        assert status["organisations"][0]["groups"] == ["garage"]

        (group,) = status["groups"]
        decision = app.balancer.decision("garage")
        assert group["decision"]["meter_fresh"] is True
        assert group["decision"]["budget"] == {str(p): round(a, 2) for p, a in decision.budget.items()}
        assert "fuse" in group["decision"]["budget_notes"]["1"]
        assert group["supply_max_current"] == 40 and group["max_current_online"] == 32
        assert group["phase_current"]["1"] > 20  # base load 8 A + the car's 16 A
        assert group["chargers_current"] == pytest.approx({"1": 16.0, "2": 16.0, "3": 16.0}, abs=0.5)

        (meter,) = status["meters"]
        assert meter["status"] == "online" and meter["age"] < 5
        assert meter["last_reading"]["current"]["3"] > 20

        chargers = {c["id"]: c for c in status["chargers"]}
        cp1, cp2 = chargers["CP1"], chargers["CP2"]
        assert cp1["connected"] and cp1["version"] == "ocpp1.6" and cp2["version"] == "ocpp2.0.1"
        assert cp1["control"] == "controlled" and cp1["limit"] == 16 and cp1["limit_in_force"] == 16
        assert cp1["reason"] == decision.limits["CP1"].reason and cp1["reason"]
        assert cp1["explain"].startswith("CP1: 16.0 A")
        assert cp1["draw"] == pytest.approx([16.0, 16.0, 16.0], abs=0.5)
        assert cp1["profiles"]["accepted"] >= 1 and cp1["profiles"]["sent"] >= cp1["profiles"]["accepted"]
        assert cp2["draw_by_phase"] == {} or set(cp2["draw_by_phase"]) == {"1", "2", "3"}
        assert cp2["phases_wired"] == [2, 3, 1]
        assert [t["station_id"] for t in status["transactions"]] == ["CP1"]
        assert cp1["transactions"][0]["transaction_id"] == status["transactions"][0]["transaction_id"]
        kinds = {e["kind"] for e in status["events"]}
        assert {"profile", "control"} <= kinds

        code, _, body = await get(rig, "/api/chargers/CP1")
        assert code == 200 and json.loads(body)["limit"] == 16
        code, _, body = await get(rig, "/api/chargers/NOPE")
        assert code == 404 and "NOPE" in json.loads(body)["error"]
        code, _, body = await get(rig, "/api/groups/garage")
        assert code == 200 and json.loads(body)["meter"] == "AG7654321G"
        code, _, body = await get(rig, "/api/meters/AG7654321G")
        assert code == 200 and json.loads(body)["status"] == "online"
        code, _, body = await get(rig, "/api/transactions")
        tx = json.loads(body)
        assert tx["running"][0]["station_id"] == "CP1"
        assert tx["history"][0]["transaction_id"] == tx["running"][0]["transaction_id"]
        code, _, body = await get(rig, "/api/events?station=CP1&kind=profile&limit=3")
        events = json.loads(body)
        assert 1 <= len(events) <= 3 and all(e["station_id"] == "CP1" and e["kind"] == "profile" for e in events)
        assert events[0]["detail"]["outcome"] == "Accepted"


async def test_no_secret_is_ever_returned(tmp_path):
    async with running_site(tmp_path) as rig:
        rig.plug_in("CP1")
        await wait_until(lambda: rig.app.delivery.channels["CP1"].in_force is not None, what="a limit")
        paths = ["/api/status?events=1000", "/api/organisations", "/api/groups", "/api/groups/garage", "/api/meters",
                 "/api/meters/AG7654321G", "/api/chargers", "/api/chargers/CP1", "/api/chargers/CP2",
                 "/api/transactions", "/api/events?limit=1000", "/api/history/phases?group=garage",
                 "/api/history/limits?group=garage", "/metrics"]
        for path in paths:
            code, _, body = await get(rig, path)
            assert code == 200, path
            for secret in SECRETS:
                assert secret not in body, f"{path} returns a secret"
            assert '"password"' not in body and '"pin"' not in body


async def test_history_of_phase_currents_budget_and_limits(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        await wait_until(lambda: "AG7654321G" in app.last_readings, what="a first mains reading, before the car")
        await rig.charging_at_full("CP1")
        t_car = app.clock()
        await wait_until(lambda: app.clock() > t_car + 1.5)
        app.readings.flush()
        code, _, body = await get(rig, "/api/history/phases?group=garage&points=5000")
        assert code == 200
        h = json.loads(body)
        assert h["supply_max_current"] == 40 and h["meter"] == "AG7654321G"
        l1 = [r["l1"] for r in h["currents"]]
        assert len(l1) >= 3 and min(l1) < 10 < 20 < max(l1)  # before the car (8 A base load) and with it
        assert h["budget"] and all({"at", "1", "2", "3", "meter_fresh"} <= set(b) for b in h["budget"])
        assert h["currents"] == sorted(h["currents"], key=lambda r: r["at"])

        since, until = h["currents"][0]["at"], h["currents"][-1]["at"]
        code, _, body = await get(rig, f"/api/history/phases?group=garage&since={since}&until={until}&points=2")
        thin = json.loads(body)["currents"]
        assert 1 <= len(thin) <= 2 and max(r["l1"] for r in thin) == max(l1)  # buckets keep the peak

        code, _, body = await get(rig, "/api/history/limits?group=garage&charger=CP1")
        limits = json.loads(body)["decisions"]
        assert {tuple(d["limits"]) for d in limits} == {("CP1",)}
        assert any(d["limits"]["CP1"]["limit"] == 16 and d["limits"]["CP1"]["reason"] for d in limits)

        for path, fragment in (("/api/history/phases?group=garage&since=yesterday", "since='yesterday'"),
                               ("/api/history/phases?group=garage&since=10&until=5", "after until"),
                               ("/api/history/phases?group=garage&points=0", "points must be"),
                               ("/api/history/limits", "group is required"),
                               ("/api/events?limit=many", "limit='many'")):
            code, _, body = await get(rig, path)
            assert code == 400, path
            assert fragment in json.loads(body)["error"], path
        code, _, body = await get(rig, "/api/history/phases?group=attic")
        assert code == 404 and "attic" in json.loads(body)["error"]


async def test_metrics_parse_with_prometheus_client(tmp_path):
    async with running_site(tmp_path) as rig:
        app = rig.app
        await rig.charging_at_full("CP1")
        code, headers, body = await get(rig, "/metrics")
        assert code == 200 and headers["Content-Type"].startswith("text/plain")
        m = _metrics(body)

        def value(name: str, **labels) -> float:
            hits = [s.value for s in m.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
            assert len(hits) == 1, f"{name}{labels}: {hits}"
            return hits[0]

        reading = app.last_readings["AG7654321G"]
        assert value("csms_phase_current_amperes", group="garage", phase="1") == pytest.approx(reading.current[0], abs=3)
        budget = app.balancer.decision("garage").budget
        assert value("csms_phase_budget_amperes", group="garage", phase="2") == pytest.approx(budget[2], abs=3)
        assert value("csms_group_max_current_amperes", group="garage", kind="fuse") == 40
        assert value("csms_charger_limit_amperes", charger="CP1", group="garage") == 16
        assert value("csms_charger_limit_in_force_amperes", charger="CP1") == 16
        assert value("csms_charger_draw_amperes", charger="CP1", phase="1") == pytest.approx(16, abs=0.5)
        assert value("csms_charger_control_state", charger="CP1", state="controlled") == 1
        assert value("csms_charger_control_state", charger="CP1", state="uncontrolled") == 0
        assert value("csms_charger_connected", charger="CP2") == 1
        assert 0 <= value("csms_meter_staleness_seconds", meter="AG7654321G") < 5
        assert value("csms_meter_online", meter="AG7654321G") == 1
        assert value("csms_connected_stations") == 2
        assert value("csms_running_transactions") == 1
        sent = value("csms_profiles_sent_total", charger="CP1")
        assert sent >= value("csms_profiles_accepted_total", charger="CP1") >= 1
        assert value("csms_profiles_rejected_total", charger="CP1") == sent - value("csms_profiles_accepted_total", charger="CP1")
        assert value("csms_ocpp_messages_total", direction="in", action="BootNotification", outcome="ok") >= 2
        assert value("csms_ocpp_messages_total", direction="out", action="SetChargingProfile", outcome="ok") >= 1
        assert value("csms_decision_latency_seconds_count", group="garage") >= 1
        assert value("csms_decision_latency_seconds_bucket", group="garage", le="+Inf") == \
            value("csms_decision_latency_seconds_count", group="garage")


async def test_without_an_http_section_nothing_listens(tmp_path):
    async with running_site(tmp_path, http=False) as rig:
        assert rig.app.web is None and rig.app.http_port is None


def test_http_token_is_validated_with_a_clear_message():
    with pytest.raises(ConfigError) as err:
        parse_config({"http": {"port": 8080, "token": "short"}}, "site.toml")
    assert "site.toml: http.token: token must be at least 16 characters" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"http": {"token": "0123456789abcdef", "tokn": "x"}}, "site.toml")
    assert "http.tokn: unknown key" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"http": {"token": "0123456789 abcdef"}}, "site.toml")
    assert "without spaces" in str(err.value)


def test_dashboard_url_carries_the_token_in_the_fragment():
    assert dashboard_url("127.0.0.1", 8080, TOKEN) == f"http://127.0.0.1:8080/#token={TOKEN}"
    assert dashboard_url("0.0.0.0", 81, "a/b+c=d&e") == "http://127.0.0.1:81/#token=a%2Fb%2Bc%3Dd%26e"
    assert dashboard_url("::1", 9, "t" * 16).startswith("http://[::1]:9/#token=")


async def test_a_busy_http_port_is_reported_with_the_fix(tmp_path):
    import socket

    from csms.runtime.app import CentralSystemApp

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = parse_config({"server": {"port": 0, "security_profile": 0},
                            "storage": {"database": str(tmp_path / "csms.sqlite")},
                            "http": {"port": port, "token": TOKEN}})
        with pytest.raises(OSError, match=rf"\[http\] cannot listen on 127.0.0.1:{port}: .*choose another port"):
            async with CentralSystemApp(cfg):
                pass
