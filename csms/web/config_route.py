"""``POST /api/config/reload``: the config file read again and put in force whole or not at all.

The central system reloads the file it was started with (never a path from the request: the write API must
not be a way to read arbitrary files). 200 with ``outcome: applied`` and what changed, or 422 with
``outcome: refused`` and every problem as ``FILE: field: message`` (what ``csms check-config`` prints); the
config in force then stays. Needs the operator token, as every write.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from aiohttp import web

from .operator import who
from .view import SiteView

ROUTE = "/api/config/reload"


class ConfiguredStations(Collection[str]):
    """The station ids of the config in force, read at each use (a reload adds and removes stations)."""

    def __init__(self, view: SiteView):
        self.view = view

    def __contains__(self, station_id: object) -> bool:
        return isinstance(station_id, str) and self.view.cfg.charger(station_id) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([c.id for c in self.view.cfg.chargers])

    def __len__(self) -> int:
        return len(self.view.cfg.chargers)


class ReloadRoute:
    def __init__(self, view: SiteView):
        self.view = view

    async def handle(self, request: web.Request) -> web.Response:
        if self.view.reload is None:
            return web.json_response({"error": "this central system cannot reload its config"}, status=501)
        result = await self.view.reload(who(request))
        return web.json_response(result.as_json(), status=200 if result.applied else 422)
