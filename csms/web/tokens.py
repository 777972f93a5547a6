"""The id-token routes: the operator lists, creates, blocks, unblocks and deletes cards at run time.

``GET /api/tokens[?organisation=ID]`` and ``GET /api/tokens/{organisation}/{token}`` read (either token);
``PUT`` (create or replace the whole entry), ``POST .../block``, ``POST .../unblock`` and ``DELETE`` change
(the operator token, checked by the server's middleware). A change is stored before it is answered and is in
force for the next Authorize or start; the event log names who asked. Errors: 400 names the field to fix,
404 an unknown token.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from csms.domain.tokens import IdToken, TokenError, TokenListing, TokenNotFound
from csms.operations.port import TokenAdmin

from .operator import who

LIST = "/api/tokens"
ONE = "/api/tokens/{organisation}/{token}"
BLOCK = ONE + "/block"
UNBLOCK = ONE + "/unblock"
MAX_BODY = 16 * 1024


class TokenBody(BaseModel):
    """A PUT's body: the whole entry (what is left out takes its default)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "concurrent": "yes" is refused, not taken as true
    #: Expired follows from ``expiry`` and ConcurrentTx from running transactions; neither is set here.
    status: Literal["Accepted", "Blocked"] = "Accepted"
    #: ISO 8601; without a zone it is UTC. Absent: never expires.
    expiry: datetime | None = Field(None, strict=False)
    #: The group id (1.6 parentIdTag, 2.0.1 groupIdToken), at most 20 characters.
    parent: str | None = Field(None, min_length=1, max_length=20)
    #: May the card run more than one transaction at a time?
    concurrent: bool = False


def entry_json(entry: IdToken, source: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"organisation": entry.organisation, "token": entry.token, "status": entry.status.value,
                           "expiry": entry.expiry.isoformat() if entry.expiry else None, "parent": entry.parent,
                           "concurrent": entry.concurrent}
    if source is not None:
        out["source"] = source
    return out


def _listing_json(listing: TokenListing) -> dict[str, Any]:
    return entry_json(listing.entry, listing.source)


def _answer(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def _refused(field: str, message: str) -> web.Response:
    return _answer({"error": f"{field}: {message}", "field": field}, 400)


class TokenRoutes:
    def __init__(self, tokens: TokenAdmin | None):
        self.tokens = tokens

    def routes(self) -> list[web.RouteDef]:
        return [web.get(LIST, self.list), web.get(ONE, self.get), web.put(ONE, self.put),
                web.post(BLOCK, self.block), web.post(UNBLOCK, self.unblock), web.delete(ONE, self.delete)]

    async def list(self, request: web.Request) -> web.Response:
        book = self._book()
        org = request.query.get("organisation") or None
        return _answer({"tokens": [_listing_json(t) for t in book.list_tokens(org)]})

    async def get(self, request: web.Request) -> web.Response:
        org, token = _key(request)
        try:
            return _answer(_listing_json(self._book().get_token(org, token)))
        except TokenNotFound as exc:
            return _answer({"error": str(exc)}, 404)

    async def put(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _answer({"error": f"the body is over {MAX_BODY} bytes", "field": "(body)"}, 413)
        raw = await request.read() if request.can_read_body else b""
        try:
            data = json.loads(raw) if raw.strip() else {}
        except (ValueError, UnicodeDecodeError):
            return _refused("(body)", "not JSON; send the entry as a JSON object")
        if not isinstance(data, dict):
            return _refused("(body)", "must be a JSON object: status, expiry, parent, concurrent")
        try:
            body = TokenBody.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(body)"
            return _refused(where, "unknown field" if err["type"] == "extra_forbidden" else err["msg"])
        org, token = _key(request)
        return await self._change(self._book().put_token(org, token, by=who(request), status=body.status,
                                                         expiry=body.expiry, parent=body.parent,
                                                         concurrent=body.concurrent))

    async def block(self, request: web.Request) -> web.Response:
        org, token = _key(request)
        return await self._change(self._book().block_token(org, token, by=who(request)))

    async def unblock(self, request: web.Request) -> web.Response:
        org, token = _key(request)
        return await self._change(self._book().unblock_token(org, token, by=who(request)))

    async def delete(self, request: web.Request) -> web.Response:
        org, token = _key(request)
        try:
            await self._book().delete_token(org, token, by=who(request))
        except TokenNotFound as exc:
            return _answer({"error": str(exc)}, 404)
        return _answer({"organisation": org, "token": token, "deleted": True})

    async def _change(self, change) -> web.Response:
        try:
            entry = await change
        except TokenError as exc:
            return _answer({"error": str(exc), "field": exc.field}, 400)
        except TokenNotFound as exc:
            return _answer({"error": str(exc)}, 404)
        return _answer(entry_json(entry, "runtime"))

    def _book(self) -> TokenAdmin:
        if self.tokens is None:
            raise web.HTTPServiceUnavailable(text="this central system has no id tokens to manage")
        return self.tokens


def _key(request: web.Request) -> tuple[str, str]:
    return request.match_info["organisation"], request.match_info["token"]
