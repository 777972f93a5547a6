"""The operator's ``reserve`` and ``cancel-reservation``, sent as 1.6 / 2.0.1 ReserveNow and CancelReservation.

Unlike the other commands these need central state, so :class:`csms.ocpp.operator.OperatorCommands` hands them
here (as it hands ``send-local-list`` to :mod:`csms.ocpp.local_lists`): the reservation id is allocated and
stored by the central system, the token's parent (its group id) is looked up in the token list and sent as
1.6 ``parentIdTag`` / 2.0.1 ``groupIdToken``, so the station lets any card of the group use the reservation,
and the answer is recorded (Accepted: active; anything else: refused) in the
:class:`~csms.ocpp.reservation_book.ReservationBook`.

2.0.1 tokens are typed ``ISO14443`` (an RFID card's UID), as in the local lists; the group id ``Central``, as
in every idTokenInfo the central system sends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ocpp.exceptions import OCPPError
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from csms.domain import reservations as rules
from csms.domain.reservations import Reservation, ReservationState
from csms.domain.state import Version
from csms.domain.tokens import IdToken
from csms.ocpp.operation import station_error
from csms.ocpp.reservation_book import ReservationBook
from csms.ocpp.station import Station
from csms.operations.arguments import CancelReservation, Reserve
from csms.operations.results import BadArguments, StationOffline, StationTimeout
from csms.runtime.isotime import iso_millis

TOKEN_TYPE_201 = "ISO14443"


class ReservationCommands:
    def __init__(self, book: ReservationBook, entry: Callable[[str, str], IdToken | None],
                 organisation_of: Mapping[str, str], clock: Callable[[], float], timeout: float):
        self.book = book
        self.entry = entry  # the token list: (organisation, token) → its entry
        self.organisation_of = organisation_of
        self.clock = clock
        self.timeout = timeout

    async def reserve(self, station_id: str, session: Station, args: Reserve, by: str) -> tuple[str, dict[str, Any]]:
        now = self.clock()
        try:
            expires_at = rules.expiry(now, args.expires_in, None if args.expiry is None else args.expiry.timestamp())
        except ValueError as exc:
            raise BadArguments("expiry" if args.expiry is not None else "expires_in", str(exc)) from None
        v16 = session.version is Version.V16
        if v16 and len(args.id_token) > 20:
            raise BadArguments("id_token", "OCPP 1.6 idTags are at most 20 characters")
        org = self.organisation_of.get(station_id)
        entry = self.entry(org, args.id_token) if org is not None else None
        parent = entry.parent if entry is not None else None
        connector = args.connector or 0
        rid = await self.book.new_id()
        if v16:
            payload: Any = call16.ReserveNow(connector_id=connector, expiry_date=iso_millis(expires_at),
                                             id_tag=args.id_token, reservation_id=rid, parent_id_tag=parent)
        else:
            payload = call201.ReserveNow(
                id=rid, expiry_date_time=iso_millis(expires_at),
                id_token={"id_token": args.id_token, "type": TOKEN_TYPE_201}, evse_id=connector or None,
                group_id_token={"id_token": parent, "type": "Central"} if parent is not None else None)
        status = await self._call(station_id, session, payload)
        state = ReservationState.ACTIVE if status == "Accepted" else ReservationState.REFUSED
        await self.book.record(Reservation(rid, station_id, connector, args.id_token, parent, expires_at, state, by,
                                           now), by)
        return status, {"reservation_id": rid, "state": state.value, "connector": connector, "parent": parent,
                        "expiry": iso_millis(expires_at)}

    async def cancel(self, station_id: str, session: Station, args: CancelReservation, by: str
                     ) -> tuple[str, dict[str, Any]]:
        held = self.book.active.get(args.reservation_id)
        if held is not None and held.station_id != station_id:
            raise BadArguments("reservation_id", f"reservation {args.reservation_id} is at station "
                                                 f"{held.station_id!r}, not {station_id!r}")
        payload: Any = (call16.CancelReservation(reservation_id=args.reservation_id)
                        if session.version is Version.V16 else
                        call201.CancelReservation(reservation_id=args.reservation_id))
        status = await self._call(station_id, session, payload)
        after = None
        if status == "Accepted":
            after = await self.book.change(station_id, args.reservation_id, ReservationState.CANCELLED, by)
        return status, {"reservation_id": args.reservation_id, **({"state": after.state.value} if after else {})}

    async def _call(self, station_id: str, session: Station, payload: Any) -> str:
        action = type(payload).__name__
        try:
            reply = await session.call(payload, timeout=self.timeout)
        except TimeoutError:
            raise StationTimeout(f"station {station_id!r} did not answer {action} within {self.timeout:g} s") from None
        except OCPPError as exc:
            raise station_error(exc) from None
        except ConnectionError as exc:
            raise StationOffline(f"station {station_id!r} disconnected before answering: {exc}") from None
        return str(reply.status)
