"""PostgreSQL only: versioned migrations, and no acknowledged write lost when the server restarts mid-run."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from csms.storage import migrations, records
from csms.storage.database import Storage, StorageUnavailable
from tests.support.postgres import PostgresCluster, unavailable_reason


def test_migrations_apply_once_in_order_and_refuse_a_newer_schema(postgres_url):
    known = [v for v, _, _ in migrations.MIGRATIONS]
    assert known == list(range(1, len(known) + 1))  # numbered from 1, no gaps
    latest = known[-1]
    with psycopg.connect(postgres_url) as conn:
        assert migrations.migrate(conn) == known
        assert migrations.migrate(conn) == []  # idempotent: a second start applies nothing
        extra = (*migrations.MIGRATIONS, (latest + 1, "a column", ("ALTER TABLE stations ADD COLUMN note TEXT",)))
        assert migrations.migrate(conn, extra) == [latest + 1]
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [v for v, _ in rows] == [*known, latest + 1]
        with pytest.raises(migrations.SchemaTooNew, match=f"version {latest + 1}"):
            migrations.migrate(conn)  # this build knows only up to ``latest``


def test_a_failing_migration_leaves_the_schema_as_it_was(postgres_url):
    with psycopg.connect(postgres_url) as conn:
        latest = migrations.MIGRATIONS[-1][0]
        broken = (*migrations.MIGRATIONS, (latest + 1, "broken", ("ALTER TABLE nowhere ADD COLUMN x TEXT",)))
        with pytest.raises(psycopg.errors.UndefinedTable):
            migrations.migrate(conn, broken)
        conn.rollback()
        assert conn.execute("SELECT to_regclass('stations')").fetchone()[0] is None  # nothing half-applied
        assert migrations.migrate(conn) == list(range(1, latest + 1))


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
async def test_a_server_restart_mid_run_loses_no_acknowledged_write(caplog):
    """Writers keep writing while the server is stopped and started again: every write that was acknowledged
    is in the database afterwards, the ones that failed failed clearly, and the writer carried on."""
    caplog.set_level(logging.WARNING, "csms.storage")
    with PostgresCluster(dbname="outage") as pg:
        async with Storage(pg.url, commit_interval=0.002, outage_timeout=20) as storage:
            acked: list[int] = []
            failed: list[int] = []
            stop = asyncio.Event()

            async def writer(n: int) -> None:
                i = 0
                while not stop.is_set():
                    key = n * 1_000_000 + i
                    i += 1
                    try:
                        await storage.write(records.log_event("w", float(key), station_id=str(key)))
                    except StorageUnavailable:
                        failed.append(key)
                        await asyncio.sleep(0.01)
                    else:
                        acked.append(key)

            tasks = [asyncio.create_task(writer(n)) for n in range(8)]
            await asyncio.sleep(0.3)
            before = len(acked)
            await asyncio.to_thread(pg.stop)
            await asyncio.sleep(0.5)  # writes queue up (or fail) while the server is down
            await asyncio.to_thread(pg.start)
            async with asyncio.timeout(20):
                while len(acked) < before + 200:
                    await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
            assert storage.reconnects >= 1
            stored = await storage.read(lambda db: {int(r["station_id"]) for r in db.query(
                "SELECT station_id FROM events WHERE kind = 'w'")})
        assert before > 0 and set(acked) <= stored, f"lost {len(set(acked) - stored)} acknowledged write(s)"
        assert not set(failed) & set(acked)
        assert "reconnected" in caplog.text


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
async def test_writes_fail_clearly_after_the_outage_timeout_and_the_password_is_never_logged(caplog):
    with PostgresCluster(dbname="down") as pg:
        url = pg.url.replace(f"{pg.user}@", f"{pg.user}:s3cret-pw@")  # trust auth ignores the password
        async with Storage(url, commit_interval=0, outage_timeout=0.5) as storage:
            await storage.write(records.log_event("before", 1.0))
            await asyncio.to_thread(pg.stop)
            with pytest.raises(StorageUnavailable, match="unreachable"):
                async with asyncio.timeout(10):
                    await storage.write(records.log_event("during", 2.0))
            await asyncio.to_thread(pg.start)
            async with asyncio.timeout(10):
                await storage.write(records.log_event("after", 3.0))
            kinds = await storage.read(lambda db: [r["kind"] for r in db.query("SELECT kind FROM events ORDER BY at")])
            assert kinds[0] == "before" and kinds[-1] == "after" and "during" not in kinds
        assert "s3cret-pw" not in caplog.text and ":***@" in caplog.text
