"""What both OCPP version adapters do the same way: set-up, the event log, storing meter values."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from csms.context import SessionContext
from csms.metervalues import to_sample
from csms.state import BootInfo, PhaseSample, Transaction, implausible
from csms.storage import records
from csms.storage.records import log_event

log = logging.getLogger("csms.adapter")

#: A parsed ``meterValue`` entry: the sample, its reading context, and the entry as received.
Parsed = tuple[PhaseSample, str, dict]


class AdapterMixin:
    """Mixed into :class:`csms.ocpp16.Station16` and :class:`csms.ocpp201.Station201`, after SessionMixin."""

    def __init__(self, station_id: str, connection: Any, ctx: SessionContext):
        super().__init__(station_id, connection, response_timeout=ctx.cfg.server.call_timeout)
        self.ctx = ctx
        self.command_timeout = ctx.cfg.server.call_timeout
        self.setup_session(ctx.cfg.server.rate_limit, ctx.cfg.server.rate_burst)
        #: Set when the station may be set up (see SessionMixin.ready); ``boots`` counts accepted boots on
        #: this connection (a second one is a reboot: the delivery sets the station up again).
        self.ready = asyncio.Event()
        self.ready_reason = ""
        self.boots = 0
        #: Commands this station answered "not implemented/supported" on this connection (csms.link).
        self.unsupported: set[str] = set()
        self._boot: tuple[BootInfo, float] | None = None
        #: Transactions that ended on this connection (a duplicate stop is answered but not told twice).
        self._ended: set[str] = set()

    def _boot_answered(self) -> None:
        """After the BootNotification's Accepted reply went out: the station is registered and may be set up.

        A reboot on the same connection forgets what it could not do (its firmware may have changed)."""
        self.boots += 1
        self.unsupported.clear()
        self.ready_reason = "boot accepted" if self.boots == 1 else "rebooted"
        self.ready.set()
        if self._boot is not None:
            boot, at = self._boot
            self.ctx.state.booted(self.id, boot, at)  # StationBooted: the delivery sets up again after a reboot

    def _other_message(self, action: str) -> None:
        """A message other than BootNotification before any boot on this connection: the station had booted
        before it (re)connected (e.g. the central system restarted), so it is registered and may be set up."""
        if not self.ready.is_set() and action != "BootNotification":
            self.ready_reason = f"first message {action} (booted before this connection)"
            self.ready.set()

    def _flag_if_implausible(self, tx: Transaction) -> None:
        """A transaction is stored as the station reported it; values no real session has (see
        :func:`csms.state.implausible`) are flagged with an ``implausible_transaction`` event and a warning,
        so billing and the operator view do not trust them silently. Checked when a transaction starts and
        again, whole, when it ends."""
        problems = implausible(tx, self.ctx.clock())
        if problems:
            log.warning("%s: transaction %r has implausible values: %s", self.id, tx.transaction_id, "; ".join(problems))
            self._log("implausible_transaction", transaction_id=tx.transaction_id, problems=problems)

    def _log(self, kind: str, **detail: Any) -> None:
        """An entry in the event log; not awaited (nothing a station is told depends on it)."""
        self.ctx.storage.write_nowait(log_event(kind, self.ctx.clock(), station_id=self.id, **detail))

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
