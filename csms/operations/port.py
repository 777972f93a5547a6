"""The port through which the operator's HTTP API reaches stations: one method, nothing else of the app.

:class:`csms.ocpp.operator.OperatorCommands` implements it; the web layer gets it in its
:class:`csms.web.view.SiteView`, so it can send the commands of :mod:`.catalogue` and nothing more (no
profiles of the operator's: the balancer alone decides what a charger may draw, and an operator's cap is one of
its inputs, reached through :class:`csms.operations.caps.CapKeeper`).
"""

from __future__ import annotations

from typing import Any, Protocol

from .results import CommandResult


class StationCommander(Protocol):
    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        """Sends ``command`` with ``body`` (its JSON arguments) to the station and returns its answer.

        ``by`` says who asked ("api 10.0.0.5", "cli") for the event log. Raises a
        :class:`~.results.CommandError` subclass when there is no answer to give."""
        ...
