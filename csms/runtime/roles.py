"""The scaled-out roles of ``csms serve``: what a gateway and a controller add to the parts they share.

``--role all`` (the default) is one process holding the stations and balancing them. ``--role gateway`` holds
the OCPP connections and turns them into station states on the bus (:class:`csms.bus.gateway.GatewayBridge`);
``--role controller`` mirrors those states, leads its share of the groups
(:class:`csms.cluster.leadership.LeaseManager`, a PostgreSQL lease per group, spread among the live controllers)
and drives their chargers through the bus (:class:`csms.bus.controller.ControllerBus`).

A controller's balancer and delivery see only **the part of the site it leads** (:func:`led_view`): gaining a
group puts its chargers and circuits in force as a config reload would, with each charger's live link attached;
losing one drops them, and from that instant no command for the group leaves (its fencing token is gone, and a
gateway refuses a deposed leader's older token anyway). Chargers in no group are led as one more lease,
:data:`UNGROUPED`, so that exactly one controller sets them up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any, Protocol

import psycopg

from csms.bus.controller import ControllerBus
from csms.bus.fencing import FenceBook
from csms.bus.gateway import GatewayBridge
from csms.cluster.lease import lease_ttl_for
from csms.cluster.leadership import LeaseManager
from csms.config import SiteConfig
from csms.domain.link import StationLink
from csms.domain.state import SiteState, Transaction
from csms.operations.port import StationCommander
from csms.runtime.aio import Wake, cancel_and_wait
from csms.storage import records
from csms.storage.database import Storage
from csms.storage.leases import LeaseStore

log = logging.getLogger("csms.runtime.roles")

ROLES = ("all", "gateway", "controller")
#: The lease of the chargers in no group (a group id no config can use: ids are checked against this form).
UNGROUPED = "(ungrouped)"


def role_problems(cfg: SiteConfig, role: str) -> list[str]:
    """What ``cfg`` lacks for ``role``, one line each naming the setting and the fix (empty: nothing)."""
    if role == "all":
        return []
    problems = []
    if cfg.mqtt is None:
        problems.append(f"mqtt: --role {role} talks to the other roles over MQTT: add an [mqtt] section "
                        "(host, port) naming the broker every node uses")
    if cfg.storage.url is None:
        problems.append(f'storage.url: --role {role} needs the PostgreSQL database every node shares '
                        '(storage.url = "postgresql://user@host/db"); a SQLite file belongs to one process')
    problems += [f"load_balancers.{i}.id: {g.id!r} is reserved for the chargers in no group; rename the group"
                 for i, g in enumerate(cfg.load_balancers) if g.id == UNGROUPED]
    return problems


def lease_key(group_id: str | None) -> str:
    return UNGROUPED if group_id is None else group_id


def led_view(cfg: SiteConfig, leading: Collection[str]) -> SiteConfig:
    """The site as far as a controller leading ``leading`` (lease keys) acts for it: those groups, their chargers
    (and the ungrouped ones under :data:`UNGROUPED`) and the circuits they hang from, with every other setting
    as configured."""
    groups = [g for g in cfg.load_balancers if g.id in leading]
    members = {cid for g in groups for cid in g.chargers}
    if UNGROUPED in leading:
        grouped = {cid for g in cfg.load_balancers for cid in g.chargers}
        members |= {c.id for c in cfg.chargers if c.id not in grouped}
    seeds = {cfg.circuit_of(cid) for cid in members} | {g.circuit for g in groups}
    circuits = {cid for seed in seeds if seed is not None for cid in cfg.circuit_path(seed)}
    return cfg.model_copy(update={
        "load_balancers": groups,
        "chargers": [c for c in cfg.chargers if c.id in members],
        "circuits": [c for c in cfg.circuits if c.id in circuits],
    })


class CentralSystemApp(Protocol):
    """What a role needs of the process it runs in (:class:`csms.runtime.app.CentralSystemApp`)."""

    cfg: SiteConfig
    clock: Callable[[], float]
    state: SiteState
    storage: Storage
    local_lists: Any   # csms.ocpp.local_lists.LocalLists
    commands: Any      # csms.ocpp.operator.OperatorCommands (a StationCommander, and its here())
    server: Any        # csms.ocpp.server.CentralSystem
    delivery: Any      # csms.smart_charging.delivery.Delivery
    caps: Any          # csms.runtime.operator_caps.OperatorCaps
    commissioning: Any  # csms.runtime.commissioning.Commissioning

    async def put_in_force(self, view: SiteConfig) -> None: ...


def _group_of(app: CentralSystemApp) -> Callable[[str], str | None]:
    def group_of(station_id: str) -> str | None:
        group = app.cfg.group_of(station_id)
        return group.id if group is not None else None
    return group_of


async def seed_fences(book: FenceBook, url: str | None, timeout: float) -> None:
    """Every group's current fencing token, read from its lease, raises ``book``'s mark before a command is taken:
    a gateway that has just (re)started has seen no command, and would otherwise run a deposed leader's until the
    new leader's first arrived. Best effort: without the database the marks are learnt from commands, as before."""
    if url is None:
        return
    try:
        store = await LeaseStore.open(url, timeout=timeout)
        try:
            rows = await store.leases()
        finally:
            await store.close()
    except (psycopg.Error, OSError) as exc:
        log.warning("the groups' fencing tokens could not be read from their leases (%s); this gateway learns them "
                    "from the controllers' commands", exc)
        return
    for row in rows:
        book.raise_to(None if row.group_id == UNGROUPED else row.group_id, row.token)
    log.info("fencing tokens from the leases: %s", ", ".join(f"{r.group_id} {r.token}" for r in rows) or "none yet")


