"""``csms serve`` put together: storage, live state, the OCPP server, meters, balancer and delivery.

:class:`CentralSystemApp` is an async context manager so that the demo and the tests run exactly
what ``csms serve`` runs, and every part is shut down in reverse order (sessions closed, meters
stopped, storage flushed) however the block is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meter_gateway.config import MeterConfig
from meter_gateway.gateway import MeterGateway
from meter_gateway.reading import MeterReading, MeterState
from meter_gateway.subscriber import ReadingSubscriber

from csms.balancer.controller import BalancerController
from csms.balancer.model import Decision
from csms.balancer.ports import DecisionOutbox
from csms.config import ConfigDiff, SiteConfig
from csms.domain.authorization import Authorizer
from csms.domain.link import StationLink
from csms.domain.state import MaintenanceStatus, SiteState, Transaction
from csms.ocpp.context import SessionContext
from csms.ocpp.counts import MessageCounts
from csms.ocpp.local_lists import LocalLists
from csms.ocpp.operator import OperatorCommands
from csms.ocpp.reservation_book import ReservationBook
from csms.ocpp.reservations import ReservationCommands
from csms.ocpp.server import CentralSystem
from csms.operations.upload_grants import UploadGrants
from csms.runtime.commissioning import Commissioning
from csms.runtime.tokens import TokenBook
from csms.runtime.operator_caps import OperatorCaps
from csms.runtime.reload import ConfigReloader
from csms.runtime.wiring_watch import WiringWatch
from csms.smart_charging.delivery import Delivery
from csms.storage import records
from csms.storage.database import Storage
from csms.storage.readings import ReadingRecorder
from csms.storage.records import log_event
from csms.web.view import SiteView

if TYPE_CHECKING:
    from csms.runtime.roles import ControllerRole, GatewayRole

log = logging.getLogger("csms.runtime.app")


def _roles() -> Any:
    """The scaled-out roles (:mod:`csms.runtime.roles`), loaded by a gateway or a controller only: they bring
    psycopg, the PostgreSQL leases and the bus along, 10 MB of a one-process server's memory."""
    from csms.runtime import roles
    return roles


