"""Persistence with group commit, on SQLite (the embedded default) or PostgreSQL.

Every write is a small function of the database (a :class:`~csms.storage.sql.Db`) queued to one writer thread;
the writer runs whatever has queued within ``commit_interval`` in a single transaction and then resolves each
writer's future. A caller that awaits :meth:`Storage.write` therefore learns only after its change is
committed (on disk for SQLite, made durable by the server for PostgreSQL), so a central system that
acknowledges a message after that await never loses what it acknowledged, while a burst of messages costs
one commit, not one each.

The connection lives on the writer thread only (sqlite3 connections are thread-bound, and a network round
trip must not stall the loop); the event loop never blocks on the database. ``target`` picks the engine: a
``postgresql://`` URL, or else a SQLite file path.

When a PostgreSQL server goes away: a batch whose statements failed before its commit was sent is run again
once reconnected (nothing of it committed); a batch whose COMMIT was in flight fails with
:class:`~csms.storage.sql.StorageUnavailable` (it may or may not have committed, so it is neither retried nor
acknowledged: the station, never answered, sends it again, and the operations are idempotent for that). The
writer reconnects with backoff; writes queued meanwhile wait, and any that has waited ``outage_timeout``
seconds fails with :class:`StorageUnavailable`, so a long outage neither hangs callers nor grows the queue
without bound.

A server that hangs without closing the connection is made into one that went away: every wait on it is bounded
by ``statement_timeout`` (PostgreSQL's backend carries a :class:`~csms.storage.hang.HangGuard`; a watchdog task
here trips it), after which the connection is cut and the above applies. A write the connection already dropped
under, that has waited ``outage_timeout`` when it would run again, fails instead: so a server that takes
connections but leaves statements unanswered fails each write within about ``outage_timeout`` plus one
``statement_timeout``, as one that takes no connections does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from csms.storage.hang import HangGuard
from csms.storage.sql import Db, StorageClosed, StorageUnavailable
from csms.storage.sqlite import SqliteBackend, open_database

__all__ = ["Storage", "StorageClosed", "StorageUnavailable", "open_database", "is_postgres_url"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Op = Callable[[Db], Any]

#: Times a write is run again after the connection dropped under it before it fails instead.
MAX_RETRIES = 3
#: Longest pause between two reconnection attempts, in seconds.
MAX_BACKOFF = 2.0


def is_postgres_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


class Backend(Protocol):
    """One engine's connection, used on the writer thread only (:mod:`.sqlite`, :mod:`.postgres`)."""

    label: str
    db: Any
    #: Bounds the waits on a server (None: an embedded engine, nothing to watch).
    guard: HangGuard | None

    def connect(self) -> None: ...
    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def end_read(self) -> None: ...
    def is_disconnect(self, exc: BaseException) -> bool: ...
    def close(self) -> None: ...


def make_backend(target: str, statement_timeout: float = 10.0) -> Backend:
    if is_postgres_url(target):
        from csms.storage.postgres import PostgresBackend  # psycopg loaded only by those who use it

        return PostgresBackend(target, statement_timeout)
    return SqliteBackend(target)


class _Retry:
    """A write that did not commit because the connection dropped: it is queued again."""


_RETRY = _Retry()


@dataclass(slots=True)
class _Pending:
    op: Op
    #: Resolved with the op's result; None for a write nobody waits for, whose failure is logged as ``what``.
    future: asyncio.Future | None
    what: str = "write"
    queued_at: float = field(default_factory=time.monotonic)
    retries: int = 0

    def done(self) -> bool:
        return self.future is not None and self.future.done()

    def resolve(self, result: Any) -> None:
        if self.future is None:
            if isinstance(result, BaseException):
                log.error("%s failed: %s", self.what, result)
        elif isinstance(result, BaseException):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


def _run_together(db: Db, batch: list[_Pending]) -> list[Any]:
    """Runs a group commit's writes in order; consecutive ones with the same ``batch_sql`` (event-log entries:
    :class:`~csms.storage.records.LoggedEvent`) go in one ``executemany``."""
    results: list[Any] = []
    i, n = 0, len(batch)
    while i < n:
        op = batch[i].op
        sql = getattr(op, "batch_sql", None)
        if sql is None:
            results.append(op(db))
            i += 1
            continue
        j = i + 1
        while j < n and getattr(batch[j].op, "batch_sql", None) == sql:
            j += 1
        if j - i == 1:
            results.append(op(db))
        else:
            db.executemany(sql, [p.op.params() for p in batch[i:j]])
            results += [None] * (j - i)
        i = j
    return results


