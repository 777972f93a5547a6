"""The port through which the operator's cap commands reach the balancer, and what they answer.

An operator cap is an upper bound on one charger's limit inside what the fuse allows (see
:mod:`csms.balancer.operator_cap`). :class:`CapKeeper` is all :mod:`csms.ocpp.operator` and the operator view
see of it: they never import the balancer. :class:`csms.runtime.operator_caps.OperatorCaps` implements it
(the balancer's input, the table that keeps caps over a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol


def iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class OperatorCap:
    """One charger's cap: ``limit`` A per phase until ``until`` (our clock; None: until cleared)."""

    station_id: str
    limit: float
    until: float | None
    set_at: float
    by: str

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "until": iso(self.until), "setAt": iso(self.set_at), "by": self.by}


@dataclass(frozen=True)
class Allowed:
    """What the balancer allows the charger after a change of its cap: its latest decision for it."""

    limit: float | None
    reason: str
    controlled: bool | None

    def as_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "reason": self.reason, "controlled": self.controlled}


class CapKeeper(Protocol):
    def cap(self, station_id: str) -> OperatorCap | None:
        """The cap in force on the station (None: none, or lapsed)."""
        ...

    async def set_cap(self, station_id: str, limit: float, until: float | None, connector: int | None,
                      by: str) -> tuple[OperatorCap, Allowed]:
        """Sets (replaces) the station's cap and returns it with what the balancer now allows. Raises
        :class:`~.results.NotBalanced` or :class:`~.results.BadArguments` (a connector it does not control)."""
        ...

    async def clear_cap(self, station_id: str, connector: int | None, by: str) -> tuple[OperatorCap | None, Allowed]:
        """Lifts the station's cap; returns the cap lifted (None: there was none) and what is allowed now."""
        ...