class CentralSystemApp:
    """``config_path`` is the file ``cfg`` was read from (with its SHA-256, ``digest``): what a reload reads again."""

    def __init__(self, cfg: SiteConfig, clock: Callable[[], float] = time.time, *,
                 config_path: str | Path | None = None, digest: str = "", role: str = "all"):
        self.cfg = cfg
        #: "all", "gateway" or "controller" (see :mod:`csms.runtime.roles`).
        self.role = role
        self.holds_stations = role in ("all", "gateway")
        self.balances = role in ("all", "controller")
        self.clock = clock
        self.state = SiteState()
        self.storage = Storage(cfg.storage.target, cfg.storage.commit_interval,
                               statement_timeout=cfg.storage.statement_timeout)
        #: Each configured station's organisation: one dict shared by the parts that look stations up (local
        #: lists, operator commands, reservations, uploads), kept current by :meth:`apply_config`.
        self.station_orgs: dict[str, str] = {c.id: c.organisation for c in cfg.chargers}
        #: Reads the config file again on ``csms reload`` or SIGHUP (:meth:`apply_config` puts it in force).
        self.reloader = ConfigReloader(self, config_path, digest, self.storage, clock)
        #: Reservations made by the operator, used up by the stations' starts.
        self.reservations = ReservationBook(self.storage, clock)
        self.ctx = SessionContext(cfg, self.state, self.storage, Authorizer(cfg, self.state), clock,
                                  self.reservations)
        #: The operator's id tokens: list/get/put/block/unblock/delete (what the HTTP API and CLI call).
        self.tokens = TokenBook(self.ctx.authorizer, self.storage, clock)
        decisions = DecisionOutbox()
        # A controller starts with nothing led and a gateway balances nothing: their balancer sees an empty site.
        view = cfg if role == "all" else _roles().led_view(cfg, ())
        self.balancer = BalancerController(view, self.state, decisions, self, clock)
        self.delivery = Delivery(view, self.state, decisions, self.balancer, self.storage, clock=clock)
        self.messages = MessageCounts()  # every OCPP call handled or sent, by outcome (the operator's /metrics)
        #: The operator's caps on chargers' limits: an input of the balancer, kept over a restart.
        self.caps = OperatorCaps(cfg, self.balancer, self.storage, clock)  # the whole site: any node takes a cap
        self.server = CentralSystem(self.ctx, on_session=self._session_started, observe=self.messages)
        #: Local authorization lists sent to stations, kept in step with the tokens.
        self.local_lists = LocalLists(self.server.sessions, self.station_orgs,
                                      self.ctx.authorizer.entries, self.storage, clock, cfg.server.call_timeout)
        self.tokens.observers.append(self.local_lists.tokens_changed)
        #: Secret upload URLs for get-logs (the HTTP server receives the files); none without [http].
        self.uploads = UploadGrants(clock, cfg.http.upload_ttl) if cfg.http is not None else None
        #: The operator's commands to stations (the write API's port).
        self.commands = OperatorCommands(self.server.sessions, self.station_orgs, self.storage, clock,
                                         cfg.server.call_timeout, self.uploads, self.local_lists,
                                         ReservationCommands(self.reservations, self.ctx.authorizer.entry,
                                                             self.station_orgs, clock,
                                                             cfg.server.call_timeout),
                                         self.caps)
        #: Commissioning checks (``csms commission``): one charger at a time released, the others held by caps.
        self.commissioning = Commissioning(lambda: self.cfg, self.state, self.caps, self.delivery.channels,
                                           self.commands, self.storage, clock, leads=self._leads)
        #: The passive check: warns when normal charging contradicts the config's wiring (``wiring_warning``).
        self.wiring_watch = WiringWatch(lambda: self.cfg, self.state, self.delivery.channels, self.storage, clock)
        self.meters: MeterGateway | ReadingSubscriber | None = None
        #: Bumped when a reload replaces the meter source: the old one's last words (offline as it stops) are
        #: not news about meters the new one reads.
        self._meter_generation = 0
        self.meter_states: dict[str, MeterState] = {}
        self.last_readings: dict[str, MeterReading] = {}
        self.readings = ReadingRecorder(self.storage, clock)
        self.web = None  # the operator view (csms.web.WebServer) when [http] is configured
        #: The bus side of a gateway or a controller (None: one process does it all).
        self.cluster: GatewayRole | ControllerRole | None = (
            _roles().GatewayRole(self) if role == "gateway" else
            _roles().ControllerRole(self) if role == "controller" else None)
        if self.cluster is not None:  # a controller holds no sessions; a gateway, only its own stations'
            self.commands.forward = self.cluster.station_commands
        self._stack = contextlib.AsyncExitStack()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def http_port(self) -> int | None:
        """The operator view's port, or None when the config has no [http] section."""
        return self.web.port if self.web is not None else None

    async def __aenter__(self) -> "CentralSystemApp":
        try:
            await self._stack.enter_async_context(self.storage)
            self._stack.callback(self.readings.flush)
            await self._restore()
            self._stack.push_async_callback(self.local_lists.stop)
            if self.role == "all":  # a check holds a whole group's chargers: one process must hold them all
                await self.commissioning.restore()
            if self.balances:
                self.wiring_watch.start()
                self._stack.callback(self.wiring_watch.stop)
                await self.balancer.start()
                self._stack.push_async_callback(self.balancer.stop)
                self._stack.push_async_callback(self.delivery.stop)
                self._stack.push_async_callback(self._close_meters)
                await self._switch_meters(self._meter_source(self.cfg))
            if self.cluster is not None:
                await self.cluster.start()
                self._stack.push_async_callback(self.cluster.stop)
                self.caps.start_refreshing()  # the operator may change a cap on any node
                self._stack.push_async_callback(self.caps.stop)
            if self.holds_stations:
                await self.server.start()
                self._stack.push_async_callback(self.server.stop)
            self._stack.push_async_callback(self.commissioning.stop)  # lifts its caps while chargers are still here
            if self.cfg.http is not None:
                from csms.web.server import WebServer  # aiohttp only when the operator view is on

                self.web = WebServer(self.site_view(), self.cfg.http)
                await self.web.start()
                self._stack.push_async_callback(self.web.stop)
                if self.uploads is not None:
                    self.uploads.base_url = self.cfg.http.upload_base(self.web.port)
            self._stack.push_async_callback(self.reloader.stop)
            self.storage.write_nowait(log_event("csms_started", self.clock(), config=self.reloader.version.label))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @staticmethod
    def _used_meters(cfg: SiteConfig) -> list[MeterConfig]:
        used = {g.meter for g in cfg.load_balancers if g.meter is not None}
        used |= {c.meter for c in cfg.circuits if c.meter is not None}  # a sub-board's own meter
        return [m for m in cfg.meters if m.serial in used]

    def _meter_source(self, cfg: SiteConfig) -> MeterGateway | ReadingSubscriber | None:
        """The source of the meters ``cfg``'s groups use (None when none does), built but not started: a
        register map it cannot load raises here, before a reload has changed anything.

        Its callbacks count from :meth:`_switch_meters`, which makes it the current source. A meter the previous
        source had online stays online through the handover: the new source's first word on it, "no reading
        yet", is not passed on, nor is "online" again (its own timer reports the meter stale if no reading comes
        within stale_after)."""
        meters = self._used_meters(cfg)
        if not meters:
            return None
        generation = self._meter_generation + 1
        announced: set[str] = set()

        def on_reading(reading: MeterReading) -> None:
            if generation == self._meter_generation:
                self._on_reading(reading)

        def on_state(serial: str, state: MeterState) -> None:
            if generation != self._meter_generation:
                return
            first = serial not in announced
            announced.add(serial)
            previous = self.meter_states.get(serial)
            if previous is not None and previous.status == "online" and (first or state.status == "online"):
                return  # the handover's "no reading yet", or "online" again once the new source reads it
            self._on_meter_state(serial, state)

        if cfg.gateway.mode == "mqtt":
            return ReadingSubscriber(cfg.mqtt, [m.serial for m in meters], on_reading, on_state,
                                     {m.serial: m.stale_after for m in meters}, clock=self.clock)
        return MeterGateway(meters, cfg.mqtt, on_reading, on_state, cfg.gateway.register_dirs, clock=self.clock)

    async def _switch_meters(self, source: MeterGateway | ReadingSubscriber | None) -> None:
        """Makes ``source`` (from :meth:`_meter_source`) the current one and starts it; the previous source's
        callbacks count no more, and it is stopped once the new one runs."""
        old, self.meters = self.meters, source
        self._meter_generation += 1
        if source is not None:
            await source.__aenter__()
        if old is not None:
            await old.__aexit__(None, None, None)

    async def _close_meters(self) -> None:
        source, self.meters = self.meters, None
        if source is not None:
            await source.__aexit__(None, None, None)

    async def apply_config(self, new: SiteConfig, diff: ConfigDiff) -> None:
        """Puts a validated config in force as a diff (see :mod:`csms.runtime.reload`): each part takes what
        changed, and nothing else is touched, so an unchanged charger keeps its connection and its session.

        The balancer goes first, so that a new charger has a group task and a channel before it can connect;
        the password table last but one, so that it is let in only then; a removed charger's session is closed
        last (its records, its transactions and the fallback profile it holds all stay). The meter source is
        replaced only when the meters the groups read changed: the new one starts before the old one stops.
        """
        meters_changed = self.balances and self._used_meters(new) != self._used_meters(self.cfg)
        meters = self._meter_source(new) if meters_changed else None  # may raise: nothing has changed yet
        self.cfg = self.ctx.cfg = new
        self.ctx.authorizer.apply_config(new)
        self.station_orgs.clear()
        self.station_orgs.update({c.id: c.organisation for c in new.chargers})
        if self.role == "controller":
            self.cluster.set_groups(new)
            await self.put_in_force(self.cluster.view(new))
        elif self.role == "all":
            await self.put_in_force(new)
        self.server.set_passwords({c.id: c.password for c in new.chargers})
        for cid in diff.chargers.removed:
            await self.server.close_station(cid, "removed from the site config")
        if meters_changed:
            await self._switch_meters(meters)

    async def put_in_force(self, view: SiteConfig) -> None:
        """The part of the site this process balances (the whole site, or what a controller leads) takes
        effect: the balancer first, so that a new charger has a group task before its channel sends."""
        await self.balancer.apply_config(view)
        self.caps.apply_config(self.cfg)
        for cid in self.delivery.apply_config(view):
            log.info("%s: its settings or its group's changed; setting it up again on its connection", cid)

    def _session_started(self, link: StationLink) -> None:
        if self.role == "gateway":
            self.cluster.on_session(link)
            return
        self.delivery.attach(link)
        self.local_lists.attach(link.id)

    def _on_reading(self, reading: MeterReading) -> None:
        # The balancer first: a reading may say a fuse is over, and the others only look on.
        self.balancer.on_reading(reading.serial, reading.current, frozenset(reading.saturated_phases),
                                 reading.taken_at)
        self.last_readings[reading.serial] = reading
        self.commissioning.on_reading(reading)
        self.wiring_watch.on_reading(reading)
        self.readings.add(reading.serial, reading.taken_at, reading.current)

    def meter_refusals(self, serial: str) -> dict[str, int]:
        """Readings of meter ``serial`` refused so far, by reason (empty when no group reads the meter)."""
        if self.meters is None:
            return {}
        try:
            return self.meters.refusals(serial)
        except KeyError:
            return {}

    def site_view(self) -> SiteView:
        """What the operator view may read of this central system (see :mod:`csms.web.view`)."""
        return SiteView(config=lambda: self.cfg, clock=self.clock, state=self.state, storage=self.storage,
                        channels=self.delivery.channels, meter_states=self.meter_states,
                        last_readings=self.last_readings, meter_refusals=self.meter_refusals,
                        decision=self.balancer.decision, explain=self.balancer.explain,
                        run_observers=self.balancer.run_observers,
                        message_counts=self.messages.counts, commands=self.commands, tokens=self.tokens,
                        uploads=self.uploads, reservations=self.reservations.of_station,
                        operator_cap=self.caps.cap, config_status=self.reloader.status,
                        reload=self.reloader.reload,
                        commissioning=self.commissioning if self.balances else None,
                        wiring_warnings=self.wiring_watch.warnings, node=self.node_status)

    def _leads(self, group_id: str) -> bool:
        """Whether this process balances ``group_id`` now (one process: every group; a controller: those it leads)."""
        return self.role != "controller" or self.cluster.leads(group_id)

    def node_status(self) -> dict[str, Any]:
        """This process in a deployment: its role, node name, the groups it balances, the stations it holds
        (a gateway, or one process) or drives (a controller), and the nodes it hears of on the bus."""
        if self.cluster is None:
            return {"role": "all", "node": None, "groups": [g.id for g in self.cfg.load_balancers],
                    "stations": sum(1 for s in self.state.stations.values() if s.connected), "nodes": {}}
        return {"role": self.role, "node": self.cfg.cluster.node, **self.cluster.status()}

    def _on_meter_state(self, serial: str, state: MeterState) -> None:
        self.meter_states[serial] = state
        self.balancer.on_meter_state(serial, state.status == "online")
        self.storage.write_nowait(log_event(f"meter_{state.status}", self.clock(), meter=serial, reason=state.reason))

    def record_decision(self, decision: Decision) -> None:
        """DecisionStore for the balancer: every decision with its per-charger reasons."""
        def limits() -> dict:  # a decision is immutable: read on the storage thread
            return {cid: {"limit": lim.limit, "phases": list(lim.phases), "reason": lim.reason,
                          "controlled": lim.controlled, "counted": lim.counted}
                    for cid, lim in decision.limits.items()}
        self.storage.write_nowait(records.record_decision(decision.group_id, decision.at, decision.meter_fresh,
                                                          decision.budget, limits), "decision")

    async def _restore(self) -> None:
        """Brings back what a restart must not forget: transactions that were running, id tokens changed, the
        local lists stations hold, the operator's caps, and each station's latest firmware and log status (the
        operator view shows them). A controller restores only the caps (its stations' state comes from the bus),
        and only a process that holds every station marks them all disconnected."""
        if self.holds_stations:
            await self._restore_stations()
        if self.balances:
            caps = await self.caps.restore()
            if caps:
                log.info("restored %d operator cap(s) from storage", caps)
        else:  # a gateway shows them in its operator view
            await self.caps.refresh()

    async def _restore_stations(self) -> None:
        changed = await self.tokens.load()
        await self.local_lists.load()
        await self.reservations.load()
        if changed:
            log.info("restored %d id token change(s) from storage", changed)
        rows = await self.storage.read(records.open_transactions)
        for row in rows:
            tx = Transaction(row["transaction_id"], row["connector_id"] or 0, row["id_token"], row["started_at"],
                             row["meter_start_wh"])
            self.state.station(row["station_id"]).transactions[tx.connector_id] = tx
        for row in await self.storage.read(records.latest_maintenance):
            self.state.station(row["station_id"]).maintenance[row["kind"]] = MaintenanceStatus(
                row["status"], row["at"], row["request_id"])
        if self.role == "all":  # stations are all disconnected until they reconnect (other gateways hold theirs)
            await self.storage.write(lambda db: db.execute("UPDATE stations SET connected = 0"))
        if rows:
            log.info("restored %d running transaction(s) from storage", len(rows))


async def serve_until_signalled(cfg: SiteConfig, config_path: str | Path | None = None, digest: str = "",
                                role: str = "all") -> int:
    """Runs the central system until SIGINT/SIGTERM, then shuts down cleanly; returns the exit code. SIGHUP
    reloads ``config_path`` (see :mod:`csms.runtime.reload`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Until everything runs, a SIGHUP (whose default is to end the process) is only logged.
    loop.add_signal_handler(signal.SIGHUP, log.warning, "SIGHUP ignored: the central system is still starting")
    async with CentralSystemApp(cfg, config_path=config_path, digest=digest, role=role) as app:
        loop.add_signal_handler(signal.SIGHUP, app.reloader.request, "SIGHUP")
        where = f"on port {app.port}" if app.holds_stations else "with no OCPP port (a controller)"
        log.info("central system (role %s) running %s (config version %s); Ctrl-C to stop, SIGHUP or "
                 "`csms reload` to reload the config", role, where, app.reloader.version.label)
        try:
            await stop.wait()
        finally:
            loop.add_signal_handler(signal.SIGHUP, log.warning, "SIGHUP ignored: the central system is stopping")
        log.info("stopping")
    return 0
