"""The operator's write route: ``POST /api/stations/{station_id}/commands/{command}``.

The body is the command's arguments as a JSON object (see :mod:`csms.operations.arguments`); the answer is
the station's (``{"station", "command", "status", "ok", "reply"}``). Each reason there is no answer has its
status code, so a script knows what to do next without reading the text: 400 fix the request (``field``
names the argument), 404 no such station or command, 409 the station is not connected (or, for an operator
cap, in no load-balancing group), 429 too many commands already wait for it on its gateway (a controller
forwards them there), 502 it answered with a CALLERROR (``code``, ``description``), 504 it did not answer within
the server's call timeout (or, from a controller, its gateway did not answer).
Authentication (the ``[http] operator_token``) is the server's middleware's.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from csms.operations.catalogue import NotJson
from csms.operations.port import CLIENT_HEADER, StationCommander
from csms.operations.results import (BadArguments, CommandError, InvalidAnswer, NotBalanced, StationBusy, StationError,
                                     StationOffline, StationTimeout, UnderCheck, UnknownCommand, UnknownStation)

ROUTE = "/api/stations/{station_id}/commands/{command}"
#: The largest request body a command takes (a DataTransfer's data is the only big argument).
MAX_BODY = 64 * 1024

STATUS = {BadArguments: 400, UnknownCommand: 404, UnknownStation: 404, StationOffline: 409, NotBalanced: 409,
          UnderCheck: 409, StationBusy: 429, StationError: 502, InvalidAnswer: 502, StationTimeout: 504}


def _answer(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def is_write(request: web.Request) -> bool:
    """Whether ``request`` asks to act rather than read (it then needs the operator token)."""
    return request.method not in ("GET", "HEAD", "OPTIONS") and request.path.startswith("/api/")


def error_body(exc: CommandError) -> dict[str, Any]:
    body: dict[str, Any] = {"error": str(exc), "outcome": exc.outcome}
    if isinstance(exc, BadArguments):
        body["field"] = exc.field
    if isinstance(exc, StationError):
        body["code"], body["description"] = exc.code, exc.description
    return body


def who(request: web.Request) -> str:
    """"cli ADDRESS" for ``csms station``, "api ADDRESS" for any other client (a label, not a credential:
    only the operator token's holder gets this far)."""
    kind = "cli" if request.headers.get(CLIENT_HEADER) == "cli" else "api"
    return f"{kind} {request.remote}"


class CommandRoute:
    """Handles the write route with ``commander``, the only thing of the app it can reach."""

    def __init__(self, commander: StationCommander | None):
        self.commander = commander

    async def handle(self, request: web.Request) -> web.Response:
        if self.commander is None:
            return _answer({"error": "this central system takes no commands (no stations are served)"}, 503)
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _answer({"error": f"the body is over {MAX_BODY} bytes", "field": "(body)"}, 413)
        raw = await request.read() if request.can_read_body else b""
        body: Any
        try:
            body = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            body = NotJson()  # refused by the commander, so that the event log has it too
        station_id, command = request.match_info["station_id"], request.match_info["command"]
        try:
            result = await self.commander.execute(station_id, command, body, by=who(request))
        except CommandError as exc:
            return _answer(error_body(exc), STATUS.get(type(exc), 500))
        return _answer(result.as_json())
