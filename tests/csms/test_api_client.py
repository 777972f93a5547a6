"""How the operator's CLI commands find the API: the config's [http], or ``--url`` (a cluster node's own)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from csms.runtime.api_client import Api, CliFailure, address_of
from csms.runtime.cli import main

SITE = Path(__file__).resolve().parents[2] / "config" / "examples" / "site.toml"


@pytest.mark.parametrize("url, address", [
    ("http://127.0.0.1:8080", "127.0.0.1:8080"),
    ("http://127.0.0.1:8080/", "127.0.0.1:8080"),
    ("http://controller-2.example:9000", "controller-2.example:9000"),
    ("http://[::1]:8081", "[::1]:8081"),
])
def test_url_names_the_address(url, address):
    assert address_of(url) == address


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "https://10.0.0.5:8080", "http://10.0.0.5", "http://:8080",
                                 "http://10.0.0.5:99999", "http://10.0.0.5:8080/api", "ws://10.0.0.5:8080"])
def test_a_url_that_is_not_http_host_port_is_a_usage_error(url):
    with pytest.raises(CliFailure) as info:
        address_of(url)
    assert info.value.code == 2 and "--url" in str(info.value) and "http://HOST:PORT" in str(info.value)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(SITE.read_text() + '\n[http]\nport = 1\ntoken = "reader-token-123"\n'
                                      'operator_token = "operator-token-456"\n')
    return path


def test_url_overrides_the_configs_port_and_keeps_its_token(config):
    api = Api.from_config(str(config), "http://127.0.0.1:9999")
    assert api.address == "127.0.0.1:9999" and api.token == "operator-token-456"
    assert Api.from_config(str(config)).address == "127.0.0.1:1"


class Node(BaseHTTPRequestHandler):
    """A controller's API that runs a check which is done at once."""
    seen: list[tuple[str, str, str]] = []

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        Node.seen.append(("POST", self.path, self.headers.get("Authorization", "")))
        self._answer(202, {"id": 7, "group": "garage", "state": "running", "report": "/api/commissioning/7"})

    def do_GET(self) -> None:  # noqa: N802
        Node.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
        self._answer(200, {"id": 7, "state": "done", "report": {"ok": True}})

    def log_message(self, *args) -> None:
        pass


def test_commission_goes_to_the_node_the_url_names(config, capsys):
    from csms.config import load_config
    group = load_config(str(config)).load_balancers[0].id
    server = ThreadingHTTPServer(("127.0.0.1", 0), Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = main(["commission", "--config", str(config), "--group", group, "--json",
                     "--url", f"http://127.0.0.1:{server.server_address[1]}"])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert code == 0, capsys.readouterr().err
    assert Node.seen[0] == ("POST", f"/api/groups/{group}/commission", "Bearer operator-token-456")
    assert Node.seen[1][:2] == ("GET", "/api/commissioning/7")


def test_a_bad_url_is_refused_before_anything_is_asked(config, capsys):
    assert main(["commission", "--config", str(config), "--group", "g", "--url", "10.0.0.5:8080"]) == 2
    assert "--url '10.0.0.5:8080'" in capsys.readouterr().err


def test_an_api_that_takes_the_request_and_never_answers_is_named_not_called_down(config):
    """Connected, asked, no answer: the command may still run, so the CLI must not say nothing listens."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as silent:
        api = Api.from_config(str(config), f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(CliFailure) as info:
            api.request("POST", "/api/stations/CP1/commands/reset", {}, timeout=0.3)
    assert info.value.code == 1 and "did not answer within 0.3 s" in str(info.value), info.value
    assert "is csms serve running" not in str(info.value)


def test_csms_station_waits_longer_than_any_node_on_the_way_does(config, monkeypatch, capsys):
    """A command sent to a gateway for a station another gateway holds is relayed by a controller: the gateway
    waits the longest of the nodes, and the CLI longer still (else it gives up on an answer that is coming)."""
    from csms.bus.operator_remote import RemoteCommander, relay_target
    from csms.bus.topics import Topics
    from csms.config import load_config

    asked: list[float] = []

    def request(self, method, path, body=None, timeout=10.0):
        asked.append(timeout)
        return 200, {"station": "CP1", "command": "reset", "status": "Accepted", "ok": True, "reply": {}}

    monkeypatch.setattr(Api, "request", request)
    assert main(["station", "reset", "CP1", "--config", str(config)]) == 0, capsys.readouterr().err
    call_timeout = load_config(str(config)).server.call_timeout
    relaying_gateway = RemoteCommander("gw1", Topics(), None, relay_target(Topics(), "gw1"),  # type: ignore[arg-type]
                                       call_timeout=call_timeout, margin=2.0, clock=lambda: 0.0, counts=None,
                                       hops=2)  # type: ignore[arg-type]
    assert len(asked) == 1 and asked[0] > relaying_gateway.wait > 4 * call_timeout
