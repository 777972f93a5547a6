"""SQLite, the embedded default: the connection, and the writer thread's transactions on it.

The handle the operations get is sqlite-utils' ``Database`` (:class:`SqliteDb` adds the :class:`~csms.storage.sql.Db`
methods it lacks), in autocommit mode with explicit ``BEGIN IMMEDIATE``/``COMMIT`` around each group commit, WAL
and ``synchronous=FULL``: a commit that returned is on disk. The schema comes from the numbered migrations both
engines share (:mod:`.migrations`).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from csms.storage import migrations
from csms.storage.sql import SQLITE, Dialect


@contextlib.contextmanager
def _unimportable(*names: str) -> Iterator[None]:
    """``import NAME`` raises ImportError within the block, for each name nobody has imported yet."""
    blocked = [name for name in names if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


# sqlite-utils imports numpy and pandas whenever they are installed (numpy comes with matplotlib, in the test
# environment for one), only to map their scalar types to column types. The central system never hands it such
# values, and numpy alone is 11 MB of a server's memory. A later ``import numpy`` elsewhere works as usual.
with _unimportable("numpy", "pandas"):
    from sqlite_utils import Database


class SqliteDb(Database):
    """sqlite-utils' ``Database`` plus what the shared operations need of any engine."""

    dialect: Dialect = SQLITE

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Runs an INSERT and returns the new row's ``id`` (its rowid)."""
        return int(self.execute(sql, params).lastrowid)


#: Seconds a connection waits for another one's lock (a writer's commit, a migration, the switch to WAL).
BUSY_TIMEOUT = 5.0


def open_database(path: str, *, check_same_thread: bool = True) -> SqliteDb:
    """The file at ``path`` (created if missing), migrated to this build's schema (:mod:`.migrations`; a file of
    an earlier build is adopted, one of a newer build refused with :class:`~csms.storage.migrations.SchemaTooNew`)."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=check_same_thread, isolation_level=None)
    db = SqliteDb(conn)
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT * 1000:.0f}")  # first: another process may be migrating it
    if path != ":memory:":
        _enable_wal(db)
    db.execute("PRAGMA synchronous=NORMAL" if path == ":memory:" else "PRAGMA synchronous=FULL")
    try:
        migrations.migrate_sqlite(conn, path)
    except BaseException:
        conn.close()
        raise
    return db


def _enable_wal(db: SqliteDb) -> None:
    """Switches the file to WAL, waiting up to BUSY_TIMEOUT for another connection doing the same.

    Two connections that switch a new file together each hold the shared lock the other's switch must wait for;
    SQLite refuses to wait in that deadlock and answers "database is locked" at once, without its busy handler
    (about 1 in 100 of four processes opening one new file together, ``tests/storage/test_migrations.py``). The
    one that backs off and tries again finds the file in WAL already."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class SqliteBackend:
    """The writer thread's connection to a SQLite file (see :class:`csms.storage.database.Storage`)."""

    def __init__(self, path: str):
        self.path = path
        #: What log lines call this database.
        self.label = path
        self.db: SqliteDb | None = None
        #: A file has no server to hang: nothing to watch (see :mod:`.hang`).
        self.guard = None

    def connect(self) -> None:
        self.db = open_database(self.path)

    def begin(self) -> None:
        assert self.db is not None
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        assert self.db is not None
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db is not None and self.db.conn.in_transaction:
            self.db.execute("ROLLBACK")

    def end_read(self) -> None:
        """Reads run in autocommit mode: nothing to end."""

    def is_disconnect(self, exc: BaseException) -> bool:
        """A file never goes away the way a server does."""
        return False

    def close(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            db.conn.close()
