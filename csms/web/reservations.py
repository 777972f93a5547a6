"""``GET /api/reservations[?station=ID&state=active&limit=N]``: the reservations made, newest first, each with
its state as it stands now (an active one past its expiry reads expired). Either token may read it."""

from __future__ import annotations

from aiohttp import web

from csms.domain.reservations import ReservationState
from csms.storage.reservations import listing

from .status import reservation
from .view import SiteView

ROUTE = "/api/reservations"
MAX_ROWS = 1000


def _refused(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400, headers={"Cache-Control": "no-store"})


class ReservationRoute:
    def __init__(self, view: SiteView):
        self.view = view

    async def handle(self, request: web.Request) -> web.Response:
        q = request.query
        state = None
        if q.get("state"):
            try:
                state = ReservationState(q["state"])
            except ValueError:
                return _refused(f"state={q['state']!r} is not one of {', '.join(s.value for s in ReservationState)}")
        try:
            limit = int(q.get("limit") or 200)
        except ValueError:
            return _refused(f"limit={q['limit']!r} is not a whole number")
        if not 1 <= limit <= MAX_ROWS:
            return _refused(f"limit must be between 1 and {MAX_ROWS}, not {limit}")
        rows = await self.view.storage.read(listing(self.view.clock(), q.get("station") or None, state, limit))
        return web.json_response({"reservations": [reservation(r) for r in rows]},
                                 headers={"Cache-Control": "no-store"})
