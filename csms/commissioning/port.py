"""The port through which the operator view starts a commissioning check and reads its reports.

:class:`csms.runtime.commissioning.Commissioning` implements it; the web layer sees only this, never the runtime.
"""

from __future__ import annotations

from typing import Any, Protocol


class CheckRefused(Exception):
    """A check that cannot start; ``status`` is the HTTP status that says why (404 unknown group, 409 a check
    already running, 422 a group that cannot be checked)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Commissioner(Protocol):
    async def start(self, group_id: str, by: str) -> int:
        """Starts a check of ``group_id`` in the background and returns its report id; raises CheckRefused."""
        ...

    async def report(self, report_id: int) -> dict[str, Any] | None:
        """The stored report (``state`` running, done, failed, cancelled or interrupted), None if unknown."""
        ...

    async def reports(self, group_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest reports, newest first."""
        ...
