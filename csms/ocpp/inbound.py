"""What both versions' inbound handlers share: the boot, the event log, storing meter values.

A version's handler class (:mod:`csms.ocpp.v16.inbound`, :mod:`csms.ocpp.v201.inbound`) turns each
message a station initiates into domain state and storage, and is composed into a
:class:`csms.ocpp.station.Station` beside the connection that routes messages to it.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Protocol

from csms.domain.state import BootInfo, MaintenanceStatus, PhaseSample, Transaction, implausible
from csms.ocpp.context import SessionContext
from csms.ocpp.metervalues import to_sample
from csms.ocpp.reports import Reports
from csms.ocpp.routing import after, on
from csms.storage import records

log = logging.getLogger("csms.ocpp.inbound")

#: A parsed ``meterValue`` entry: the sample, its reading context, and the entry as received.
Parsed = tuple[PhaseSample, str, dict]


class Session(Protocol):
    """What handlers need of a station's session (:class:`csms.ocpp.station.Station` has it)."""

    id: str
    #: Operator requests awaiting the reports the station sends after its answer (2.0.1 GetChargingProfiles).
    reports: Reports

    def boot_answered(self) -> None: ...
    def log_event(self, kind: str, **detail: Any) -> None: ...


class Inbound:
    """Base of the version handler classes: the station they answer for, and the helpers both use."""

    #: The version's reply dataclasses (``ocpp.v16.call_result`` or ``ocpp.v201.call_result``).
    call_results: ModuleType

    __slots__ = ("station", "id", "ctx", "_boot", "_ended")  # one per connected station: no per-instance dict

    def __init__(self, station: Session, ctx: SessionContext):
        self.station = station
        self.id = station.id
        self.ctx = ctx
        self._boot: tuple[BootInfo, float] | None = None
        #: Transactions that ended on this connection (a duplicate stop is answered but not told twice); None
        #: until one has (a set costs 216 bytes, and a station holds this for as long as it is connected).
        self._ended: set[str] | None = None

    def _has_ended(self, transaction_id: str) -> bool:
        return self._ended is not None and transaction_id in self._ended

    def _ends(self, transaction_id: str) -> None:
        if self._ended is None:
            self._ended = set()
        self._ended.add(transaction_id)

    async def _booted(self, boot: BootInfo, reason: str = "") -> Any:
        """Stores a BootNotification and returns its Accepted reply; the state hears of the boot once that reply is
        out (:meth:`after_boot`)."""
        now = self.ctx.clock()
        await self.ctx.storage.write(records.station_booted(self.id, boot, now))
        self._boot = (boot, now)
        log.info("%s: boot%s %r %r fw %r", self.id, f" ({reason})" if reason else "", boot.vendor, boot.model,
                 boot.firmware_version)
        return self.call_results.BootNotification(current_time=self.ctx.now_iso(),
                                                  interval=self.ctx.cfg.server.heartbeat_interval, status="Accepted")

    @after("BootNotification")
    def after_boot(self, **kw: Any) -> None:
        self._boot_answered()

    @on("Heartbeat")
    def on_heartbeat(self, **kw: Any) -> Any:
        self.ctx.state.seen(self.id, self.ctx.clock())
        return self.call_results.Heartbeat(current_time=self.ctx.now_iso())

    def _boot_answered(self) -> None:
        """After the BootNotification's Accepted reply went out: the station is registered and may be set up."""
        self.station.boot_answered()
        if self._boot is not None:
            boot, at = self._boot
            self.ctx.state.booted(self.id, boot, at)  # StationBooted: the delivery sets up again after a reboot

    async def _maintenance(self, kind: str, status: str, request_id: int | None, event: str) -> None:
        """A firmware (``kind`` "firmware") or log upload ("log") status: stored with its time, then the
        station's latest in the live state (the operator view's ``firmware_status`` / ``log_status``) and the
        event log (``event``). Acknowledged once stored, like every message whose content is kept."""
        at = self.ctx.clock()
        await self.ctx.storage.write(records.maintenance_status(self.id, kind, status, request_id, at))
        self.ctx.state.maintenance(self.id, kind, MaintenanceStatus(status, at, request_id))
        log.info("%s: %s status %r%s", self.id, kind, status, f" (request {request_id})" if request_id is not None else "")
        self._log(event, status=status, **({"request_id": request_id} if request_id is not None else {}))

    def _flag_if_implausible(self, tx: Transaction) -> None:
        """A transaction is stored as the station reported it; values no real session has (see
        :func:`csms.domain.state.implausible`) are flagged with an ``implausible_transaction`` event and a warning,
        so billing and the operator view do not trust them silently. Checked when a transaction starts and
        again, whole, when it ends."""
        problems = implausible(tx, self.ctx.clock())
        if problems:
            log.warning("%s: transaction %r has implausible values: %s", self.id, tx.transaction_id, "; ".join(problems))
            self._log("implausible_transaction", transaction_id=tx.transaction_id, problems=problems)

    async def _supersede_older(self, tx: Transaction) -> None:
        """A transaction starting on a connector ends any older one the station left open there (stored as
        ``Superseded``): otherwise it stays "running" for good, and after a restart it is restored and sent
        limits for a transaction the station no longer knows."""
        ended = await self.ctx.storage.write(
            records.supersede_transactions(self.id, tx.connector_id, tx.transaction_id, tx.started_at))
        for tx_id in ended:
            log.warning("%s: transaction %s on connector %s was never reported ended; closed as superseded by "
                        "transaction %s (a stop that arrives later still updates it)", self.id, tx_id,
                        tx.connector_id, tx.transaction_id)
            self._log("transaction_superseded", transaction_id=tx_id, by=tx.transaction_id)

    def _log(self, kind: str, **detail: Any) -> None:
        self.station.log_event(kind, **detail)

    async def _store_meter_values(self, connector_id: int, transaction_id: str | None,
                                  meter_value: list[dict]) -> list[Parsed]:
        """Parses and stores meter values; returns once they are committed (the reply may then go out)."""
        parsed = self._parse_meter_values(meter_value, self.ctx.clock())
        if parsed:
            await self.ctx.storage.write(records.meter_values(self.id, connector_id, transaction_id, parsed))
        return parsed

    @staticmethod
    def _parse_meter_values(meter_value: list[dict], received_at: float) -> list[Parsed]:
        return [(*to_sample(mv, received_at), mv) for mv in meter_value]

    def _publish_samples(self, connector_id: int, parsed: list[Parsed]) -> None:
        for sample, _, _ in sorted(parsed, key=lambda p: p[0].taken_at):
            self.ctx.state.sampled(self.id, connector_id, sample)
