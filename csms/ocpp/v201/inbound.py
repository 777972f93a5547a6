"""OCPP 2.0.1 adapter: every message a charging station initiates, translated to domain state and storage.

Transactions are keyed by EVSE id in the domain state (the 2.0.1 counterpart of a 1.6 connector).
TransactionEvents are recorded once per (transactionId, seqNo), so a station that resends its queue
after a reconnect is not double counted, and each is acknowledged only after it is committed.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v201 import call_result
from ocpp.v201.enums import (
    Action,
    DataTransferStatusEnumType,
    GenericStatusEnumType,
    NotifyEVChargingNeedsStatusEnumType,
)

from csms.domain.reservations import ReservationState
from csms.domain.state import BootInfo, Transaction, Version
from csms.ocpp.id_token_info import id_token_info
from csms.ocpp.inbound import Inbound
from csms.ocpp.metervalues import parse_time, register_reading
from csms.ocpp.routing import on
from csms.ocpp.v201.operations import reported_settings
from csms.storage import records

log = logging.getLogger("csms.ocpp.v201")

#: 2.0.1 connector statuses mapped to the domain's vocabulary (the same words 1.6 uses where they exist).
_CONNECTOR_STATUS = {"Available": "Available", "Occupied": "Occupied", "Reserved": "Reserved",
                     "Unavailable": "Unavailable", "Faulted": "Faulted"}
_CHARGING_STATE = {"Charging": "Charging", "EVConnected": "Preparing", "SuspendedEV": "SuspendedEV",
                   "SuspendedEVSE": "SuspendedEVSE", "Idle": "Available"}


#: Every action OCPP 2.0.1 defines (one known but not handled here is NotSupported, not NotImplemented).
KNOWN_ACTIONS = frozenset(a.value for a in Action)


class Inbound201(Inbound):
    """Answers every message an OCPP 2.0.1 charging station initiates."""

    __slots__ = ()

    call_results = call_result

    def _id_token_info(self, id_token: dict | None, starting: int | None = None) -> dict[str, Any]:
        """``starting``: the EVSE whose transaction a TransactionEvent Started starts (ConcurrentTx only then)."""
        token = (id_token or {}).get("id_token")
        return id_token_info(self.ctx.authorizer.authorize(self.id, token, self.ctx.clock(), starting=starting))

    @on(Action.boot_notification)
    async def on_boot(self, charging_station: dict, reason: str, **kw: Any):
        boot = BootInfo(charging_station.get("vendor_name", ""), charging_station.get("model", ""),
                        charging_station.get("serial_number"), charging_station.get("firmware_version"))
        return await self._booted(boot, reason)

    @on(Action.status_notification)
    async def on_status(self, timestamp: str, connector_status: str, evse_id: int, connector_id: int, **kw: Any):
        at = parse_time(timestamp, self.ctx.clock())
        status = _CONNECTOR_STATUS.get(connector_status, connector_status)
        await self.ctx.storage.write(records.connector_status(self.id, evse_id, status, None, at))
        self.ctx.state.status(self.id, evse_id, status, None, at)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_token: dict, **kw: Any):
        return call_result.Authorize(id_token_info=self._id_token_info(id_token))

    @on(Action.transaction_event)
    async def on_transaction_event(self, event_type: str, timestamp: str, trigger_reason: str, seq_no: int,
                                   transaction_info: dict, **kw: Any):
        """Parses everything first, then commits the event row, its meter values and the transaction in
        one database transaction: a message that fails leaves nothing behind, so its retry is applied
        rather than taken for a duplicate."""
        now = self.ctx.clock()
        at = parse_time(timestamp, now)
        tx_id = transaction_info["transaction_id"]
        evse = kw.get("evse") or {}
        running = self.ctx.state.find_transaction(self.id, tx_id)
        evse_id = evse.get("id") or (running.connector_id if running else 1)
        id_token = kw.get("id_token")
        token = (id_token or {}).get("id_token")
        # Answered before the event changes the state (a resent Started finds its own EVSE, not "elsewhere"). The
        # transaction is recorded whatever the answer; a station told anything but Accepted ends it.
        starting = evse_id if event_type == "Started" else None
        reply_info = self._id_token_info(id_token, starting) if id_token else None
        parsed = self._parse_meter_values(kw.get("meter_value") or [], now)
        stored = self._transaction_to_store(event_type, tx_id, evse_id, token, at, parsed, running,
                                            transaction_info.get("stopped_reason"))
        then = [records.upsert_transaction(self.id, Version.V201, stored)] if stored is not None else []
        if parsed:
            then.insert(0, records.meter_values(self.id, evse_id, tx_id, parsed))
        first = await self.ctx.storage.write(records.transaction_event(
            self.id, tx_id, seq_no, event_type, trigger_reason, at, then=then))
        if first:
            if stored is not None:
                self._flag_if_implausible(stored)
                if running is None and event_type != "Ended":
                    await self._supersede_older(stored)
            self._apply_event(event_type, evse_id, at, parsed, transaction_info, running, stored)
            reservation = kw.get("reservation_id")
            if reservation is not None and self.ctx.reservations is not None:  # the station used it up
                await self.ctx.reservations.change(self.id, reservation, ReservationState.USED, "TransactionEvent",
                                                   transaction_id=tx_id)
        return call_result.TransactionEvent(id_token_info=reply_info)

    @staticmethod
    def _transaction_to_store(event_type: str, tx_id: str, evse_id: int, token: str | None, at: float,
                              parsed: list, running: Transaction | None, stop_reason: str | None
                              ) -> Transaction | None:
        """The transaction row an event creates or ends (None when it changes nothing stored).

        The start register is the ``Transaction.Begin`` sample (else the earliest), the stop register the
        ``Transaction.End`` sample (else the latest): a station may send both in its Ended event, and a
        register need not start at zero. Both are stored as the station reported them.
        """
        if event_type == "Ended":
            started = running or Transaction(tx_id, evse_id, token, at)
            meter_start = started.meter_start_wh if started.meter_start_wh is not None else (
                register_reading(parsed, "Transaction.Begin", latest=False, fallback=False))
            return Transaction(tx_id, started.connector_id, started.id_token or token, started.started_at,
                               meter_start, at, register_reading(parsed, "Transaction.End", latest=True),
                               stop_reason)
        if running is None:
            return Transaction(tx_id, evse_id, token, at, register_reading(parsed, "Transaction.Begin", latest=False))
        return None

    def _apply_event(self, event_type: str, evse_id: int, at: float, parsed: list, transaction_info: dict,
                     running: Transaction | None, stored: Transaction | None) -> None:
        """The domain state after an event is committed (the first time its seqNo is seen)."""
        state = self.ctx.state
        if running is None and stored is not None and event_type in ("Started", "Updated"):
            state.transaction_started(self.id, stored)
            log.info("%s: transaction %r started on EVSE %s", self.id, stored.transaction_id, evse_id)
        charging_state = transaction_info.get("charging_state")
        if charging_state in _CHARGING_STATE and event_type != "Ended":
            state.status(self.id, evse_id, _CHARGING_STATE[charging_state], None, at)
        self._publish_samples(evse_id, parsed)
        if event_type == "Ended" and stored is not None:
            if running is None and self._has_ended(stored.transaction_id):
                # A second Ended (another seqNo) for a transaction this connection already ended: answered and
                # its event row kept, but the transaction is told once.
                log.debug("%s: transaction %r Ended again; already ended", self.id, stored.transaction_id)
                return
            self._ends(stored.transaction_id)
            state.transaction_ended(self.id, stored)
            log.info("%s: transaction %r ended (%s)", self.id, stored.transaction_id, stored.stop_reason)

    @on(Action.meter_values)
    async def on_meter_values(self, evse_id: int, meter_value: list, **kw: Any):
        running = self.ctx.state.station(self.id).transactions.get(evse_id)
        parsed = await self._store_meter_values(evse_id, running.transaction_id if running else None, meter_value)
        self._publish_samples(evse_id, parsed)
        return call_result.MeterValues()

    @on(Action.notify_event)
    def on_notify_event(self, generated_at: str, seq_no: int, event_data: list, **kw: Any):
        for ev in event_data[:50]:
            self._log("notify_event", trigger=ev.get("trigger"), component=ev.get("component", {}).get("name"),
                      variable=ev.get("variable", {}).get("name"), value=ev.get("actual_value"))
        return call_result.NotifyEvent()

    @on(Action.notify_report)
    async def on_notify_report(self, request_id: int, generated_at: str, seq_no: int, **kw: Any):
        """A part of the device-model report a GetBaseReport asked for: its variables are stored (and answered
        after they are) for the operator view's configuration of this station."""
        settings = reported_settings(kw.get("report_data") or [])
        if settings:
            await self.ctx.storage.write(records.station_settings(self.id, settings, "NotifyReport",
                                                                  self.ctx.clock()))
        self._log("notify_report", request_id=request_id, seq_no=seq_no, items=len(settings),
                  tbc=kw.get("tbc", False))
        return call_result.NotifyReport()

    @on(Action.security_event_notification)
    def on_security_event(self, type: str, timestamp: str, **kw: Any):
        log.warning("%s: security event %r", self.id, type)
        self._log("security_event", type=type, tech_info=kw.get("tech_info"))
        return call_result.SecurityEventNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, status: str, **kw: Any):
        await self._maintenance("firmware", status, kw.get("request_id"), "firmware_status")
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    async def on_log_status(self, status: str, **kw: Any):
        await self._maintenance("log", status, kw.get("request_id"), "log_status")
        return call_result.LogStatusNotification()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kw: Any):
        self._log("data_transfer", vendor_id=vendor_id, message_id=kw.get("message_id"))
        return call_result.DataTransfer(status=DataTransferStatusEnumType.unknown_vendor_id)

    @on(Action.notify_charging_limit)
    def on_notify_charging_limit(self, charging_limit: dict, **kw: Any):
        self._log("notify_charging_limit", source=charging_limit.get("charging_limit_source"), evse_id=kw.get("evse_id"))
        return call_result.NotifyChargingLimit()

    @on(Action.report_charging_profiles)
    def on_report_charging_profiles(self, request_id: int, charging_limit_source: str, charging_profile: list,
                                    evse_id: int, **kw: Any):
        self._log("report_charging_profiles", request_id=request_id, evse_id=evse_id, count=len(charging_profile))
        tbc = bool(kw.get("tbc", False))  # an operator's get-charging-profiles may await them
        self.station.reports.add(request_id, {"evse_id": evse_id, "charging_limit_source": charging_limit_source,
                                              "charging_profile": charging_profile, "tbc": tbc}, tbc)
        return call_result.ReportChargingProfiles()

    @on(Action.notify_ev_charging_needs)
    def on_notify_ev_charging_needs(self, charging_needs: dict, evse_id: int, **kw: Any):
        self._log("ev_charging_needs", evse_id=evse_id, transfer=charging_needs.get("requested_energy_transfer"))
        return call_result.NotifyEVChargingNeeds(status=NotifyEVChargingNeedsStatusEnumType.accepted)

    @on(Action.notify_ev_charging_schedule)
    def on_notify_ev_charging_schedule(self, time_base: str, charging_schedule: dict, evse_id: int, **kw: Any):
        self._log("ev_charging_schedule", evse_id=evse_id)
        return call_result.NotifyEVChargingSchedule(status=GenericStatusEnumType.accepted)

    @on(Action.reservation_status_update)
    async def on_reservation_status_update(self, reservation_id: int, reservation_update_status: str, **kw: Any):
        """The station ended a reservation itself: Expired (its time passed) or Removed (e.g. the EVSE went out
        of service), stored as expired / cancelled."""
        state = ReservationState.EXPIRED if reservation_update_status == "Expired" else ReservationState.CANCELLED
        if self.ctx.reservations is not None:
            await self.ctx.reservations.change(self.id, reservation_id, state, "ReservationStatusUpdate")
        return call_result.ReservationStatusUpdate()
