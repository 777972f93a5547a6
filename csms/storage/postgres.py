"""PostgreSQL (psycopg 3): the handle the shared operations run on, and the writer thread's connection.

It mirrors the SQLite design: one synchronous connection, owned by the storage thread (the event loop never
waits on the network), explicit transactions whose ``commit()`` returns only once the server has made them
durable (``synchronous_commit`` as the server has it: on by default). The operations keep SQLite's ``?``
placeholders; :func:`to_pg` turns them into psycopg's ``%s`` (no operation puts a ``?`` or ``%`` inside a
literal, so the translation is a plain replace, cached per statement).

A URL's password is never logged: ``redact_url`` is what log lines and errors show.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from csms.storage import migrations
from csms.storage.sql import POSTGRES, Dialect, redact_url

#: Seconds a connection attempt may take before it counts as failed (then the writer backs off and retries).
CONNECT_TIMEOUT = 5


@lru_cache(maxsize=512)
def to_pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PgDb:
    """A psycopg connection as the shared operations use it (see :class:`csms.storage.sql.Db`)."""

    dialect: Dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        return self.conn.execute(to_pg(sql), list(parameters or ()))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(to_pg(sql), list(rows))

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(to_pg(sql), list(params or ()))
            return cur.fetchall()

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Runs an INSERT and returns the new row's ``id`` (RETURNING: PostgreSQL has no rowid)."""
        return int(self.execute(sql + " RETURNING id", params).fetchone()[0])


def connect(url: str) -> PgDb:
    """A migrated connection (not in autocommit mode: every write runs in an explicit transaction)."""
    conn = psycopg.connect(url, autocommit=False, connect_timeout=CONNECT_TIMEOUT, application_name="csms")
    try:
        migrations.migrate(conn, where=redact_url(url))
    except BaseException:
        conn.close()
        raise
    return PgDb(conn)


class PostgresBackend:
    """The writer thread's connection to a PostgreSQL database (see :class:`csms.storage.database.Storage`)."""

    def __init__(self, url: str):
        self.url = url
        self.label = redact_url(url)
        self.db: PgDb | None = None

    def connect(self) -> None:
        self.close()
        self.db = connect(self.url)

    def begin(self) -> None:
        """psycopg opens the transaction with the first statement."""

    def commit(self) -> None:
        assert self.db is not None
        self.db.conn.commit()

    def rollback(self) -> None:
        if self.db is not None and not self.db.conn.closed:
            try:
                self.db.conn.rollback()
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
        if db is not None:
            db.conn.close()
