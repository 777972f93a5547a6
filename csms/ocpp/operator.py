"""Sends the operator's commands (:mod:`csms.operations`) to live stations and logs every one.

:class:`OperatorCommands` is the :class:`csms.operations.port.StationCommander` the HTTP API is given. It
finds the station's live session, has the session's version plan the call (``v16.operations``,
``v201.operations``), checks it against the version's schema before anything is sent (so a request the
station could only refuse is the caller's 400, not the station's fault), sends it with the server's call
timeout, and writes one ``operator_command`` event whatever the outcome.

A command that needs a session this node does not have goes to ``forward`` when the runtime gives one
(:class:`csms.bus.operator_remote.RemoteCommander`): on a controller, which holds no sessions, every such command
goes to the gateway holding the station; on a gateway, one for a station another gateway holds is relayed there
by a controller. The node that runs it sends, stores and logs it, so this one logs only what it refused itself
or what the bus ended (no gateway holds the station, no answer). What a gateway runs for the bus goes through
:meth:`OperatorCommands.here`, never forwarded again.

Nothing here sets or clears a charging profile: what a charger may draw stays the balancer's decision. A
reset or an availability change makes the station reboot or stop charging; the delivery handles the
reconnection and the new boot as it handles any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ocpp.exceptions import OCPPError
from ocpp.messages import Call

from csms.domain.state import Version
from csms.ocpp import frames
from csms.ocpp.local_lists import LocalLists
from csms.ocpp.operation import PlanContext, Planned, station_error
from csms.ocpp.reservations import ReservationCommands
from csms.ocpp.schemas import validator_for
from csms.ocpp.station import Station
from csms.ocpp.v16 import operations as v16
from csms.ocpp.v201 import operations as v201
from csms.operations import arguments as a, catalogue
from csms.operations.arguments import Arguments, CancelReservation, GetLogs, Reserve, SendLocalList
from csms.operations.caps import CapKeeper
from csms.operations.port import StationCommander
from csms.operations.results import (BadArguments, CommandError, CommandResult, NotBalanced, StationOffline,
                                     StationTimeout, UnknownStation)
from csms.operations.upload_grants import Grant, UploadGrants, shown
from csms.storage import records
from csms.storage.database import Storage
from csms.storage.records import allocate_request_id, log_event

log = logging.getLogger("csms.ocpp.operator")

PLANNERS: dict[Version, Callable[[str, Arguments, PlanContext], Planned]] = {Version.V16: v16.plan,
                                                                             Version.V201: v201.plan}
SCHEMAS = {Version.V16: "1.6", Version.V201: "2.0.1"}


def _without_credentials(url: str) -> str:
    """``ftp://user:secret@host/x`` as ``ftp://***@host/x``: an operator's location may carry a password."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


