"""PostgreSQL (psycopg 3): the handle the shared operations run on, and the writer thread's connection.

It mirrors the SQLite design: one synchronous connection, owned by the storage thread (the event loop never
waits on the network), explicit transactions whose ``commit()`` returns only once the server has made them
durable (``synchronous_commit`` as the server has it: on by default). The operations keep SQLite's ``?``
placeholders; :func:`to_pg` turns them into psycopg's ``%s`` (no operation puts a ``?`` or ``%`` inside a
literal, so the translation is a plain replace, cached per statement).

Every wait on the server is bounded (:mod:`.hang`): a server that stops answering without closing the connection
gets the connection cut after ``statement_timeout`` seconds, which the writer handles as the server going away.

A URL's password is never logged: ``redact_url`` is what log lines and errors show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from csms.storage import migrations
from csms.storage.hang import HangGuard
from csms.storage.sql import POSTGRES, Dialect, redact_url

#: Seconds a connection attempt may take before it counts as failed (then the writer backs off and retries).
CONNECT_TIMEOUT = 5
#: Seconds the schema migration at connect may wait at least (it may wait for another process migrating).
MIGRATE_TIMEOUT = 30.0


@lru_cache(maxsize=512)
def to_pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PgDb:
    """A psycopg connection as the shared operations use it (see :class:`csms.storage.sql.Db`)."""

    dialect: Dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection[Any], guard: HangGuard | None = None):
        self.conn = conn
        #: Bounds each wait on the server (None: unbounded, for one-off command-line reads).
        self.guard = guard

    def waiting(self) -> AbstractContextManager[None]:
        return nullcontext() if self.guard is None else self.guard.waiting()

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        with self.waiting():
            return self.conn.execute(to_pg(sql), list(parameters or ()))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.waiting(), self.conn.cursor() as cur:
            cur.executemany(to_pg(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.waiting(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(to_pg(sql), list(params or ()))
            return cur.fetchall()

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Runs an INSERT and returns the new row's ``id`` (RETURNING: PostgreSQL has no rowid)."""
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])

    def commit(self) -> None:
        with self.waiting():
            self.conn.commit()

    def rollback(self) -> None:
        with self.waiting():
            self.conn.rollback()


def connect(url: str, guard: HangGuard | None = None) -> PgDb:
    """A migrated connection (not in autocommit mode: every write runs in an explicit transaction), watched by
    ``guard`` from the moment it is open (the migration as a whole may take :data:`MIGRATE_TIMEOUT` seconds, or
    the guard's timeout if longer)."""
    conn = psycopg.connect(url, autocommit=False, connect_timeout=CONNECT_TIMEOUT, application_name="csms")
    try:
        if guard is None:
            migrations.migrate(conn, where=redact_url(url))
        else:
            guard.attach(conn.pgconn.socket)
            with guard.waiting(max(guard.timeout, MIGRATE_TIMEOUT)):
                migrations.migrate(conn, where=redact_url(url))
    except BaseException:
        if guard is not None:
            guard.detach()
        conn.close()
        raise
    return PgDb(conn, guard)


class PostgresBackend:
    """The writer thread's connection to a PostgreSQL database (see :class:`csms.storage.database.Storage`)."""

    def __init__(self, url: str, statement_timeout: float = 10.0):
        self.url = url
        self.label = redact_url(url)
        self.db: PgDb | None = None
        #: Cuts the connection when the server leaves a statement unanswered for ``statement_timeout`` seconds;
        #: the storage's watchdog calls its ``check``.
        self.guard: HangGuard | None = HangGuard(statement_timeout)

    def connect(self) -> None:
        self.close()
        self.db = connect(self.url, self.guard)

    def begin(self) -> None:
        """psycopg opens the transaction with the first statement."""

    def commit(self) -> None:
        assert self.db is not None
        self.db.commit()

    def rollback(self) -> None:
        if self.db is not None and not self.db.conn.closed:
            try:
                self.db.rollback()
            except psycopg.Error:
                pass  # a broken connection: is_disconnect tells the writer to reconnect

    def end_read(self) -> None:
        """Ends the transaction a read opened, so the connection never idles inside one."""
        self.rollback()

    def is_disconnect(self, exc: BaseException) -> bool:
        """True when the connection is gone (server stopped or restarted, network down), not the statement wrong."""
        if self.db is None:
            return True
        conn = self.db.conn
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and (conn.closed or conn.broken)

    def close(self) -> None:
        db, self.db = self.db, None
        if self.guard is not None:
            self.guard.detach()
        if db is not None:
            db.conn.close()
