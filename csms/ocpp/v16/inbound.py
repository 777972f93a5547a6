"""OCPP 1.6J adapter: every charge-point-initiated Core message, translated to domain state and storage.

A message is acknowledged only after what it reports is committed (``await storage.write``), so
nothing a charger was told we received is lost by a crash.
"""

from __future__ import annotations

import logging
from typing import Any

from ocpp.v16 import call_result
from ocpp.v16.enums import Action, DataTransferStatus

from csms.domain.reservations import ReservationState
from csms.domain.state import BootInfo, Transaction
from csms.ocpp.id_token_info import id_tag_info
from csms.ocpp.inbound import Inbound
from csms.ocpp.metervalues import parse_time
from csms.ocpp.routing import on
from csms.storage import records

log = logging.getLogger("csms.ocpp.v16")

#: Every action OCPP 1.6 defines (one known but not handled here is NotSupported, not NotImplemented).
KNOWN_ACTIONS = frozenset(a.value for a in Action)


class Inbound16(Inbound):
    """Answers every charge-point-initiated OCPP 1.6 Core message."""

    __slots__ = ()

    call_results = call_result

    def _id_tag_info(self, id_tag: str | None, starting: int | None = None) -> dict[str, Any]:
        """``starting``: the connector whose transaction a StartTransaction starts (ConcurrentTx only then)."""
        return id_tag_info(self.ctx.authorizer.authorize(self.id, id_tag, self.ctx.clock(), starting=starting))

    @on(Action.boot_notification)
    async def on_boot(self, charge_point_vendor: str, charge_point_model: str, **kw: Any):
        boot = BootInfo(charge_point_vendor, charge_point_model,
                        kw.get("charge_point_serial_number") or kw.get("charge_box_serial_number"),
                        kw.get("firmware_version"))
        return await self._booted(boot)

    @on(Action.status_notification)
    async def on_status(self, connector_id: int, error_code: str, status: str, **kw: Any):
        at = parse_time(kw.get("timestamp"), self.ctx.clock())
        err = None if error_code == "NoError" else error_code
        await self.ctx.storage.write(records.connector_status(self.id, connector_id, status, err, at))
        self.ctx.state.status(self.id, connector_id, status, err, at)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str, **kw: Any):
        return call_result.Authorize(id_tag_info=self._id_tag_info(id_tag))

    @on(Action.start_transaction)
    async def on_start(self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kw: Any):
        started_at = parse_time(timestamp, self.ctx.clock())
        # Answered before the transaction is in the state, and a retry of this very start runs on the same
        # connector, which is not "elsewhere". Whatever the answer, the transaction is stored and gets its id:
        # OCPP 1.6 has the central system always assign one; a charger told anything but Accepted stops it.
        info = self._id_tag_info(id_tag, starting=connector_id)
        tx_id, new = await self.ctx.storage.write(
            records.start_transaction_16(self.id, connector_id, id_tag, started_at, float(meter_start)))
        if new:
            tx = Transaction(str(tx_id), connector_id, id_tag, started_at, float(meter_start))
            self._flag_if_implausible(tx)
            await self._supersede_older(tx)
            self.ctx.state.transaction_started(self.id, tx)
            log.info("%s: transaction %s started on connector %s", self.id, tx_id, connector_id)
            reservation = kw.get("reservation_id")
            if reservation is not None and self.ctx.reservations is not None:  # the station used it up
                await self.ctx.reservations.change(self.id, reservation, ReservationState.USED, "StartTransaction",
                                                   transaction_id=str(tx_id))
        return call_result.StartTransaction(transaction_id=tx_id, id_tag_info=info)

    @on(Action.stop_transaction)
    async def on_stop(self, meter_stop: int, timestamp: str, transaction_id: int, **kw: Any):
        stopped_at = parse_time(timestamp, self.ctx.clock())
        tx_key = str(transaction_id)
        data = kw.get("transaction_data") or []
        running = self.ctx.state.find_transaction(self.id, tx_key)
        if data:
            await self._store_meter_values(running.connector_id if running else 0, tx_key, data)
        row = await self.ctx.storage.write(
            records.stop_transaction(self.id, tx_key, stopped_at, float(meter_stop), kw.get("reason")))
        if row is None:
            log.warning("%s: StopTransaction for unknown transaction %s", self.id, transaction_id)
            self._log("unknown_transaction", transaction_id=tx_key)
        elif running is None and self._has_ended(tx_key):
            # A station resending its stop (e.g. at shutdown): answered, stored once (COALESCE), told once.
            log.debug("%s: StopTransaction %s again; already ended", self.id, transaction_id)
        else:
            tx = Transaction(tx_key, row["connector_id"], row["id_token"], row["started_at"], row["meter_start_wh"],
                             stopped_at, float(meter_stop), kw.get("reason"))
            self._flag_if_implausible(tx)
            self._ends(tx_key)
            self.ctx.state.transaction_ended(self.id, tx)
            log.info("%s: transaction %s ended (%s)", self.id, tx_key, kw.get("reason"))
        id_tag = kw.get("id_tag")
        info = self._id_tag_info(id_tag) if id_tag else None
        return call_result.StopTransaction(id_tag_info=info)

    @on(Action.meter_values)
    async def on_meter_values(self, connector_id: int, meter_value: list, **kw: Any):
        tx = kw.get("transaction_id")
        parsed = await self._store_meter_values(connector_id, None if tx is None else str(tx), meter_value)
        self._publish_samples(connector_id, parsed)
        return call_result.MeterValues()

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **kw: Any):
        self._log("data_transfer", vendor_id=vendor_id, message_id=kw.get("message_id"))
        return call_result.DataTransfer(status=DataTransferStatus.unknown_vendor_id)

    @on(Action.diagnostics_status_notification)
    async def on_diagnostics_status(self, status: str, **kw: Any):
        await self._maintenance("log", status, None, "diagnostics_status")
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    async def on_firmware_status(self, status: str, **kw: Any):
        await self._maintenance("firmware", status, None, "firmware_status")
        return call_result.FirmwareStatusNotification()