class OperatorCommands:
    """The operator's commands over the live ``sessions`` (the server's own dict, so always current)."""

    def __init__(self, sessions: Mapping[str, Station], stations: Collection[str], storage: Storage,
                 clock: Callable[[], float], timeout: float, uploads: UploadGrants | None = None,
                 local_lists: LocalLists | None = None, reservations: ReservationCommands | None = None,
                 caps: CapKeeper | None = None, forward: StationCommander | None = None):
        self.sessions = sessions
        self.reservations = reservations
        self.caps = caps  # the operator's caps in the balancer (None: this central system balances nothing)
        self.stations = stations  # every station id in the config
        self.storage = storage
        self.clock = clock
        self.timeout = timeout
        #: Issues the secret upload URL ``get-logs`` defaults to (None: no [http], so no upload endpoint).
        self.uploads = uploads
        #: Sends local authorization lists and keeps them in step with the tokens.
        self.local_lists = local_lists
        #: Where station commands go when this node holds no session of the station (None: refused as offline).
        self.forward = forward

    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        return await self._execute(station_id, command, body, by, self.forward)

    def here(self) -> StationCommander:
        """The same commands, run on this node's sessions only: what a gateway runs for the bus (a command
        forwarded to it for a station that has just left is not sent on again)."""
        return _Here(self)

    async def _execute(self, station_id: str, command: str, body: Any, by: str,
                       forward: StationCommander | None) -> CommandResult:
        args: Arguments | None = None
        extra: dict[str, Any] = {}  # what the event log gets beyond the arguments (request id, upload token)
        try:
            args = catalogue.parse(command, body)
            if command in catalogue.CAP_COMMANDS:
                result = await self._cap(station_id, command, args, by)
            elif forward is not None and station_id not in self.sessions:
                self._known(station_id)
                result = await forward.execute(station_id, command, body, by)
                log.info("%r: operator command %r by %s: %s (run by the station's gateway)", station_id, command,
                         by, result.status)
                return result  # the gateway that ran it logged it
            else:
                result = await self._send(station_id, command, args, extra, by)
        except CommandError as exc:
            if exc.ran_on is None:  # else the node that ran it logged it
                self._log(station_id, command, args, by, exc.outcome, str(exc), **extra)
            raise
        self._log(station_id, command, args, by, result.status, **extra)
        return result

    def _known(self, station_id: str) -> None:
        if station_id not in self.stations:
            raise UnknownStation(f"no station {station_id!r} in the site config; GET /api/chargers lists them")

    async def _send(self, station_id: str, command: str, args: Arguments, extra: dict[str, Any],
                    by: str) -> CommandResult:
        self._known(station_id)
        session = self.sessions.get(station_id)
        if session is None:
            raise StationOffline(f"station {station_id!r} is not connected; a command needs a live connection "
                                 "(try again once it reconnects)")
        if isinstance(args, SendLocalList) and self.local_lists is not None:
            # Its entries are the central token list's, and it is kept in step after: the local lists' own.
            try:
                status, detail = await self.local_lists.send(station_id, session, args.full, by)
            except TimeoutError:
                raise StationTimeout(f"station {station_id!r} did not answer SendLocalList within "
                                     f"{self.timeout:g} s") from None
            return CommandResult(station_id, command, status, detail)
        if isinstance(args, (Reserve, CancelReservation)) and self.reservations is not None:
            # The reservation id, the token's parent and the record are central state: the reservations' own.
            if isinstance(args, Reserve):
                status, detail = await self.reservations.reserve(station_id, session, args, by)
            else:
                status, detail = await self.reservations.cancel(station_id, session, args, by)
            return CommandResult(station_id, command, status, detail)
        ctx = PlanContext(now=self.clock())
        if args.needs_request_id:
            ctx = PlanContext(request_id=await self.storage.write(allocate_request_id), now=ctx.now)
            extra["request_id"] = ctx.request_id
        grant = None
        if isinstance(args, GetLogs) and args.location is None:
            grant = self._upload_grant(station_id)
            args = args.model_copy(update={"location": grant.url})
            extra["upload_token"] = shown(grant.token)
        try:
            result = await self._call(session, station_id, command, args, ctx)
        except CommandError:
            if grant is not None and self.uploads is not None:
                self.uploads.revoke(grant.token)
            raise
        if grant is not None and self.uploads is not None and not result.ok:
            self.uploads.revoke(grant.token)  # refused: nothing will be uploaded with it
        return result

    def _upload_grant(self, station_id: str) -> Grant:
        grant = self.uploads.issue(station_id) if self.uploads is not None else None
        if grant is None:
            raise BadArguments("location", "this central system has no upload address to give: turn on [http] (and "
                                           "set [http] public_url when it listens on 0.0.0.0), or give the URL the "
                                           "station is to upload to, e.g. ftp://user:pass@logs.example.com/")
        log.info("%r: upload URL issued (token %s, valid %g s)", station_id, shown(grant.token), self.uploads.ttl)
        return grant

    async def _call(self, session: Station, station_id: str, command: str, args: Arguments,
                    ctx: PlanContext) -> CommandResult:
        planned = PLANNERS[session.version](command, args, ctx)
        body = frames.to_payload(planned.payload)
        action = type(planned.payload).__name__
        try:
            validator_for(SCHEMAS[session.version]).validate(Call("-", action, body))
        except OCPPError as exc:
            raise BadArguments("(arguments)", f"not a valid {action} for this station's OCPP version: "
                                              f"{exc.description}") from None
        reports = session.reports.expect(planned.reports) if planned.reports is not None else None
        try:
            reply = await session.call(planned.payload, planned.skip_reply_validation, timeout=self.timeout)
            answer = frames.to_payload(reply)
            if reports is not None and planned.status(reply) == "Accepted":
                answer.update(await reports.collected(self.timeout))
        except TimeoutError:
            raise StationTimeout(f"station {station_id!r} did not answer {action} within {self.timeout:g} s") from None
        except OCPPError as exc:  # a CALLERROR, or a reply its schema refuses
            raise station_error(exc) from None
        except ConnectionError as exc:
            raise StationOffline(f"station {station_id!r} disconnected before answering: {exc}") from None
        finally:
            if reports is not None:
                session.reports.forget(planned.reports)  # type: ignore[arg-type]
        learned = planned.learn(reply)
        if learned:  # stored before the answer, so the configuration the operator reads next shows it
            await self.storage.write(records.station_settings(station_id, learned, action, self.clock()))
        return CommandResult(station_id, command, planned.status(reply), answer)

    async def _cap(self, station_id: str, command: str, args: Arguments, by: str) -> CommandResult:
        """The operator's cap: set or lifted in the balancer; the answer says what it allows the charger now."""
        self._known(station_id)
        if self.caps is None:
            raise NotBalanced("this central system runs no balancer: there is no limit to cap")
        if isinstance(args, a.SetChargingProfile):
            now = self.clock()
            until = args.until.timestamp() if args.until is not None else (
                now + args.duration if args.duration is not None else None)
            if until is not None and until <= now:
                raise BadArguments("until", "is not in the future")
            cap, allowed = await self.caps.set_cap(station_id, args.limit, until, args.connector, by)
            reply = {"operatorCap": cap.as_json(), "allowed": allowed.as_json()}
        else:
            assert isinstance(args, a.ClearChargingProfile)
            lifted, allowed = await self.caps.clear_cap(station_id, args.connector, by)
            reply = {"operatorCap": None, "lifted": lifted.as_json() if lifted else None, "allowed": allowed.as_json()}
        return CommandResult(station_id, command, "Accepted", reply)

    def _log(self, station_id: str, command: str, args: Arguments | None, by: str, outcome: str,
             error: str | None = None, **extra: Any) -> None:
        """One event per command. Arguments are logged as parsed (a request that did not parse is not
        echoed: it may hold anything), a location without its user and password; the upload token this
        central system made up is in ``extra`` as its first characters only (it is the upload's credential)."""
        detail: dict[str, Any] = {"command": command, "by": by, "outcome": outcome, **extra}
        if args is not None:
            detail["arguments"] = args.model_dump(mode="json", exclude_none=True)
            if "location" in detail["arguments"]:
                detail["arguments"]["location"] = _without_credentials(detail["arguments"]["location"])
        if error is not None:
            detail["error"] = error
        # The station id and the command are the client's text: %r, so they cannot forge a log line.
        log.info("%r: operator command %r by %s: %s", station_id, command, by, outcome)
        try:
            self.storage.write_nowait(log_event("operator_command", self.clock(),
                                                station_id=station_id if station_id in self.stations else None,
                                                **detail))
        except Exception:  # storage closed on shutdown: the answer still goes to the operator
            log.warning("%r: operator command %r could not be logged", station_id, command)


class _Here:
    """:meth:`OperatorCommands.here`."""

    def __init__(self, commands: OperatorCommands):
        self.commands = commands

    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        return await self.commands._execute(station_id, command, body, by, None)
