"""The seam between the storage operations and the database engines: one copy of every query, two dialects.

Every operation in :mod:`csms.storage` is a function of a :class:`Db`: it runs plain SQL with ``?``
placeholders through :meth:`Db.execute` / :meth:`Db.query` / :meth:`Db.executemany`, and SQL that the engines
spell differently (ignoring a duplicate, replacing a row, a new row's id, bucketing a time range, the catalogue)
comes from the handle's :class:`Dialect`, so that what differs lives in one place per engine:
:data:`SQLITE` here and in :mod:`.sqlite`, :data:`POSTGRES` here and in :mod:`.postgres` and
:mod:`.migrations`. The SQLite handle is sqlite-utils' ``Database`` itself (a subclass), so code written
against it before the seam keeps working unchanged there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit


class StorageClosed(RuntimeError):
    """Storage was closed (or never opened): nothing more is accepted."""


class StorageUnavailable(StorageClosed):
    """The database server cannot be reached (or the connection dropped while a commit was in flight, so
    whether it committed is unknown). A kind of :class:`StorageClosed` so that every caller that already
    answers "storage is closed" with an error (the operator view's 503) does the same during an outage."""


class Cursor(Protocol):
    """What :meth:`Db.execute` returns: the DB-API cursor of either engine (rows are tuples)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection as the storage operations use it, on the writer thread only."""

    dialect: Dialect

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Iterable[dict[str, Any]]: ...

    def insert_id(self, sql: str, params: Sequence[Any]) -> int: ...


@dataclass(frozen=True)
class Dialect:
    """The SQL one engine spells its own way; everything else is shared."""

    name: str
    #: ``INSERT OR IGNORE INTO`` (SQLite) or ``INSERT INTO`` + ``ON CONFLICT DO NOTHING`` (PostgreSQL).
    ignore_prefix: str
    ignore_suffix: str
    #: The catalogue query: one row when table ``?`` exists.
    table_exists_sql: str

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """An INSERT of one row that does nothing when the row is already there (``rowcount`` 0)."""
        return (f"{self.ignore_prefix} {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                f"{self.ignore_suffix}")

    def replace(self, table: str, columns: Sequence[str], key: str) -> str:
        """An INSERT that replaces the row with the same ``key`` (every column rewritten)."""
        values = f"({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        if self.name == "sqlite":
            return f"INSERT OR REPLACE INTO {table} {values}"
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c != key)
        return f"INSERT INTO {table} {values} ON CONFLICT ({key}) DO UPDATE SET {updates}"

    def bucket(self, column: str) -> str:
        """The time bucket of ``column``; takes (since, seconds per bucket, last bucket) as parameters.

        SQLite's CAST truncates (the same as floor here: the column is never before ``since``); PostgreSQL's
        rounds, so it floors explicitly. A value at ``until`` falls into the last bucket, not one past it.
        """
        if self.name == "sqlite":
            return f"MIN(CAST(({column} - ?) / ? AS INTEGER), ?)"
        return f"LEAST(FLOOR(({column} - ?) / ?)::BIGINT, ?)"

    def last_per_bucket(self, select: str, table: str, where: str, column: str) -> str:
        """The row with the highest ``column`` in each bucket, oldest bucket first.

        SQLite returns the bare columns of the row holding ``MAX(column)``; PostgreSQL has no bare columns, so
        it keeps the first row of each bucket ordered newest first (DISTINCT ON). Parameters: ``where``'s,
        then :meth:`bucket`'s, then the limit.
        """
        bucket = self.bucket(column)
        if self.name == "sqlite":
            return (f"SELECT MAX({column}) AS {column}, {select} FROM {table} WHERE {where} GROUP BY {bucket} "
                    f"ORDER BY {column} LIMIT ?")
        return (f"SELECT * FROM (SELECT DISTINCT ON (b) {column}, {select} FROM (SELECT * FROM {table} WHERE {where}) "
                f"AS w CROSS JOIN LATERAL (SELECT {bucket} AS b) AS x ORDER BY b, {column} DESC) AS last "
                f"ORDER BY {column} LIMIT ?")


SQLITE = Dialect(
    name="sqlite",
    ignore_prefix="INSERT OR IGNORE INTO",
    ignore_suffix="",
    table_exists_sql="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
)

POSTGRES = Dialect(
    name="postgresql",
    ignore_prefix="INSERT INTO",
    ignore_suffix=" ON CONFLICT DO NOTHING",
    table_exists_sql="SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
                     "AND table_name = ?",
)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: what logs and errors may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def table_exists(db: Db, name: str) -> bool:
    return db.execute(db.dialect.table_exists_sql, [name]).fetchone() is not None
