"""The operator view's OpenAPI 3.1 document, served at ``/openapi.json``.

It is built from the running application's router, so a route cannot be served without appearing here, and
``tests/web/test_openapi.py`` fails for a route that has no entry in :data:`READ_ROUTES`. The commands'
request bodies come from their pydantic argument models (:mod:`csms.operations.catalogue`), one path per
command, so the document cannot drift from what the server accepts. The document holds no site data and
is served without a token, like the dashboard's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pydantic import BaseModel

from csms.operations.catalogue import COMMANDS

from .tokens import TokenBody

RANGE = ("since", "until", "points")
LIMIT = ("limit",)


@dataclass(frozen=True)
class RouteDoc:
    summary: str
    #: Query parameters, each described in :data:`QUERY`.
    query: tuple[str, ...] = ()
    #: Whether it needs no token (the dashboard's files, this document).
    public: bool = False
    tags: tuple[str, ...] = field(default=("status",))
    #: The name of its JSON body's model in :data:`BODIES`, if it takes one.
    body: str | None = None


#: What each query parameter means, once for every route that takes it.
QUERY: dict[str, tuple[str, dict[str, Any]]] = {
    "since": ("start of the range, POSIX seconds", {"type": "number"}),
    "until": ("end of the range, POSIX seconds (default: now)", {"type": "number"}),
    "points": ("most points returned (the range is averaged down to them)", {"type": "integer", "minimum": 1}),
    "limit": ("most rows returned (at most 1,000)", {"type": "integer", "minimum": 1, "maximum": 1000}),
    "events": ("how many recent events to include", {"type": "integer", "minimum": 0, "maximum": 1000}),
    "station": ("only this station's rows", {"type": "string"}),
    "group": ("the load-balancing group (GET /api/groups lists them)", {"type": "string"}),
    "organisation": ("only this organisation's", {"type": "string"}),
    "kind": ("only events of this kind (e.g. control, profile, operator_command)", {"type": "string"}),
    "charger": ("only this charger's limits", {"type": "string"}),
    "state": ("only reservations in this state", {"type": "string", "enum": ["active", "used", "cancelled",
                                                                           "expired", "refused"]}),
}

#: Every route other than the commands, by (method, path as the router names it).
READ_ROUTES: dict[tuple[str, str], RouteDoc] = {
    ("GET", "/"): RouteDoc("the dashboard page", public=True, tags=("dashboard",)),
    ("GET", "/static/{filename}"): RouteDoc("the dashboard's files", public=True, tags=("dashboard",)),
    ("GET", "/openapi.json"): RouteDoc("this document", public=True, tags=("dashboard",)),
    ("GET", "/api/status"): RouteDoc("the site at a glance: groups, meters, chargers, recent events", ("events",)),
    ("GET", "/api/organisations"): RouteDoc("the organisations of the site"),
    ("GET", "/api/groups"): RouteDoc("every load-balancing group with its budget and latest decision"),
    ("GET", "/api/groups/{group_id}"): RouteDoc("one group, with each charger's limit and why"),
    ("GET", "/api/meters"): RouteDoc("every measurement device with its latest reading and state"),
    ("GET", "/api/meters/{serial}"): RouteDoc("one measurement device"),
    ("GET", "/api/chargers"): RouteDoc("every charger: connection, control state, limit in force, session"),
    ("GET", "/api/chargers/{charger_id}"): RouteDoc("one charger, with the balancer's explanation of its limit"),
    ("GET", "/api/chargers/{charger_id}/configuration"): RouteDoc(
        "the charger's configuration keys / device-model variables as it last reported them, with when and how"),
    ("GET", "/api/transactions"): RouteDoc("running transactions, and those that started in the range",
                                           RANGE + LIMIT + ("station",)),
    ("GET", "/api/events"): RouteDoc("the event log in the range", RANGE + LIMIT + ("station", "group", "kind")),
    ("GET", "/api/history/phases"): RouteDoc("mains current per phase and the group's budget over the range",
                                             RANGE + ("group",)),
    ("GET", "/api/history/limits"): RouteDoc("each charger's limit and its reason over the range",
                                             RANGE + ("group", "charger")),
    ("GET", "/metrics"): RouteDoc("Prometheus metrics (text exposition format)", tags=("metrics",)),
    ("GET", "/api/tokens"): RouteDoc("every id token in force, with its source (config or runtime)",
                                     ("organisation",), tags=("tokens",)),
    ("GET", "/api/tokens/{organisation}/{token}"): RouteDoc("one id token", tags=("tokens",)),
    ("PUT", "/api/tokens/{organisation}/{token}"): RouteDoc(
        "create or replace an id token (body: status, expiry, parent, concurrent; operator token)",
        tags=("tokens",), body="TokenBody"),
    ("POST", "/api/tokens/{organisation}/{token}/block"): RouteDoc("block an id token (operator token)",
                                                                   tags=("tokens",)),
    ("POST", "/api/tokens/{organisation}/{token}/unblock"): RouteDoc("accept a blocked id token again "
                                                                     "(operator token)", tags=("tokens",)),
    ("DELETE", "/api/tokens/{organisation}/{token}"): RouteDoc("forget an id token (operator token)",
                                                               tags=("tokens",)),
    ("GET", "/api/stations/{station_id}/uploads"): RouteDoc("the files the station uploaded (get-logs)",
                                                            tags=("uploads",)),
    ("GET", "/api/stations/{station_id}/uploads/{filename}"): RouteDoc("download one uploaded file",
                                                                       tags=("uploads",)),
    **{(method, path): RouteDoc("where a station uploads the file a get-logs asked for; the secret URL the "
                                "command gave it is the credential (PUT the body, or POST multipart/form-data)",
                                public=True, tags=("uploads",))
       for method in ("PUT", "POST") for path in ("/upload/{station_id}/{token}", "/upload/{station_id}/{token}/",
                                                  "/upload/{station_id}/{token}/{filename}")},
    ("POST", "/api/config/reload"): RouteDoc(
        "read the config file again and put it in force whole, or refuse it whole (422 with every problem; "
        "operator token)", tags=("config",)),
    ("POST", "/api/groups/{group_id}/commission"): RouteDoc(
        "start a commissioning check of the group's wiring (202 with the report's id; 409 one is running; "
        "operator token)", tags=("commissioning",)),
    ("GET", "/api/commissioning"): RouteDoc("the latest commissioning reports, newest first", LIMIT + ("group",),
                                            tags=("commissioning",)),
    ("GET", "/api/commissioning/{report_id}"): RouteDoc(
        "one commissioning report: state (running, done, failed, cancelled, interrupted), findings with "
        "evidence and fixes, per-charger results", tags=("commissioning",)),
    ("GET", "/api/reservations"): RouteDoc("reservations, newest first, with their state now",
                                           LIMIT + ("station", "state"), tags=("reservations",)),
}

#: Request bodies of the routes above, by the name a RouteDoc gives.
BODIES: dict[str, type[BaseModel]] = {"TokenBody": TokenBody}

COMMAND_PATH = "/api/stations/{station_id}/commands/{command}"

ERRORS = {
    "400": "bad arguments: `field` names the one to fix",
    "401": "missing or wrong token",
    "403": "the read-only token, or no [http] operator_token configured",
    "404": "no such station or command",
    "409": "the station is not connected (through a controller or relayed by one: no gateway holds it)",
    "429": "too many commands already wait for the station on its gateway (sent through a controller)",
    "502": "the station answered with a CALLERROR (`code`, `description`)",
    "504": "the station did not answer within [server] call_timeout (or, through a controller, its gateway did not "
           "answer)",
}


def routes_of(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route the application serves (HEAD twins of GET left out)."""
    out = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        if path is None and "prefix" in info:
            path = info["prefix"].rstrip("/") + "/{filename}"
        if route.method == "HEAD" or path is None:
            continue
        out.append((route.method, path))
    return out


