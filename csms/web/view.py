"""What the operator view reads of the running central system, and nothing more.

:class:`csms.runtime.app.CentralSystemApp` builds a :class:`SiteView` and hands it to the web server instead of
itself, so the web layer can neither reach into the OCPP server, the delivery or the balancer's workings
nor import :mod:`csms.runtime.app` (the app imports the web layer, never the other way round). Every field is
something a status answer, a history query or a metric reads, except :attr:`SiteView.commands`: the one port
through which the write API acts, and only with the operator's commands (:mod:`csms.operations`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from meter_gateway.reading import MeterReading, MeterState

from csms.balancer.model import ControlState, Decision
from csms.commissioning.port import Commissioner
from csms.config import ReloadResult, SiteConfig
from csms.domain.reservations import Reservation
from csms.domain.state import SiteState
from csms.operations.caps import OperatorCap
from csms.operations.port import StationCommander, TokenAdmin
from csms.operations.upload_grants import UploadGrants
from csms.storage.sql import Db

T = TypeVar("T")


class HistoryReader(Protocol):
    """Storage as the operator view uses it: reads only (:meth:`csms.storage.database.Storage.read`)."""

    async def read(self, fn: Callable[[Db], T]) -> T: ...


class ChannelView(Protocol):
    """A charger's delivery channel as the operator view shows it (read, never changed)."""

    control: ControlState
    control_reason: str
    fallback_installed: bool
    in_force: float | None
    sent: int
    accepted: int
    rejected: int


@dataclass(frozen=True)
class SiteView:
    """The live state, the history reader and the balancer's latest decisions, for the operator view."""

    #: The config in force (a reload replaces it: read it through :attr:`cfg` at each use, never keep it).
    config: Callable[[], SiteConfig]
    clock: Callable[[], float]
    state: SiteState
    storage: HistoryReader
    #: Delivery channels by charger id (the delivery's own dict, so it is always current).
    channels: Mapping[str, ChannelView]
    meter_states: Mapping[str, MeterState]
    last_readings: Mapping[str, MeterReading]
    #: Readings of a meter refused so far, by reason.
    meter_refusals: Callable[[str], dict[str, int]]
    #: The group's latest balancing decision, or None before its first.
    decision: Callable[[str], Decision | None]
    #: Why a charger has the limit it has, in words.
    explain: Callable[[str], str]
    #: Called with (group id, seconds) after every balancer run; ``/metrics`` times runs through it.
    run_observers: list[Callable[[str, float], None]]
    #: OCPP calls handled (in) and sent (out) so far, by (direction, action, outcome).
    message_counts: Mapping[tuple[str, str, str], int]
    #: Sends the operator's commands to stations (the write API); None: the view is read-only.
    commands: StationCommander | None = None
    #: The id tokens the write API changes; None: none to manage.
    tokens: TokenAdmin | None = None
    #: Checks the secret upload URLs chargers send their log files to (None: uploads are refused).
    uploads: UploadGrants | None = None
    #: A station's reservations in force now; None: none kept.
    reservations: Callable[[str], list[Reservation]] | None = None
    #: The operator's cap in force on a charger (None: none).
    operator_cap: Callable[[str], OperatorCap | None] = lambda station_id: None
    #: The config version in force and the latest refused reload (see :meth:`ConfigReloader.status`).
    config_status: Callable[[], dict[str, object]] | None = None
    #: Reads the config file again and puts it in force whole or not at all (the write API's reload); None: off.
    reload: Callable[[str], Awaitable[ReloadResult]] | None = None
    #: Starts commissioning checks and reads their reports; None: off.
    commissioning: Commissioner | None = None
    #: A group's current passive wiring findings (the ``wiring_warning`` events still in force).
    wiring_warnings: Callable[[str], list[dict[str, Any]]] = lambda group_id: []
    #: This process's part in a scaled-out deployment: {"role", "node", "groups" it balances, "stations" it
    #: holds or drives, "nodes" it hears of on the bus}; see :meth:`csms.runtime.app.CentralSystemApp.node_status`.
    node: Callable[[], dict[str, Any]] = lambda: {"role": "all", "node": None, "groups": [], "stations": 0,
                                                  "nodes": {}}

    @property
    def cfg(self) -> SiteConfig:
        """The config in force now."""
        return self.config()
