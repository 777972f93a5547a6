"""One list of numbered migrations for both engines. SQLite: a file of an earlier build (no ``schema_migrations``) is
adopted with every row; a file of a newer build is refused naming the file and the fix; a failing migration leaves
the file as it was; processes opening one new file together migrate it once."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from csms.runtime.cli import main
from csms.storage import migrations, records, tokens
from csms.storage.database import Storage
from csms.storage.migrations import PerDialect, SchemaTooNew
from csms.storage.readings import ReadingRecorder
from csms.storage.sqlite import SqliteDb, open_database
from tests.storage.legacy_schema import FIRST_RELEASE_DDL, LEGACY_DDL, LEGACY_METER_READINGS, SCHEMA_VERSION_ROW

KNOWN = [v for v, _, _ in migrations.MIGRATIONS]
LATEST = KNOWN[-1]
EXAMPLE = (Path(__file__).resolve().parents[2] / "config" / "examples" / "site.toml").read_text()


def legacy_file(path: Path, ddl: tuple[str, ...] = LEGACY_DDL, readings: bool = True) -> None:
    """A file as an earlier build left it: its schema, ``meta.schema_version`` = 1, and rows written by the very
    operations the central system runs (a station, a 1.6 transaction and its id counter, an event)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in (*ddl, SCHEMA_VERSION_ROW, *([LEGACY_METER_READINGS] if readings else [])):
        conn.execute(statement)
    db = SqliteDb(conn)
    records.station_connected("CP1", "ocpp1.6", 10.0)(db)
    assert records.start_transaction_16("CP1", 1, "TAG", 13.0, 1000.0)(db) == (1, True)
    records.log_event("from_the_old_build", 1.5, station_id="CP1")(db)
    if readings:
        conn.execute("INSERT INTO meter_readings VALUES ('AG1', 5.0, 1.0, 2.0, 3.0)")
    conn.close()


