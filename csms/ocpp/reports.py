"""Reports a station sends after answering a request (2.0.1 ReportChargingProfiles for GetChargingProfiles),
gathered for whoever asked, by the request's ``requestId``.

The station answers the request first (Accepted / NoProfiles) and then sends one report per EVSE and limit
source, the last with ``tbc`` false. An operator command registers its requestId before it sends the request
(:meth:`Reports.expect`: a report may overtake the reply's processing), and waits a bounded time for the last one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from csms.ocpp import frames
from csms.runtime.aio import wait_event


class Collected:
    """The reports of one request so far; ``done`` once the one with ``tbc`` false arrived."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.done = asyncio.Event()

    async def collected(self, timeout: float) -> dict[str, Any]:
        """Waits up to ``timeout`` s for the last report; the reports as received (camelCase) and whether all came."""
        await wait_event(self.done, timeout)
        return {"reports": list(self.reports), "complete": self.done.is_set()}


class Reports:
    """The requests of one session that await reports."""

    #: At most this many reports are kept per request (a station cannot fill memory with them).
    MAX_REPORTS = 100

    # One per connected station, and almost always waiting for nothing: no dict until a request waits.
    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[int, Collected] | None = None

    def expect(self, request_id: int) -> Collected:
        if self._waiting is None:
            self._waiting = {}
        collected = self._waiting[request_id] = Collected()
        return collected

    def forget(self, request_id: int) -> None:
        if self._waiting is not None:
            self._waiting.pop(request_id, None)
            if not self._waiting:
                self._waiting = None

    def add(self, request_id: int, report: dict[str, Any], tbc: bool) -> bool:
        """A report arrived (snake_case keys, as handlers get them); False when nobody waits for it."""
        collected = self._waiting.get(request_id) if self._waiting is not None else None
        if collected is None:
            return False
        if len(collected.reports) < self.MAX_REPORTS:
            collected.reports.append(frames.to_payload(report))
        if not tbc:
            collected.done.set()
        return True
