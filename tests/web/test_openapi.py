"""The OpenAPI document: served without a token, built from the live router, a path per command."""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from csms.operations.catalogue import COMMANDS
from csms.web import openapi

from .site import get, running_site


async def test_the_document_describes_every_route_and_command(tmp_path):
    async with running_site(tmp_path) as rig:
        code, headers, body = await get(rig, "/openapi.json", token=None)
        assert code == 200, body
        doc = json.loads(body)
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    for name, spec in COMMANDS.items():
        op = paths[f"/api/stations/{{station_id}}/commands/{name}"]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        Draft202012Validator.check_schema(schema)
        assert set(schema.get("properties", {})) == set(spec.arguments.model_fields)
        assert {"400", "404", "409", "502", "504"} <= set(op["responses"])
    assert paths["/api/chargers"]["get"]["summary"]
    assert paths["/openapi.json"]["get"]["security"] == []  # public: it holds no site data
    assert "security" not in paths["/api/events"]["get"]  # the document's default: the bearer token
    assert {p["name"] for p in paths["/api/events"]["get"]["parameters"]} >= {"since", "until", "limit", "kind"}


def test_a_route_without_a_description_is_refused():
    """The document cannot leave a served route out: an undescribed one is named, not skipped."""
    app = web.Application()

    async def handler(request: web.Request) -> web.Response:
        return web.Response()
    app.add_routes([web.get("/api/status", handler), web.get("/api/new-thing", handler)])
    with pytest.raises(KeyError, match="GET /api/new-thing"):
        openapi.document(app, "test")


def test_the_dashboard_calls_only_routes_the_server_describes():
    """The scripts build their API paths from pieces ("/api/chargers/" + id + "/configuration"): each literal
    path piece must begin a described route, so a renamed route cannot leave a dead button behind."""
    import re
    from pathlib import Path

    from csms.web.openapi import COMMAND_PATH, READ_ROUTES
    static = Path(openapi.__file__).parent / "static"
    described = [path for _, path in READ_ROUTES] + [COMMAND_PATH]
    scripts = "".join((static / name).read_text() for name in ("dashboard.js", "charger.js",
                                                                          "commissioning.js"))
    heads = {p.split("?")[0] for p in re.findall(r'"(/api/[^"]*)"', scripts)}
    assert {"/api/status", "/api/stations/", "/api/chargers/", "/api/groups/", "/api/commissioning"} <= heads
    for head in heads:
        assert any(path.startswith(head) for path in described), head
    for tail in re.findall(r'"(/[a-z-]+/?)"', scripts):  # the pieces after an id: "/commands/", "/configuration"
        assert any(tail in path for path in described), tail
    index = (static / "index.html").read_text()
    assert "/static/charger.js" in index and 'id="charger-panel"' in index
    assert "/static/commissioning.js" in index
