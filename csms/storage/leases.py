"""The ``group_leases`` table: which controller leads each load-balancer group, judged on the server's clock.

One row per group: the holder (a controller process), its fencing token and when its lease expires, in epoch
seconds of the **database server's** clock. Every expiry test and every new expiry uses the server's ``now()``,
never a node's clock, so nodes whose clocks disagree cannot both hold a lease. ``now()`` is the start of the
statement's transaction (each statement is its own transaction here: autocommit), so it is after the request
was sent, which is what the leader's local deadline counts from (:mod:`csms.cluster.lease`), and it is one
instant for the whole statement.

Tokens: the first holder of a group gets 1, every new term (a takeover, or a holder starting over) one more; a
renewal of the live term keeps it. A row is never deleted: it carries the group's token counter.

The leases have their own connection (:class:`LeaseStore`), not the storage writer's: a renewal must not wait
behind a queue of writes, and a short ``statement_timeout`` and connect timeout keep a hung server from
holding a renewal past the leader's deadline. Asynchronous (psycopg's ``AsyncConnection``), so the lease
manager waits on it without a thread and can give up on it when its own timeout fires.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from csms.storage import migrations

#: The server's clock in epoch seconds, the unit of ``expires_at``.
_NOW = "extract(epoch FROM now())::float8"

#: What happens to each claimed row (the tail of :data:`ACQUIRE` and :data:`ROUND`): a missing row is inserted; a
#: row whose lease has expired, or that this holder holds, is taken (the rest are left alone and not returned).
#: ``held`` is the token the holder believes it leads with: a renewal only when the live term is that one;
#: otherwise (a takeover, a holder that stepped down, released, or restarted) a new term with the next token. ON
#: CONFLICT cannot see the claim's own columns except through ``excluded``, so the inserted token carries
#: ``held + 1``: equal to ``l.token + 1`` exactly when the holder still knows its live term.
_TAKE = f"""
    ON CONFLICT (group_id) DO UPDATE SET
       holder = excluded.holder,
       expires_at = excluded.expires_at,
       token = CASE WHEN l.holder = excluded.holder AND l.expires_at > {_NOW} AND excluded.token = l.token + 1
                    THEN l.token ELSE l.token + 1 END
 WHERE l.holder = excluded.holder OR l.expires_at <= {_NOW}
RETURNING group_id, token"""

#: One atomic statement for every claim (see :data:`_TAKE`). Rows are claimed in group order, so two holders never
#: deadlock.
ACQUIRE = f"""
INSERT INTO group_leases AS l (group_id, holder, token, expires_at)
SELECT c.group_id, %s, COALESCE(c.held, 0) + 1, {_NOW} + c.ttl
  FROM unnest(%s::text[], %s::float8[], %s::bigint[]) AS c(group_id, ttl, held)
 ORDER BY c.group_id{_TAKE}"""

#: Seconds a dead controller's presence row is kept after it ran out (for an operator to see), then deleted.
PRESENCE_KEPT = 3600.0

#: A lease manager's round, one statement: refreshes its presence (``controllers``: live until now + ttl, wanting
#: ``groups``), claims as :data:`ACQUIRE` does, and returns the rows it holds (``group_id``, ``token``) followed by
#: every live presence (``holder``, NULL, ``node``, ``group_ids``, ``expires_at``), as of the statement's start.
#: A claim of a group it does not hold (``held`` NULL) is made only if none of the holders listed for it in
#: ``above`` (the controllers that outrank it for the group, :mod:`csms.cluster.spread`) is live and wants the
#: group, on the server's clock: a dead preferred controller stops counting the moment its presence runs out,
#: within a ttl of its death as its leases. Rows of presences long dead are deleted.
ROUND = f"""
WITH present AS (
    INSERT INTO controllers AS p (holder, node, group_ids, expires_at)
    VALUES (%(holder)s, %(node)s, %(groups)s::text[], {_NOW} + %(ttl)s)
        ON CONFLICT (holder) DO UPDATE SET
           node = excluded.node, group_ids = excluded.group_ids, expires_at = excluded.expires_at
), gone AS (
    DELETE FROM controllers WHERE expires_at < {_NOW} - {PRESENCE_KEPT} AND holder <> %(holder)s
), claimed AS (
    INSERT INTO group_leases AS l (group_id, holder, token, expires_at)
    SELECT c.group_id, %(holder)s, COALESCE(c.held, 0) + 1, {_NOW} + c.ttl
      FROM unnest(%(claims)s::text[], %(ttls)s::float8[], %(held)s::bigint[]) AS c(group_id, ttl, held)
     WHERE c.held IS NOT NULL OR NOT EXISTS (
           SELECT 1 FROM unnest(%(above_groups)s::text[], %(above)s::text[]) AS o(group_id, holder)
             JOIN controllers p ON p.holder = o.holder
            WHERE o.group_id = c.group_id AND p.expires_at > {_NOW} AND c.group_id = ANY(p.group_ids))
     ORDER BY c.group_id{_TAKE.replace(chr(10), chr(10) + "    ")}
)
SELECT group_id, token, NULL::text, NULL::text[], NULL::float8 FROM claimed
 UNION ALL
SELECT holder, NULL, node, group_ids, expires_at FROM controllers WHERE expires_at > {_NOW}"""

#: A controller stopping cleanly: its presence goes at once, so the others take its groups at their next round.
LEAVE = "DELETE FROM controllers WHERE holder = %s"

#: Ends the given terms at once (clean shutdown, a group given up), so another controller need not wait for the
#: expiry. Only the very term (holder and token): a release that reaches the server late never ends a newer one.
RELEASE = f"""
UPDATE group_leases AS l SET expires_at = LEAST(l.expires_at, {_NOW})
  FROM unnest(%s::text[], %s::bigint[]) AS r(group_id, token)
 WHERE l.group_id = r.group_id AND l.token = r.token AND l.holder = %s
