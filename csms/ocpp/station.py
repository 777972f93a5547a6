"""One station's live session, composed: a connection, the version's inbound handlers, its commands.

Nothing here knows a version: :data:`VERSIONS` names, for each, the handler class, the command class,
the ``ocpp`` package's reply dataclasses and the actions the version defines.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ocpp.v16 import call_result as call_result_16
from ocpp.v201 import call_result as call_result_201

from csms.domain.state import Version
from csms.ocpp.commands import Commands
from csms.ocpp.connection import Connection, Ended, MessageObserver, Socket
from csms.ocpp.context import SessionContext
from csms.ocpp.inbound import Inbound
from csms.ocpp.protocol import Protocol
from csms.ocpp.reports import Reports
from csms.ocpp.routing import routes_of, validation_of
from csms.ocpp.schemas import validator_for
from csms.ocpp.v16.commands import Commands16
from csms.ocpp.v16.inbound import KNOWN_ACTIONS as KNOWN_16, Inbound16
from csms.ocpp.v201.commands import Commands201
from csms.ocpp.v201.inbound import KNOWN_ACTIONS as KNOWN_201, Inbound201
from csms.runtime.aio import Flag
from csms.storage.records import log_event


@dataclass(frozen=True)
class VersionSpec:
    schemas: str                 # the ``ocpp`` package's name for the version ("1.6", "2.0.1")
    inbound: type[Inbound]
    commands: type[Commands]
    call_results: ModuleType
    known_actions: frozenset[str]


#: What a station cannot do, before it has said so: one empty set shared by every session (each would be 216 bytes).
NOTHING: frozenset[str] = frozenset()

VERSIONS = {
    Version.V16: VersionSpec("1.6", Inbound16, Commands16, call_result_16, KNOWN_16),
    Version.V201: VersionSpec("2.0.1", Inbound201, Commands201, call_result_201, KNOWN_201),
}


class Station:
    """A connected station: what the rest of the central system sees of its session.

    ``link`` is its :class:`csms.domain.link.StationLink` (what the delivery drives); ``ready`` is set once it may
    be set up: its BootNotification was accepted, or it sent another message first (it had booted before
    this connection, e.g. the central system restarted). ``boots`` counts accepted boots on this
    connection; a second one is a reboot, after which the delivery sets the station up again.
    """

    # One per connected station: no per-instance dict (``__weakref__``: the local lists keep sessions weakly).
    __slots__ = ("id", "version", "ctx", "ready", "ready_reason", "boots", "unsupported", "reports", "inbound",
                 "connection", "link", "__weakref__")

    def __init__(self, station_id: str, socket: Socket, version: Version, ctx: SessionContext,
                 observe: MessageObserver | None = None):
        spec = VERSIONS[version]
        server = ctx.cfg.server
        self.id = station_id
        self.version = version
        self.ctx = ctx
        self.ready = Flag()
        self.ready_reason = ""
        self.boots = 0
        #: Commands this station answered "not implemented/supported" on this connection (replaced, not changed).
        self.unsupported = NOTHING
        #: Operator requests awaiting the reports the station sends after its answer (GetChargingProfiles).
        self.reports = Reports()
        self.inbound = spec.inbound(self, ctx)
        routes = routes_of(spec.inbound)
        protocol = Protocol(version, validator_for(spec.schemas), validation_of(spec.inbound), spec.known_actions)
        self.connection = Connection(station_id, socket, protocol, self.inbound, routes, spec.call_results,
                                     timeout=server.call_timeout, rate=server.rate_limit, burst=server.rate_burst,
                                     observe=observe, on_answered=self._answered)
        self.link = spec.commands(self, server.call_timeout)

    @property
    def throttled(self) -> int:
        """Frames this station had to wait for because it sent faster than the rate limit."""
        return self.connection.throttled

    async def call(self, payload: Any, skip_schema_validation: bool = False, timeout: float | None = None) -> Any:
        """Sends a command (an ``ocpp`` call dataclass) and returns the reply (see :meth:`Connection.call`)."""
        return await self.connection.call(payload, skip_schema_validation, timeout)

    def start(self, ended: Ended) -> None:
        """Serves the station from now until its socket closes, then calls ``ended`` (see :meth:`Connection.start`)."""
        self.connection.start(ended)

    async def close(self, code: int, reason: str) -> None:
        await self.connection.socket.close(code, reason)

    def boot_answered(self) -> None:
        """The BootNotification's Accepted reply went out. A reboot on the same connection forgets what the
        station could not do (its firmware may have changed)."""
        self.boots += 1
        self.unsupported = NOTHING
        self.ready_reason = "boot accepted" if self.boots == 1 else "rebooted"
        self.ready.set()

    def _answered(self, action: str) -> None:
        """A message other than BootNotification before any boot on this connection: the station had booted
        before it (re)connected, so it is registered and may be set up."""
        if not self.ready.is_set() and action != "BootNotification":
            self.ready_reason = f"first message {action} (booted before this connection)"
            self.ready.set()

    def log_event(self, kind: str, **detail: Any) -> None:
        """An entry in the event log; not awaited (nothing a station is told depends on it)."""
        self.ctx.storage.write_nowait(log_event(kind, self.ctx.clock(), station_id=self.id, **detail))