def document(app: web.Application, version: str) -> dict[str, Any]:
    """The OpenAPI document of ``app``; raises ``KeyError`` naming a route that has no description."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for method, path in routes_of(app):
        if path == COMMAND_PATH:
            for name, spec in COMMANDS.items():
                paths[COMMAND_PATH.replace("{command}", name)] = {"post": _command(name, spec, schemas)}
            continue
        doc = READ_ROUTES.get((method, path))
        if doc is None:
            raise KeyError(f"{method} {path} has no entry in csms.web.openapi.READ_ROUTES")
        paths.setdefault(path, {})[method.lower()] = _read(path, doc, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "fuse-guard CSMS operator API", "version": version,
                 "description": "Status and history (the [http] token) and commands to stations (the [http] "
                                "operator_token), as `Authorization: Bearer <token>`."},
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _parameters(path: str, query: tuple[str, ...]) -> list[dict[str, Any]]:
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"{(\w+)}", path)]
    for name in query:
        description, schema = QUERY[name]
        params.append({"name": name, "in": "query", "required": False, "description": description,
                       "schema": schema})
    return params


def _read(path: str, doc: RouteDoc, schemas: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": doc.summary, "tags": list(doc.tags),
                          "parameters": _parameters(path, doc.query),
                          "responses": {"200": {"description": "OK"}}}
    if doc.body is not None:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": _schema(
            BODIES[doc.body], schemas)}}}
        op["responses"]["400"] = {"description": ERRORS["400"]}
    if doc.public:
        op["security"] = []
    else:
        op["responses"]["401"] = {"description": ERRORS["401"]}
    return op


def _command(name: str, spec: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    model = spec.arguments
    ref = _schema(model, schemas)
    path = COMMAND_PATH.replace("{command}", name)
    return {
        "summary": spec.summary, "tags": ["commands"], "operationId": name.replace("-", "_"),
        "parameters": _parameters(path, ()),
        "requestBody": {"required": False, "content": {"application/json": {"schema": ref}}},
        "responses": {"200": {"description": "the station's answer: {station, command, status, ok, reply}"},
                      **{code: {"description": text} for code, text in ERRORS.items()}},
    }


def _schema(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """Puts ``model``'s JSON Schema (and the ones it refers to) in ``schemas``; a reference to it."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for sub, body in schema.pop("$defs", {}).items():
        schemas[sub] = body
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}