def schema(path: Path, without: tuple[str, ...] = ()) -> dict[str, object]:
    """Each table's columns (name, type, not null, default, key position) and indexes, as SQLite reports them."""
    conn = sqlite3.connect(path)
    out: dict[str, object] = {}
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for table in tables:
        if table in without:
            continue
        columns = [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({table})")]
        indexes = sorted((r[1], r[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{r[1]}')")))
                         for r in conn.execute(f"PRAGMA index_list({table})"))
        out[table] = (columns, indexes)
    conn.close()
    return out


def versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()


def test_the_one_list_builds_on_sqlite_the_schema_earlier_builds_made(tmp_path):
    """Rendered for SQLite (REAL, INTEGER, rowid keys), migration 1 is exactly the schema of the last build before
    the list: same columns, types, keys and indexes; the later migrations add their own tables."""
    old, new = tmp_path / "old.sqlite", tmp_path / "new.sqlite"
    legacy_file(old)
    open_database(str(new)).conn.close()
    assert schema(new, without=("schema_migrations", "group_leases", "controllers")) == schema(old)
    assert versions(new) == KNOWN


@pytest.mark.parametrize(("ddl", "readings"), [(LEGACY_DDL, True), (FIRST_RELEASE_DDL, False)],
                         ids=["last-build", "first-release"])
async def test_a_file_of_an_earlier_build_is_adopted_with_its_rows(tmp_path, caplog, ddl, readings):
    path = tmp_path / "csms.sqlite"
    legacy_file(path, ddl, readings)
    caplog.set_level("INFO", "csms.storage")
    async with Storage(str(path), commit_interval=0) as s:
        station = await s.read(lambda db: list(db.query("SELECT id, connected FROM stations")))
        assert station == [{"id": "CP1", "connected": 1}]
        kinds = await s.read(lambda db: [r["kind"] for r in db.query("SELECT kind FROM events")])
        assert kinds == ["from_the_old_build"]
        # the retried StartTransaction keeps its id, the next one continues the old counter
        assert await s.write(records.start_transaction_16("CP1", 1, "TAG", 13.0, 1000.0)) == (1, False)
        assert await s.write(records.start_transaction_16("CP1", 2, "TAG", 14.0, 0.0)) == (2, True)
        # tables the earlier build lacked are there now
        await s.write(tokens.save_token(("org", "T1"), None, 20.0, "test", "token_deleted"))
        recorder = ReadingRecorder(s, clock=lambda: 0.0)
        recorder.add("AG2", 6.0, (4.0, 5.0, 6.0))
        recorder.flush()
        await s.write(records.log_event("after", 2.0))
        readings_now = await s.read(lambda db: db.execute("SELECT count(*) FROM meter_readings").fetchone()[0])
        assert readings_now == (2 if readings else 1)
    assert versions(path) == KNOWN
    assert "created by an earlier csms" in caplog.text
    reopened = open_database(str(path))  # a second start finds nothing to do
    assert [r["name"].endswith("(adopted: a file of an earlier build)") for r in reopened.query(
        "SELECT name FROM schema_migrations ORDER BY version")] == [True] + [False] * (len(KNOWN) - 1)
    reopened.conn.close()
    assert versions(path) == KNOWN


def test_a_file_of_a_newer_build_is_refused_naming_the_file_and_the_fix(tmp_path, capsys):
    path = tmp_path / "csms.sqlite"
    db = open_database(str(path))
    db.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from the future', 0)",
               [LATEST + 1])
    db.conn.close()
    before = schema(path)
    with pytest.raises(SchemaTooNew) as refused:
        open_database(str(path))
    message = str(refused.value)
    assert str(path) in message and f"version {LATEST + 1}" in message and f"up to version {LATEST}" in message
    assert "run that newer csms, or restore a backup" in message
    assert schema(path) == before and versions(path) == [*KNOWN, LATEST + 1]  # untouched

    config = tmp_path / "site.toml"
    config.write_text(EXAMPLE.replace('database = "../../var/csms.sqlite"', f'database = "{path}"'))
    for argv in (["stations", "--config", str(config)], ["serve", "--config", str(config)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"storage: {path}: its schema is at version {LATEST + 1}" in err and "Traceback" not in err


def test_a_file_that_is_not_a_csms_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', 'v7')")
    conn.commit()
    conn.close()
    with pytest.raises(migrations.SchemaError, match=f"{path}: meta.schema_version is 'v7'"):
        open_database(str(path))


def test_sqlite_migrations_apply_once_in_order_and_a_failing_one_leaves_the_file_as_it_was(tmp_path):
    path = tmp_path / "m.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrations.migrate_sqlite(conn, str(path)) == KNOWN
    assert migrations.migrate_sqlite(conn, str(path)) == []
    extra = (*migrations.MIGRATIONS, (LATEST + 1, "a column", ("ALTER TABLE stations ADD COLUMN note TEXT",)))
    assert migrations.migrate_sqlite(conn, str(path), extra) == [LATEST + 1]
    broken = (*extra, (LATEST + 2, "broken", ("CREATE TABLE half (x TEXT)", "ALTER TABLE nowhere ADD COLUMN x TEXT")))
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        migrations.migrate_sqlite(conn, str(path), broken)
    assert not conn.in_transaction
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None
    assert versions(path) == [*KNOWN, LATEST + 1]
    conn.close()


def test_processes_opening_one_new_file_together_migrate_it_once(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def opener() -> None:
        try:
            start.wait()
            open_database(path).conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and versions(Path(path)) == KNOWN


def test_a_schema_change_written_once_reaches_both_engines(storage_target):
    """A statement in PostgreSQL's spelling is rendered for SQLite; a PerDialect one is taken as written."""
    change = (LATEST + 1, "a measurement and a note", (
        "ALTER TABLE stations ADD COLUMN measured DOUBLE PRECISION",
        PerDialect(postgresql="ALTER TABLE stations ADD COLUMN note VARCHAR(20)",
                   sqlite="ALTER TABLE stations ADD COLUMN note TEXT"),
    ))
    if storage_target.startswith("postgresql"):
        import psycopg

        with psycopg.connect(storage_target) as conn:
            assert migrations.migrate(conn, (*migrations.MIGRATIONS, change)) == [*KNOWN, LATEST + 1]
            types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                      "WHERE table_name = 'stations'").fetchall())
        assert (types["measured"], types["note"]) == ("double precision", "character varying")
    else:
        conn = sqlite3.connect(storage_target, isolation_level=None)
        assert migrations.migrate_sqlite(conn, storage_target, (*migrations.MIGRATIONS, change)) == [*KNOWN, LATEST + 1]
        types = {r[1]: r[2] for r in conn.execute("PRAGMA table_info(stations)")}
        conn.close()
        assert (types["measured"], types["note"]) == ("REAL", "TEXT")
