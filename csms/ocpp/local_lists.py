"""Sends stations their local authorization list and keeps it in step with the central token list.

A station holds a list once the operator has sent it one (``send-local-list``); from then on every change of
its organisation's tokens is sent to it as a differential update with the next version, at once if it is
connected, else once it is back and booted. A differential the station refuses (VersionMismatch, Failed) is
followed by the full list; a station that answers NotSupported/NotImplemented is not asked again on that
connection. The entries are :mod:`csms.domain.local_list`'s; this module only speaks OCPP and owns the tasks.

2.0.1 entries need a token type: the list says ``ISO14443`` (an RFID card's UID, what stations read), the
type of nearly every card.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from csms.domain import local_list
from csms.domain.authorization import Authorization
from csms.domain.state import Version
from csms.domain.tokens import IdToken
from csms.ocpp.id_token_info import id_tag_info, id_token_info
from csms.ocpp.station import Station
from csms.runtime.aio import cancel_and_wait
from csms.storage.database import Storage
from csms.storage.local_lists import save_list, stored_lists
from csms.storage.records import log_event

log = logging.getLogger("csms.ocpp.local_lists")

TOKEN_TYPE_201 = "ISO14443"
NOT_SUPPORTED = ("NotSupported", "NotImplemented")


class LocalLists:
    def __init__(self, sessions: Mapping[str, Station], organisation_of: Mapping[str, str],
                 entries: Callable[[], Iterable[IdToken]], storage: Storage, clock: Callable[[], float],
                 timeout: float):
        self.sessions = sessions
        self.organisation_of = organisation_of
        self.entries = entries
        self.storage = storage
        self.clock = clock
        self.timeout = timeout
        #: station → (version, entries) it accepted last.
        self.held: dict[str, tuple[int, dict[str, Authorization]]] = {}
        self._unsupported: weakref.WeakSet[Station] = weakref.WeakSet()  # per connection, gone with it
        self._tasks: set[asyncio.Task] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def load(self) -> None:
        rows = await self.storage.read(stored_lists)
        self.held = {sid: (version, local_list.from_rows(entries)) for sid, (version, entries) in rows.items()}

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))

    # -- what the operator asks ----------------------------------------------------------------------

    async def send(self, station_id: str, session: Station, full: bool, by: str) -> tuple[str, dict[str, Any]]:
        """Sends the station its list (all of it, or what changed since the version it holds); the station's
        status and what was sent."""
        async with self._locks.setdefault(station_id, asyncio.Lock()):
            return await self._sync(station_id, session, full, by)

    # -- keeping in step -----------------------------------------------------------------------------

    def tokens_changed(self, organisation: str) -> None:
        """A token of ``organisation`` changed: every connected station of it that holds a list gets the change."""
        for sid, org in self.organisation_of.items():
            if org == organisation and sid in self.held and sid in self.sessions:
                self._spawn(sid, self.sessions[sid])

    def attach(self, station_id: str) -> None:
        """A station's session started: once it is booted, it gets what changed while it was away."""
        session = self.sessions.get(station_id)
        if session is not None and station_id in self.held:
            self._spawn(station_id, session, wait_ready=True)

    def _spawn(self, station_id: str, session: Station, wait_ready: bool = False) -> None:
        async def run() -> None:
            if wait_ready:
                await session.ready.wait()
            try:
                await self.send(station_id, session, False, "token change")
            except (OCPPError, TimeoutError, ConnectionError) as exc:
                log.warning("%s: local list not updated: %s", station_id, exc)
            except Exception:
                log.exception("%s: local list update failed", station_id)
        task = asyncio.create_task(run(), name=f"local-list-{station_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sync(self, station_id: str, session: Station, full: bool, by: str) -> tuple[str, dict[str, Any]]:
        org = self.organisation_of[station_id]
        want = local_list.wanted(self.entries(), org, self.clock())
        version, held = self.held.get(station_id, (0, {}))
        if not full and station_id not in self.held:
            full = True  # nothing known held: a differential would be relative to nothing
        if not full:
            update = local_list.changes(held, want)
            if not update:
                return "Accepted", {"version": version, "update": "none", "entries": 0}
        if session in self._unsupported:
            return "NotSupported", {}
        status = await self._send(session, version + 1, want if full else update, full)
        if status in ("VersionMismatch", "Failed") and not full:
            full, status = True, await self._send(session, version + 1, want, True)
        detail = {"version": version + 1, "update": "full" if full else "differential",
                  "entries": len(want) if full else len(update)}
        if status in NOT_SUPPORTED:
            self._unsupported.add(session)
        elif status == "Accepted":
            self.held[station_id] = (version + 1, want)
            await self.storage.write(save_list(station_id, version + 1, local_list.to_rows(want), self.clock()))
        self.storage.write_nowait(log_event("local_list", self.clock(), station_id=station_id, by=by,
                                            status=status, **detail))
        return status, detail

    async def _send(self, session: Station, version: int, entries: Mapping[str, Authorization | None],
                    full: bool) -> str:
        kind = "Full" if full else "Differential"
        if session.version is Version.V16:
            items = [{"id_tag": t, **({"id_tag_info": id_tag_info(a)} if a is not None else {})}
                     for t, a in entries.items()]
            payload: Any = call16.SendLocalList(list_version=version, update_type=kind,
                                                local_authorization_list=items or None)
        else:
            items = [{"id_token": {"id_token": t, "type": TOKEN_TYPE_201},
                      **({"id_token_info": id_token_info(a)} if a is not None else {})} for t, a in entries.items()]
            payload = call201.SendLocalList(version_number=version, update_type=kind,
                                            local_authorization_list=items or None)
        try:
            reply = await session.call(payload, timeout=self.timeout)
        except OCPPError as exc:
            return exc.code if exc.code in NOT_SUPPORTED else "Failed"
        return str(reply.status)