class Storage:
    """Group-committing writer plus reads on the same thread (so they see every committed write)."""

    def __init__(self, path: str, commit_interval: float = 0.001, outage_timeout: float = 30.0,
                 statement_timeout: float = 10.0):
        #: The SQLite path or PostgreSQL URL (may hold a password: log :attr:`label` instead).
        self.path = path
        self.commit_interval = commit_interval
        self.outage_timeout = outage_timeout
        self._backend = make_backend(path, statement_timeout)
        self.label = self._backend.label
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="csms-storage")
        self._open = False
        self._queue: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._watchdog: asyncio.Task | None = None
        self._closing = False
        self.batches = 0
        self.writes = 0
        #: Times the writer reconnected after losing the server.
        self.reconnects = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._backend.guard is not None:  # first: connecting waits on the server too
            self._watchdog = asyncio.create_task(self._watch(self._backend.guard), name="storage-watchdog")
        try:
            await loop.run_in_executor(self._executor, self._backend.connect)
        except BaseException:
            await self._stop_watchdog()
            raise
        self._open = True
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._writer(), name="storage-writer")

    async def close(self) -> None:
        """Flushes everything queued (fails it if the server is unreachable), then closes the connection."""
        self._closing = True
        if self._task is not None:
            self._wakeup.set()
            await self._task
            self._task = None
        if self._open:
            self._open = False
            await asyncio.get_running_loop().run_in_executor(self._executor, self._backend.close)
        await self._stop_watchdog()
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> "Storage":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, op: Op) -> asyncio.Future:
        """Queues ``op`` for the next group commit; the future resolves with its result once committed."""
        fut = asyncio.get_running_loop().create_future()
        self._enqueue(_Pending(op, fut))
        return fut

    def _enqueue(self, pending: _Pending) -> None:
        if self._closing or self._wakeup is None:
            raise StorageClosed("storage is closed")
        self._queue.append(pending)
        self._wakeup.set()

    async def write(self, op: Callable[[Db], T]) -> T:
        return await self.submit(op)

    def write_nowait(self, op: Op, what: str = "write") -> None:
        """Queues a write nobody waits for (event log, decisions); a failure is logged, not raised. No future:
        a station's every message logs an event, and a future with its callback doubled that entry's cost."""
        try:
            self._enqueue(_Pending(op, None, what))
        except StorageClosed:
            log.warning("storage closed, dropped %s", what)

    async def _writer(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                if self._closing:
                    return
                continue
            if self.commit_interval and not self._closing:
                await asyncio.sleep(self.commit_interval)
            if self._backend.db is None:
                await self._reconnect()
                self._wakeup.set()
                continue
            self._fail_waiting(self.outage_timeout, f"the connection to {self.label} dropped under this write and "
                               f"it has waited {self.outage_timeout:g} s", retried_only=True)
            if not self._queue:
                self._wakeup.set()  # come back round: to return if closing, else to wait
                continue
            batch, self._queue = self._queue, []
            try:
                results = await loop.run_in_executor(self._executor, self._run_batch, batch)
            except BaseException as exc:  # the executor itself failed: fail the batch, keep serving
                results = [exc] * len(batch)
            self.batches += 1
            retry = []
            for pending, result in zip(batch, results):
                if result is _RETRY:
                    pending.retries += 1
                    if pending.retries <= MAX_RETRIES:
                        retry.append(pending)
                        continue
                    result = StorageUnavailable(f"the connection to {self.label} dropped under this write "
                                                f"{pending.retries} times")
                self.writes += 1
                if not pending.done():
                    pending.resolve(result)
            self._queue[:0] = retry
            if self._queue or self._closing:  # closing: come back round to return, not to wait
                self._wakeup.set()

    async def _reconnect(self) -> None:
        """Tries to reconnect until it works, failing writes that waited ``outage_timeout`` (all of them when
        closing: nothing may hang a shutdown)."""
        loop = asyncio.get_running_loop()
        delay, attempts = 0.05, 0
        while True:
            try:
                await loop.run_in_executor(self._executor, self._backend.connect)
            except Exception as exc:
                attempts += 1
                if attempts == 1:
                    log.error("storage: %s unreachable (%s); reconnecting, writes wait up to %g s",
                              self.label, exc, self.outage_timeout)
                if self._closing:
                    self._fail_waiting(float("inf"), f"{self.label} unreachable while closing")
                    return
                self._fail_waiting(self.outage_timeout, f"{self.label} unreachable for {self.outage_timeout:g} s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            self.reconnects += 1
            log.warning("storage: reconnected to %s after %d failed attempt(s)", self.label, attempts)
            return

    async def _watch(self, guard: HangGuard) -> None:
        """Trips ``guard`` once a wait on the server passes its deadline: the storage thread's call then fails as
        a lost connection (see :mod:`.hang`)."""
        tick = min(0.25, guard.timeout / 4)
        while True:
            await asyncio.sleep(tick)
            limit = guard.check()
            if limit is not None:
                log.error("storage: %s left a statement unanswered for %g s: cut the connection (reconnecting)",
                          self.label, limit)

    async def _stop_watchdog(self) -> None:
        task, self._watchdog = self._watchdog, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _fail_waiting(self, older_than: float, why: str, retried_only: bool = False) -> None:
        """Fails the queued writes submitted ``older_than`` seconds ago (with ``retried_only``, only those a dropped
        connection has already sent back: a write the server is back for is not failed for the wait alone)."""
        now = time.monotonic()
        keep = []
        for pending in self._queue:
            if now - pending.queued_at >= older_than and (pending.retries or not retried_only):
                if not pending.done():
                    pending.resolve(StorageUnavailable(why))
            else:
                keep.append(pending)
        self._queue = keep

    def _run_batch(self, batch: list[_Pending]) -> list[Any]:
        """One transaction for the whole batch; if any op fails, redo them one transaction each.

        A dropped connection stops the batch: what did not reach its commit is returned as ``_RETRY``, the
        write whose commit was in flight as :class:`StorageUnavailable` (outcome unknown).
        """
        b = self._backend
        if b.db is None:
            return [_RETRY] * len(batch)
        committing = False
        try:
            b.begin()
            results = _run_together(b.db, batch)
            committing = True
            b.commit()
            return results
        except Exception as exc:
            if b.is_disconnect(exc):
                return [self._lost(exc, committing)] * len(batch)
            b.rollback()
        results = []
        for i, p in enumerate(batch):
            committing = False
            try:
                b.begin()
                result = p.op(b.db)
                committing = True
                b.commit()
                results.append(result)
            except Exception as exc:
                if b.is_disconnect(exc):
                    return results + [self._lost(exc, committing)] + [_RETRY] * (len(batch) - i - 1)
                b.rollback()
                log.error("storage write failed: %s", exc)
                results.append(exc)
        return results

    def _lost(self, exc: BaseException, committing: bool) -> Any:
        """On the writer thread: drops the broken connection (the writer reconnects before the next batch)."""
        log.error("storage: lost the connection to %s%s: %s", self.label,
                  " during a commit (its outcome is unknown: failing those writes)" if committing else "", exc)
        self._backend.close()
        if committing:
            return StorageUnavailable(f"the connection to {self.label} dropped during a commit: outcome unknown")
        return _RETRY

    # -- reads (on the writer thread, so they see every committed write) -------------------------

    async def read(self, fn: Callable[[Db], T]) -> T:
        if not self._open:
            raise StorageClosed("storage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._read, fn)

    def _read(self, fn: Callable[[Db], T]) -> T:
        b = self._backend
        if b.db is None:
            raise StorageUnavailable(f"{self.label} is unreachable (reconnecting)")
        try:
            return fn(b.db)
        except Exception as exc:
            if b.is_disconnect(exc):
                b.close()
                raise StorageUnavailable(f"lost the connection to {self.label}") from exc
            raise
        finally:
            if b.db is not None:
                b.end_read()
