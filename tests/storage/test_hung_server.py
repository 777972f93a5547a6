"""A PostgreSQL server that hangs without closing the connection (a FreezableProxy between csms and the server):
writes and reads fail or are retried within a bound, a commit in flight is reported unknown, and once the server
answers again everything resumes with no acknowledged write lost. The hung statement is cut, not cancelled:
psycopg's cancel is a new connection to the same hung server and hangs in turn."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from csms.storage import records
from csms.storage.database import Storage, StorageUnavailable
from csms.storage.hang import HangGuard
from csms.storage.postgres import CONNECT_TIMEOUT
from tests.support.postgres import PostgresCluster
from tests.support.tcp_proxy import FreezableProxy

#: What the tests set (the defaults are 10 s and 30 s): short, to keep the tests short.
STATEMENT_TIMEOUT = 1.0
OUTAGE_TIMEOUT = 2.0
#: Longest a write may take while the server hangs: waiting out the outage, then one connection attempt and one
#: hung statement at most, plus the watchdog's tick and a loaded machine's slack.
BOUND = OUTAGE_TIMEOUT + CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 2.0


# -- the guard on its own ----------------------------------------------------------------------------------------


def test_a_wait_past_its_deadline_is_cut_and_one_that_ended_in_time_is_not():
    a, b = socket.socketpair()
    guard = HangGuard(5.0)
    guard.attach(a.fileno())
    with guard.waiting(0.01):
        pass
    assert guard.check(time.monotonic() + 60) is None  # ended in time: never cut afterwards
    b.sendall(b"x")
    assert a.recv(1) == b"x"

    got: list[bytes] = []
    started = time.monotonic()

    def blocked() -> None:
        with guard.waiting(0.2):
            got.append(a.recv(1))  # the peer never answers

    thread = threading.Thread(target=blocked)
    thread.start()
    while guard.check() is None:
        time.sleep(0.01)
    thread.join(2)
    assert not thread.is_alive() and got == [b""] and guard.tripped == 1
    assert time.monotonic() - started >= 0.2
    guard.detach()
    a.close()
    b.close()


def test_the_cut_goes_to_the_watched_socket_even_after_its_number_was_reused():
    """libpq closes its descriptor when a connection fails; a new socket may get the number. The guard cuts its
    own duplicate, i.e. the old socket, never the new one."""
    a, b = socket.socketpair()
    guard = HangGuard(5.0)
    guard.attach(a.fileno())
    a.close()
    b.close()
    c, d = socket.socketpair()  # likely to reuse a's number
    with guard.waiting(0.0):
        assert guard.check() == 0.0
    d.sendall(b"still here")
    assert c.recv(16) == b"still here"
    guard.detach()
    assert guard.check(time.monotonic() + 60) is None  # detached: nothing to cut
    c.close()
    d.close()


# -- a hung server -------------------------------------------------------------------------------------------------


@pytest.fixture
async def hung(postgres_cluster: PostgresCluster, postgres_url: str) -> AsyncIterator[tuple[FreezableProxy, str]]:
    """A proxy in front of a fresh database, and the URL through it."""
    async with FreezableProxy(postgres_cluster.port) as proxy:
        yield proxy, f"postgresql://{postgres_cluster.user}@127.0.0.1:{proxy.port}/{postgres_url.rpartition('/')[2]}"


def storage(url: str) -> Storage:
    return Storage(url, commit_interval=0.002, outage_timeout=OUTAGE_TIMEOUT, statement_timeout=STATEMENT_TIMEOUT)


@pytest.mark.slow
async def test_writers_against_a_hung_server_fail_within_the_bound_then_resume_losing_nothing(hung, caplog):
    proxy, url = hung
    caplog.set_level("WARNING", "csms.storage")
    async with storage(url) as s:
        acked: list[int] = []
        failed: list[int] = []
        slowest = 0.0
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            nonlocal slowest
            i = 0
            while not stop.is_set():
                key, i = n * 1_000_000 + i, i + 1
                started = time.monotonic()
                try:
                    await s.write(records.log_event("w", float(key), station_id=str(key)))
                except StorageUnavailable:
                    failed.append(key)
                    await asyncio.sleep(0.05)
                else:
                    acked.append(key)
                slowest = max(slowest, time.monotonic() - started)

        tasks = [asyncio.create_task(writer(n)) for n in range(8)]
        await asyncio.sleep(0.3)
        proxy.freeze()
        frozen_at, before = time.monotonic(), len(acked)
        await asyncio.sleep(0.2)
        read_started = time.monotonic()
        with pytest.raises(StorageUnavailable):  # a read waits no longer than a write
            await s.read(lambda db: db.execute("SELECT count(*) FROM events").fetchone())
        assert time.monotonic() - read_started < STATEMENT_TIMEOUT + 1.5
        async with asyncio.timeout(BOUND + 2):
            while not failed:
                await asyncio.sleep(0.05)
        assert time.monotonic() - frozen_at < BOUND
        assert len(acked) <= before + 8  # at most the batch already past its commit when the freeze came
        proxy.thaw()
        async with asyncio.timeout(20):
            while len(acked) < before + 200:
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
        stored = await s.read(lambda db: {int(r["station_id"]) for r in db.query(
            "SELECT station_id FROM events WHERE kind = 'w'")})
    assert set(acked) <= stored, f"lost {len(set(acked) - stored)} acknowledged write(s)"
    assert not set(failed) & set(acked)
    assert slowest < BOUND, f"a write took {slowest:.1f} s"
    assert "left a statement unanswered for 1 s: cut the connection" in caplog.text
    assert "reconnected" in caplog.text


async def test_a_commit_the_hung_server_never_answered_is_reported_unknown(hung):
    """The server hangs between the statements and the COMMIT: the write fails as "outcome unknown" (never
    retried, never acknowledged) within the statement timeout; here the COMMIT never reached it, so no row."""
    proxy, url = hung
    async with storage(url) as s:
        await s.write(records.log_event("before", 1.0))

        def hangs_before_commit(db) -> None:
            records.log_event("in_flight", 2.0)(db)
            proxy.freeze()  # a flag: safe from the storage thread

        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="during a commit: outcome unknown"):
            await s.write(hangs_before_commit)
        assert time.monotonic() - started < STATEMENT_TIMEOUT + 1.5
        proxy.thaw()
        async with asyncio.timeout(10):
            while True:
                try:
                    await s.write(records.log_event("after", 3.0))
                    break
                except StorageUnavailable:
                    await asyncio.sleep(0.1)
        kinds = await s.read(lambda db: [r["kind"] for r in db.query("SELECT kind FROM events ORDER BY at")])
    assert kinds == ["before", "after"]


async def test_a_hung_statement_is_cut_where_psycopgs_cancel_would_hang(hung):
    """psycopg cancels a query by connecting to the server again, which a hung server leaves unanswered; the
    storage thread instead cuts its own connection, so it is free again within the statement timeout."""
    proxy, url = hung
    # in a thread: the proxy runs on this loop
    conn = await asyncio.to_thread(psycopg.connect, url, autocommit=True, connect_timeout=5)
    try:
        await asyncio.to_thread(conn.execute, "SELECT 1")
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.CancellationTimeout):
            await asyncio.to_thread(conn.cancel_safe, timeout=2.0)
        assert time.monotonic() - started >= 2.0  # the cancel itself waited on the hung server
    finally:
        conn.pgconn.finish()
        proxy.thaw()
    async with storage(url) as s:
        await s.write(records.log_event("before", 1.0))
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await s.read(lambda db: db.execute("SELECT count(*) FROM events").fetchone())
        assert time.monotonic() - started < STATEMENT_TIMEOUT + 1.5
        closing = time.monotonic()
        await s.close()  # closing during the hang is bounded too (one connection attempt at most)
        assert time.monotonic() - closing < CONNECT_TIMEOUT + STATEMENT_TIMEOUT + 2
        proxy.thaw()
