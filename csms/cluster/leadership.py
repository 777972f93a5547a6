"""The lease manager: one background task that leads its share of the groups it is given, through PostgreSQL.

It runs the policy of :mod:`.lease` against the ``group_leases`` table (:mod:`csms.storage.leases`) on a
connection of its own, and tells the controller what changes through two synchronous callbacks:
``on_gained(group_id, token)`` (act for the group, put ``token`` on every command) and
``on_lost(group_id, reason)`` (stop acting for it now).

Why each part is the way it is:

* Every due group is claimed (or renewed) in one statement, so a hundred groups cost one round trip per
  renewal interval, not a hundred.
* Controllers spread the groups (:mod:`.spread`): the same statement refreshes this manager's presence (for its
  shortest lease ttl) and returns who is live. A free group is claimed only if no live controller outranks this
  one for it, as the server sees it in that statement: a dead controller's presence runs out within the ttl of
  its death, as its leases do, so failover is as fast as without spreading. A leader hands a group to a settled
  controller that outranks it (steps down, releases; that one claims it at its next round, within ttl/3). The
  first round only registers and looks, so a starting controller does not grab the groups of those already live.
* A leader's local deadline is enforced by a loop timer of its own (``call_later``), not by the task that
  talks to the database: a renewal stuck in the network, or psycopg unwinding a cancelled query, cannot
  delay the step-down. :meth:`LeaseManager.token` checks the deadline itself too, so a controller that asks
  before each command is safe even between the deadline and the callback.
* The holder is the node name plus a random suffix per manager: two processes started with the same node
  name (a misconfiguration, or a restart before the old lease expired) are still two holders, never one
  holder acting twice.
* When PostgreSQL is down the manager retries with a backoff (doubling from 0.1 s up to the shortest renew
  interval, at most ``backoff_max``); a leader keeps leading until its deadline, then steps down, and leads
  again once a claim succeeds. Logs name the node, the groups and the URL without its password.
* :meth:`LeaseManager.stop` steps down first, then releases the leases on the server so another controller
  takes over at its next try instead of after the expiry. ``stop(release=False)`` drops the connection
  without a word, as a crash would (the leases then run out on their own).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

import psycopg

from csms.runtime.aio import Wake, cancel_and_wait, wait_event
from csms.storage.leases import MIGRATE_STATEMENT_TIMEOUT, Claim, LeaseStore, Presence
from csms.storage.sql import redact_url

from .lease import Event, Gained, GroupLease, LeaseTiming, Lost
from .spread import HANDED_OVER, Member, Roster

log = logging.getLogger(__name__)

#: Why a group was given up (the ``reason`` passed to ``on_lost``).
STOPPED = "this controller is stopping"
DROPPED = "the group is no longer this controller's to lead"

#: The first retry after a failure; each further failure doubles it.
BACKOFF_MIN = 0.1
#: What a claim or release may raise when the server is down, slow or restarting.
UNAVAILABLE = (psycopg.Error, OSError, TimeoutError)

T = TypeVar("T")
GainedCallback = Callable[[str, int], None]
LostCallback = Callable[[str, str], None]


def _ignore(*_: object) -> None:
    pass


class LeaseManager:
    """Leads what groups it can among those given to :meth:`set_groups`, one at a time per group cluster-wide."""

    def __init__(self, url: str, node: str, *, on_gained: GainedCallback = _ignore, on_lost: LostCallback = _ignore,
                 ttl: float = 7.5, margin: float | None = None, backoff_max: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        """``ttl``: the lease of a group given no ttl of its own (default: :func:`.lease.lease_ttl_for` the default
        ``stale_after`` of 10 s); ``margin``: seconds a leader gives away before the server's expiry (default 10 %
        of the ttl); ``clock``: monotonic. Every method runs on the event loop's thread."""
        self.url = url
        self.label = redact_url(url)
        self.node = node
        self.holder = f"{node}/{secrets.token_hex(4)}"
        self.on_gained = on_gained
        self.on_lost = on_lost
        self.ttl = ttl
        self.margin = margin
        self.backoff_max = backoff_max
        self._clock = clock
        self._groups: dict[str, GroupLease] = {}
        #: The live controllers as the last round saw them; whether the groups changed since it told the server.
        self._roster = Roster(self.holder, node)
        self._present_stale = True
        self._sent_presence = False
        #: Terms to end on the server (group → token): groups given up while held.
        self._to_release: dict[str, int] = {}
        self._store: LeaseStore | None = None
        self._migrated = False
        self._task: asyncio.Task[None] | None = None
        self._wake = Wake()
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._failures = 0
        self._retry_at = float("-inf")
        #: Claim statements that got an answer, and those that did not (for tests and metrics).
        self.answered = 0
        self.failed = 0

    # -- what the controller uses -------------------------------------------------------------------------------

    def set_groups(self, ids: Iterable[str], ttls: Mapping[str, float] | None = None) -> None:
        """The groups to lead from now on; ``ttls``: a group's lease ttl, if not the default. A group left out
        is stepped down from at once (``on_lost``) and its lease released."""
        now = self._clock()
        ttls = ttls or {}
        wanted = {gid: LeaseTiming.of(ttls.get(gid, self.ttl), self.margin) for gid in ids}
        self._present_stale |= set(wanted) != set(self._groups)  # the others must know what this one wants
        for gid in [g for g in self._groups if g not in wanted]:
            g = self._groups.pop(gid)
            if g.highest:
                self._to_release[gid] = g.highest
            self._emit(g.release(now, DROPPED))
        for gid, timing in wanted.items():
            g = self._groups.get(gid)
            if g is None:
                self._groups[gid] = GroupLease(gid, timing)
            elif g.timing != timing:
                g.timing = timing  # from the next claim on; the running lease was granted with the old ttl
        self._arm()
        self._wake.set()

    def leading(self) -> dict[str, int]:
        """The groups this node may act for now, with their tokens."""
        now = self._clock()
        return {gid: token for gid, g in self._groups.items() if (token := g.token_at(now)) is not None}

    def token(self, group_id: str) -> int | None:
        """The token for a command to ``group_id`` sent now; None: do not send it (this node does not lead)."""
        g = self._groups.get(group_id)
        return g.token_at(self._clock()) if g is not None else None

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"leases of {self.node}")
            self._task.add_done_callback(self._ended)

    async def stop(self, release: bool = True) -> None:
        """Stops the task, steps down from every group, then (``release``) ends the leases and deletes its presence
        on the server, so the others take its groups at their next round."""
        task, self._task = self._task, None
        await cancel_and_wait([task])
        now = self._clock()
        terms = dict(self._to_release)
        for gid, g in self._groups.items():
            if g.highest:
                terms[gid] = g.highest
            self._emit(g.release(now, STOPPED))
        self._arm()
        sent_presence, self._sent_presence = self._sent_presence, False
        self._roster, self._present_stale = Roster(self.holder, self.node), True
        if release and (terms or sent_presence):
            try:
                async with asyncio.timeout(self._request_timeout()):
                    store = await self._connected()
                await self._ask(store, store.release(self.holder, terms), self._request_timeout())
                self._to_release.clear()
                await self._ask(store, store.leave(self.holder), self._request_timeout())
            except UNAVAILABLE as exc:
                log.warning("%s: could not release the leases of %s on %s (%s); they run out within their ttl",
                            self.node, ", ".join(sorted(terms)), self.label, str(exc) or type(exc).__name__)
        await self._drop_store(graceful=release)

    async def __aenter__(self) -> LeaseManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- the task -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self._round()
            await wait_event(self._wake, self._sleep_for())

    async def _round(self) -> None:
        """Ends the terms given up, then refreshes the presence and claims every due group in one statement, feeds
        the answers to the policy and hands over what another controller should lead. A failure leaves the leaders
        leading until their deadlines and backs off."""
        now = self._clock()
        for g in list(self._groups.values()):
            self._emit(g.expire(now))
        due = [g for g in self._groups.values() if g.due(now)]
        present = bool(due) or self._presence_due()
        if now < self._retry_at or not (present or self._to_release):
            return
        first = not self._roster.known  # registers and looks only: the answer says whose groups are whose
        claimed = [] if first else due
        won: dict[str, int] = {}
        live: list[Presence] | None = None
        sent = now
        try:
            store = await self._connected()
            if self._to_release:
                terms = dict(self._to_release)
                await self._ask(store, store.release(self.holder, terms), self._request_timeout(due))
                for gid, token in terms.items():
                    if self._to_release.get(gid) == token:
                        del self._to_release[gid]
            if present:
                claims = [Claim(g.group_id, g.timing.ttl, g.token,
                                () if g.token is not None else tuple(self._roster.outranking(g.group_id)))
                          for g in claimed]
                self._present_stale, self._sent_presence = False, True
                sent = self._clock()  # the lease counts from here: the server acts after this instant
                won, live = await self._ask(store, store.round(self.holder, self.node, self._presence_ttl(),
                                                               list(self._groups), claims), self._request_timeout(due))
        except UNAVAILABLE as exc:
            self._present_stale = True
            await self._failed(due, exc)
            return
        self._reachable()
        self.answered += bool(due)
        now = self._clock()
        for g in claimed:
            if self._groups.get(g.group_id) is not g:  # given up while the claim was on its way
                if g.group_id in won:
                    self._to_release[g.group_id] = won[g.group_id]
                continue
            token = won.get(g.group_id)
            self._emit(g.won(sent, token, now) if token is not None else g.refused(sent, now))
        if live is not None:
            self._saw(live)
            self._hand_over(now)
        self._arm()
        if first:
            self._wake.set()  # the claims at once, now that the live controllers are known

    def _presence_due(self) -> bool:
        """The server has not been told the groups this manager wants (nor that it wants none any more)."""
        return self._present_stale and bool(self._groups or self._sent_presence)

    def _presence_ttl(self) -> float:
        """This manager's shortest lease ttl: once it dies, its presence stops holding back the others within the
        ttl of any group it led, as that group's lease does."""
        return min((g.timing.ttl for g in self._groups.values()), default=self.ttl)

    def _saw(self, live: list[Presence]) -> None:
        joined, left = self._roster.saw([Member(p.holder, p.node, frozenset(p.groups), p.expires_at) for p in live],
                                        self._groups)
        if joined or left:
            log.info("%s: live controllers: %s (joined: %s; left: %s)", self.node,
                     ", ".join(sorted(m.holder for m in self._roster.members())),
                     ", ".join(m.holder for m in joined) or "none", ", ".join(m.holder for m in left) or "none")

    def _hand_over(self, now: float) -> None:
        """Steps down from every group a settled controller should lead instead, and releases it at once."""
        handed: dict[str, list[str]] = {}
        for gid, g in self._groups.items():
            if g.token_at(now) is not None and (to := self._roster.hand_over_to(gid)) is not None:
                self._to_release[gid] = g.highest
                self._emit(g.release(now, HANDED_OVER.format(node=to.node)))
                handed.setdefault(to.node, []).append(gid)
        for node, groups in handed.items():
            log.info("%s: hands %s over to %s (spreading groups)", self.node, ", ".join(sorted(groups)), node)
        if handed:
            self._wake.set()

    @staticmethod
    async def _ask(store: LeaseStore, request: Awaitable[T], timeout: float) -> T:
        """Awaits ``request`` at most ``timeout`` seconds. Past that, the connection is dropped under it rather
        than the request cancelled: psycopg answers a cancellation by asking the server to cancel the query,
        which against a hung server holds the task 10 s more (measured: 10.8 s to the first failure)."""
        task = asyncio.ensure_future(request)
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            store.abort()
            task.cancel()
            raise
        if task not in done:
            store.abort()  # the request ends on the closed connection within psycopg's 0.1 s poll
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise TimeoutError(f"no answer within {timeout:g} s")
        return task.result()

    def _sleep_for(self) -> float | None:
        """Seconds until the next thing is due (None: nothing to do until :meth:`set_groups`)."""
        wakes = [g.wake_at() for g in self._groups.values()]
        if self._to_release or self._presence_due():
            wakes.append(self._retry_at)
        if not wakes:
            return None
        return max(0.0, max(min(wakes), self._retry_at) - self._clock())

    def _request_timeout(self, due: Iterable[GroupLease] = ()) -> float:
        """How long one statement (or connecting) may take: a renew interval, of the most pressing group."""
        timings = [g.timing for g in due] or [g.timing for g in self._groups.values()]
        return min((t.renew_every for t in timings), default=self.ttl / 3)

    async def _connected(self) -> LeaseStore:
        """The lease connection, opened if need be within a request timeout (the first one also migrates the
        schema, in a thread bounded by its own statement timeout)."""
        if self._store is not None and not self._store.conn.closed:
            return self._store
        migrate = not self._migrated
        timeout = self._request_timeout()
        async with asyncio.timeout(MIGRATE_STATEMENT_TIMEOUT + timeout if migrate else timeout):
            self._store = await LeaseStore.open(self.url, timeout=timeout, migrate_first=migrate)
        self._migrated = True
        return self._store

    async def _failed(self, due: list[GroupLease], exc: BaseException) -> None:
        self.failed += 1
        self._failures += 1
        cap = min(self.backoff_max, self._request_timeout())
        now = self._clock()
        self._retry_at = now + min(cap, BACKOFF_MIN * 2 ** (self._failures - 1))
        groups = ", ".join(g.group_id for g in due) or "none due"
        if self._failures == 1:
            log.warning("%s: lease store %s unavailable (groups %s): %s; retrying every %g s at most", self.node,
                        self.label, groups, str(exc) or type(exc).__name__, cap)
        else:
            log.debug("%s: lease store %s still unavailable (groups %s): %s", self.node, self.label, groups, exc)
        await self._drop_store(graceful=False)
        for g in due:
            self._emit(g.failed(now, self._retry_at))
        self._arm()

    def _reachable(self) -> None:
        if self._failures:
            log.warning("%s: lease store %s reachable again after %d failed attempt(s)", self.node, self.label,
                        self._failures)
        self._failures = 0
        self._retry_at = float("-inf")

    async def _drop_store(self, graceful: bool) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        if graceful:
            try:
                await store.close()
                return
            except UNAVAILABLE:
                pass
        store.abort()

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the lease task ended: %r; every lease runs out at its deadline", self.node,
                      task.exception(), exc_info=task.exception())

    # -- events and deadlines -----------------------------------------------------------------------------------

    def _emit(self, events: list[Event]) -> None:
        for event in events:
            try:
                if isinstance(event, Gained):
                    log.info("%s: leads group %s with token %d", self.node, event.group_id, event.token)
                    self.on_gained(event.group_id, event.token)
                elif isinstance(event, Lost):
                    log.warning("%s: stepped down from group %s (token %d): %s", self.node, event.group_id,
                                event.token, event.reason)
                    self.on_lost(event.group_id, event.reason)
            except Exception:
                log.exception("%s: a leadership callback failed for group %s", self.node, event.group_id)

    def _arm(self) -> None:
        """One timer per leading group, at its local deadline (moved when a renewal moves the deadline)."""
        for gid in [gid for gid in self._timers if self._timer_target(gid) != self._timers[gid][0]]:
            self._timers.pop(gid)[1].cancel()
        for gid, g in self._groups.items():
            if g.token is not None and gid not in self._timers:
                delay = max(0.0, g.valid_until - self._clock())
                handle = asyncio.get_running_loop().call_later(delay, self._deadline, gid, g.valid_until)
                self._timers[gid] = (g.valid_until, handle)

    def _timer_target(self, gid: str) -> float | None:
        g = self._groups.get(gid)
        return g.valid_until if g is not None and g.token is not None else None

    def _deadline(self, gid: str, when: float) -> None:
        self._timers.pop(gid, None)
        g = self._groups.get(gid)
        if g is not None and g.token is not None and g.valid_until == when:
            # The loop's timer may fire a hair early: the deadline has come either way.
            self._emit(g.expire(max(self._clock(), when)))
            self._arm()
            self._wake.set()