class GatewayRole:
    """A gateway's bus side: each session's link is handed to the bridge once the station's running
    transactions are read from storage (it may have started them on another gateway)."""

    def __init__(self, app: CentralSystemApp):
        cfg = app.cfg
        self.app = app
        # The operator's commands a controller forwards run as this gateway's own (logged and stored here), and
        # never travel on; this gateway's own for a station it does not hold are relayed by a controller.
        self.bridge = GatewayBridge(cfg.mqtt, cfg.cluster, app.state, _group_of(app), clock=app.clock,
                                    on_superseded=self._superseded, operator=app.commands.here(),
                                    call_timeout=cfg.server.call_timeout)
        #: Where this gateway's operator's commands go for a station it does not hold.
        self.station_commands: StationCommander = self.bridge.relay
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await seed_fences(self.bridge.book, self.app.cfg.storage.url, self.app.cfg.storage.statement_timeout)
        await self.bridge.__aenter__()

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))
        await self.bridge.stop()

    def on_session(self, link: StationLink) -> None:
        task = asyncio.create_task(self._attach(link), name=f"gateway session {link.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(self, link: StationLink) -> None:
        try:
            rows = await self.app.storage.read(records.open_transactions_of(link.id))
        except Exception as exc:  # storage down: the station's own messages tell the rest
            log.warning("%s: its running transactions could not be read (%s); attached without them", link.id, exc)
            rows = []
        st = self.app.state.station(link.id)
        for row in rows:
            connector = row["connector_id"] or 0
            if connector not in st.transactions:  # what the station said here already is newer
                st.transactions[connector] = Transaction(row["transaction_id"], connector, row["id_token"],
                                                         row["started_at"], row["meter_start_wh"])
        self.bridge.attach(link)
        self.app.local_lists.attach(link.id)

    def status(self) -> dict[str, Any]:
        return {"groups": [], "stations": len(self.bridge.links), "nodes": {}}

    def _superseded(self, station_id: str) -> None:
        task = asyncio.create_task(self.app.server.close_station(station_id, "reconnected to another gateway"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class ControllerRole:
    """A controller's bus side and its leadership: puts in force the part of the site it leads. It holds no
    station sessions, so :attr:`station_commands` is where its operator's station commands go (the gateways)."""

    def __init__(self, app: CentralSystemApp):
        cfg = app.cfg
        self.app = app
        self.leases = LeaseManager(cfg.storage.url, cfg.cluster.node, on_gained=self._gained, on_lost=self._lost)
        self.bus = ControllerBus(cfg.mqtt, cfg.cluster, app.state, on_session=self._on_session,
                                 token_of=lambda group: self.leases.token(lease_key(group)),
                                 group_of=_group_of(app), on_fenced=self._fenced,
                                 groups=lambda: sorted(self.leases.leading()), call_timeout=cfg.server.call_timeout,
                                 clock=app.clock, operator=app.commands)
        #: Runs the operator's station commands on the gateway holding each station.
        self.station_commands: StationCommander = self.bus.operator
        #: The lease keys whose part of the site is in force now.
        self.in_force: frozenset[str] = frozenset()
        self._changed = Wake()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.bus.__aenter__()
        self.set_groups(self.app.cfg)
        await self.leases.start()
        self._task = asyncio.create_task(self._follow(), name="controller: the groups it leads")

    async def stop(self) -> None:
        await self.leases.stop()  # steps down and releases at once: another controller takes over now
        await cancel_and_wait([self._task] if self._task is not None else [])
        await self.bus.stop()

    def set_groups(self, cfg: SiteConfig) -> None:
        """Every group of ``cfg`` is tried for, each with a lease of 3/4 of its meter's ``stale_after``."""
        ttls = {g.id: lease_ttl_for(g.stale_after) for g in cfg.load_balancers}
        grouped = {cid for g in cfg.load_balancers for cid in g.chargers}
        keys = list(ttls) + ([UNGROUPED] if any(c.id not in grouped for c in cfg.chargers) else [])
        self.leases.set_groups(keys, ttls)
        self._changed.set()

    def status(self) -> dict[str, Any]:
        driven = sum(1 for cid, w in self.app.delivery.workers.items() if w.link is not None)
        return {"groups": sorted(self.leases.leading()), "stations": driven,
                "nodes": {name: info.online for name, info in self.bus.mirror.nodes.items()}}

    def view(self, cfg: SiteConfig) -> SiteConfig:
        return led_view(cfg, self.in_force)

    def _gained(self, group: str, token: int) -> None:
        log.info("group %s: leading it (token %d)", group, token)
        self._changed.set()

    def _lost(self, group: str, reason: str) -> None:
        log.warning("group %s: no longer leading it: %s", group, reason)
        self._changed.set()

    def _fenced(self, group: str | None) -> None:
        log.warning("group %s: a gateway has seen a newer leader; this controller's commands are refused",
                    lease_key(group))
        self._changed.set()

    def _on_session(self, link: StationLink) -> None:
        if link.id in self.app.delivery.channels:
            self.app.delivery.attach(link)

    async def _follow(self) -> None:
        """Puts in force what is led, each time that changes (one change at a time, never two at once)."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            leading = frozenset(self.leases.leading())
            if leading == self.in_force:
                continue
            gained = sorted(leading - self.in_force)
            self.in_force = leading
            try:  # the stored caps, as another node may have changed them
                await self.app.caps.refresh()
            except Exception as exc:  # storage away: those known now, and the next periodic refresh
                log.warning("operator caps not read again before leading %s: %s", ", ".join(sorted(leading)), exc)
            await self.app.put_in_force(self.view(self.app.cfg))
            for cid, worker in self.app.delivery.workers.items():
                link = self.bus.links.get(cid)
                if worker.link is None and link is not None and not link.closed:
                    self.app.delivery.attach(link)
            self.bus.announce()
            log.info("controller %s leads %s", self.bus.node, ", ".join(sorted(leading)) or "no group")
            try:  # a check the previous leader left running ended with it
                await self.app.commissioning.restore(gained)
            except Exception as exc:
                log.warning("commissioning checks of %s left running by the previous leader not marked interrupted: "
                            "%s", ", ".join(gained), exc)

    def leads(self, group_id: str) -> bool:
        """Whether this controller acts for ``group_id`` now: its part of the site is in force and its lease holds."""
        return group_id in self.in_force and self.leases.token(group_id) is not None
