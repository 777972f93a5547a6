"""The commissioning check from the operator API: start one (operator token), read its report.

``POST /api/groups/{group_id}/commission`` starts a check in the central system and answers 202 at once with
the report's id (a check takes one to two minutes); ``GET /api/commissioning/{id}`` reads it (``state`` running
until it ends, then done with the report); ``GET /api/commissioning`` lists the latest. ``csms commission`` is
a client of these routes.
"""

from __future__ import annotations

from aiohttp import web

from csms.commissioning.port import CheckRefused

from .operator import who
from .view import SiteView

START_ROUTE = "/api/groups/{group_id}/commission"
LIST_ROUTE = "/api/commissioning"
REPORT_ROUTE = "/api/commissioning/{report_id}"


class CommissioningRoutes:
    def __init__(self, view: SiteView):
        self.view = view

    def routes(self) -> list[web.RouteDef]:
        return [web.post(START_ROUTE, self.start), web.get(LIST_ROUTE, self.list),
                web.get(REPORT_ROUTE, self.report)]

    def _off(self) -> web.Response:
        return web.json_response({"error": "a gateway runs no commissioning checks: use the HTTP API of the controller "
                                           "that leads the group (GET /api/status on each lists its node.groups)"},
                                 status=501)

    async def start(self, request: web.Request) -> web.Response:
        port = self.view.commissioning
        if port is None:
            return self._off()
        group = request.match_info["group_id"]
        try:
            report_id = await port.start(group, who(request))
        except CheckRefused as exc:
            return web.json_response({"error": str(exc)}, status=exc.status)
        return web.json_response({"id": report_id, "group": group, "state": "running",
                                  "report": f"{LIST_ROUTE}/{report_id}"}, status=202)

    async def list(self, request: web.Request) -> web.Response:
        port = self.view.commissioning
        if port is None:
            return self._off()
        raw = request.query.get("limit") or "20"
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            return web.json_response({"error": "limit must be a whole number between 1 and 1000"}, status=400)
        return web.json_response(await port.reports(request.query.get("group") or None, int(raw)))

    async def report(self, request: web.Request) -> web.Response:
        port = self.view.commissioning
        if port is None:
            return self._off()
        raw = request.match_info["report_id"]
        found = await port.report(int(raw)) if raw.isdigit() else None
        if found is None:
            return web.json_response({"error": f"no commissioning report {raw!r}; GET {LIST_ROUTE} lists them"},
                                     status=404)
        return web.json_response(found)