RETURNING l.group_id"""

LEASES = f"SELECT group_id, holder, token, expires_at - {_NOW} FROM group_leases ORDER BY group_id"
PRESENCES = f"SELECT holder, node, group_ids, expires_at - {_NOW} FROM controllers ORDER BY holder"

#: libpq counts a connect timeout in whole seconds and treats anything under 2 as 2.
MIN_CONNECT_TIMEOUT = 2
#: Seconds the one-off schema migration may run per statement (it may wait for another process migrating).
MIGRATE_STATEMENT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Claim:
    """An acquire/renew of ``group_id`` for ``ttl`` seconds; ``held``: the token the claimant leads with, if any;
    ``above``: holders that, while live and wanting the group, keep it from being claimed when not held
    (used by :meth:`LeaseStore.round` only)."""

    group_id: str
    ttl: float
    held: int | None = None
    above: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Presence:
    """A live controller as a round saw it: ``expires_at`` in epoch seconds of the server's clock (in
    :meth:`LeaseStore.presences`: the seconds left, negative once it ran out)."""

    holder: str
    node: str
    groups: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """A row as an operator (or a test) sees it: ``remaining`` seconds on the server's clock (negative: expired)."""

    group_id: str
    holder: str
    token: int
    remaining: float


def connect_kwargs(timeout: float, application_name: str) -> dict[str, Any]:
    """psycopg connect arguments bounding every wait at about ``timeout`` seconds (the server cancels a statement
    running longer; libpq gives up connecting after the timeout, rounded up, at least 2 s)."""
    return {"connect_timeout": max(MIN_CONNECT_TIMEOUT, math.ceil(timeout)), "application_name": application_name,
            "options": f"-c statement_timeout={max(1, round(timeout * 1000))}"}


def migrate(url: str, timeout: float) -> list[int]:
    """Applies the pending migrations (creating ``group_leases`` on a database that lacks it), synchronously."""
    with psycopg.connect(url, autocommit=False, **connect_kwargs(max(timeout, MIGRATE_STATEMENT_TIMEOUT),
                                                                 "csms-migrate")) as conn:
        return migrations.migrate(conn)


class LeaseStore:
    """One autocommit connection for the lease statements (see the module docstring)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]):
        self.conn = conn

    @classmethod
    async def open(cls, url: str, *, timeout: float, migrate_first: bool = False) -> LeaseStore:
        """Connects (and, with ``migrate_first``, migrates the schema first, in a thread)."""
        if migrate_first:
            await asyncio.to_thread(migrate, url, timeout)
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                     **connect_kwargs(timeout, "csms-lease"))
        return cls(conn)

    async def acquire(self, holder: str, claims: Sequence[Claim]) -> dict[str, int]:
        """Claims every group in ``claims`` for ``holder``; returns the token of each one it now holds (a group
        missing from the answer is held by another)."""
        if not claims:
            return {}
        claims = sorted({c.group_id: c for c in claims}.values(), key=lambda c: c.group_id)
        cur = await self.conn.execute(ACQUIRE, [holder, [c.group_id for c in claims], [float(c.ttl) for c in claims],
                                                [c.held for c in claims]])
        return {group_id: int(token) for group_id, token in await cur.fetchall()}

    async def round(self, holder: str, node: str, ttl: float, groups: Sequence[str],
                    claims: Sequence[Claim]) -> tuple[dict[str, int], list[Presence]]:
        """Refreshes ``holder``'s presence for ``ttl`` seconds wanting ``groups`` and makes ``claims`` (see
        :data:`ROUND`); returns the token of each group it now holds, and every live presence (as of just before
        this refresh: its own as it was, if it was live)."""
        claims = sorted({c.group_id: c for c in claims}.values(), key=lambda c: c.group_id)
        above = [(c.group_id, h) for c in claims for h in c.above]
        cur = await self.conn.execute(ROUND, {
            "holder": holder, "node": node, "groups": sorted(set(groups)), "ttl": float(ttl),
            "claims": [c.group_id for c in claims], "ttls": [float(c.ttl) for c in claims],
            "held": [c.held for c in claims], "above_groups": [g for g, _ in above], "above": [h for _, h in above]})
        won: dict[str, int] = {}
        live: list[Presence] = []
        for key, token, node_, group_ids, expires_at in await cur.fetchall():
            if node_ is None:
                won[key] = int(token)
            else:
                live.append(Presence(key, node_, tuple(group_ids), float(expires_at)))
        return won, live

    async def leave(self, holder: str) -> None:
        """Deletes ``holder``'s presence (a clean stop)."""
        await self.conn.execute(LEAVE, [holder])

    async def release(self, holder: str, terms: Mapping[str, int]) -> list[str]:
        """Ends ``holder``'s terms (group → token) now; returns the groups whose row it ended."""
        if not terms:
            return []
        groups = sorted(terms)
        cur = await self.conn.execute(RELEASE, [groups, [terms[g] for g in groups], holder])
        return sorted(row[0] for row in await cur.fetchall())

    async def leases(self) -> list[LeaseRow]:
        cur = await self.conn.execute(LEASES)
        return [LeaseRow(g, h, int(t), float(r)) for g, h, t, r in await cur.fetchall()]

    async def presences(self) -> list[Presence]:
        cur = await self.conn.execute(PRESENCES)
        return [Presence(h, n, tuple(g), float(r)) for h, n, g, r in await cur.fetchall()]

    async def close(self) -> None:
        await self.conn.close()

    def abort(self) -> None:
        """Drops the connection without a word to the server (a hung one, or a test's simulated crash)."""
        self.conn.pgconn.finish()
