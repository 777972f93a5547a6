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

from csms import records
from csms.authorization import Authorizer
from csms.config import SiteConfig
from csms.context import SessionContext
from csms.server import CentralSystem
from csms.state import SiteState, Transaction
from csms.storage import Storage, log_event

log = logging.getLogger("csms.app")


class CentralSystemApp:
    def __init__(self, cfg: SiteConfig, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.clock = clock
        self.state = SiteState()
        self.storage = Storage(cfg.storage.database, cfg.storage.commit_interval)
        self.ctx = SessionContext(cfg, self.state, self.storage, Authorizer(cfg), clock)
        self.server = CentralSystem(self.ctx)
        self._stack = contextlib.AsyncExitStack()

    @property
    def port(self) -> int:
        return self.server.port

    async def __aenter__(self) -> "CentralSystemApp":
        try:
            await self._stack.enter_async_context(self.storage)
            await self._restore()
            await self.server.start()
            self._stack.push_async_callback(self.server.stop)
            self.storage.write_nowait(log_event("csms_started", self.clock()))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _restore(self) -> None:
        """Brings back what a restart must not forget: transactions that were running."""
        rows = await self.storage.read(records.open_transactions)
        for row in rows:
            tx = Transaction(row["transaction_id"], row["connector_id"] or 0, row["id_token"], row["started_at"],
                             row["meter_start_wh"])
            self.state.station(row["station_id"]).transactions[tx.connector_id] = tx
        # Stations are all disconnected until they reconnect.
        await self.storage.write(lambda db: db.execute("UPDATE stations SET connected = 0"))
        if rows:
            log.info("restored %d running transaction(s) from storage", len(rows))


async def serve_until_signalled(cfg: SiteConfig) -> int:
    """Runs the central system until SIGINT/SIGTERM, then shuts down cleanly; returns the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with CentralSystemApp(cfg) as app:
        log.info("central system running on port %s; Ctrl-C to stop", app.port)
        await stop.wait()
        log.info("stopping")
    return 0
