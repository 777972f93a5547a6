"""Leadership of one load-balancer group by a lease: the pure policy (no I/O, no clock; time is an input).

Several controllers may run (issue 17); each group must be steered by one of them at a time, or two balancers
would each hand out the same fuse's budget. A controller leads a group while it holds the group's lease in
PostgreSQL (:mod:`csms.storage.leases`): a row whose expiry the **database server** judges on its own clock,
so skewed node clocks cannot make two holders. Every new holder gets a higher fencing token, which the
gateways use to refuse the commands of a deposed leader that has not noticed yet.

This module decides, from the answers to acquire/renew attempts and the node's *monotonic* time, whether the
node is a follower or the leader of a group (and with which token), and when it must step down.

Safety rule: a leader stops acting **before** its lease can have expired on the server. A successful attempt
sent at local time ``s`` was executed by the server at some true time after ``s``, so the server's expiry
is at least ``s + ttl`` on any clock that runs at the true rate; the node therefore believes the lease until
``s + ttl - margin`` only (:meth:`LeaseTiming.deadline`). Network and server delays can only shorten that
local validity, never lengthen it; the margin covers the drift between the node's and the server's clock
rates. A leader renews every ``ttl / 3``; a renewal that fails or hangs is retried until the local deadline,
then the node steps down. Only the server can extend a lease, and only an answer can tell the node it did.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The margin, as a fraction of the ttl, a leader keeps between its local deadline and the server's expiry:
#: covers clock-rate drift (NTP keeps it to ppm; 10 % allows for far worse) and a late local timer.
DEFAULT_MARGIN_FRACTION = 0.1

#: Why a leader stepped down (the ``reason`` of :class:`Lost`).
EXPIRED = "the lease was not renewed before its local deadline"
TAKEN = "another controller holds the lease"
SUPERSEDED = "the server gave a new token (the lease had expired there)"


def lease_ttl_for(stale_after: float) -> float:
    """The lease ttl for a group whose dead leader must be replaced within ``stale_after`` seconds.

    A dead leader's lease runs out at most ``ttl`` after it died (it renewed at the latest just before), and a
    follower tries again every ``ttl / 3``: it takes over within ``ttl + ttl / 3 = stale_after``.
    """
    if stale_after <= 0:
        raise ValueError(f"stale_after must be positive, not {stale_after}")
    return stale_after * 0.75


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """How long a group's lease lasts (``ttl``, on the server) and how much of it a leader gives away."""

    ttl: float
    margin: float

    def __post_init__(self) -> None:
        if not self.ttl > 0:
            raise ValueError(f"a lease ttl must be positive, not {self.ttl}")
        if not 0 <= self.margin < self.ttl - self.renew_every:
            # A margin this large would let the local deadline fall before the next renewal is even sent.
            raise ValueError(f"the margin {self.margin} must be at least 0 and less than 2/3 of the ttl {self.ttl}")

    @classmethod
    def of(cls, ttl: float, margin: float | None = None) -> LeaseTiming:
        return cls(ttl, ttl * DEFAULT_MARGIN_FRACTION if margin is None else margin)

    @property
    def renew_every(self) -> float:
        """A leader renews (and a follower tries again) this often: two more tries fit before the deadline."""
        return self.ttl / 3

    def deadline(self, sent_at: float) -> float:
        """The local time until which a lease won by an attempt sent at ``sent_at`` may be acted on."""
        return sent_at + self.ttl - self.margin


@dataclass(frozen=True, slots=True)
class Gained:
    """The node now leads ``group_id``; its commands carry ``token``."""

    group_id: str
    token: int


@dataclass(frozen=True, slots=True)
class Lost:
    """The node no longer leads ``group_id`` (it led with ``token``): it must stop acting for it now."""

    group_id: str
    token: int
    reason: str


Event = Gained | Lost


@dataclass(slots=True)
class GroupLease:
    """One group's leadership as this node sees it. Every method takes the node's monotonic time ``now``;
    the attempt answers take the local time their request was sent (``sent_at``), which bounds the lease.

    A claim tells the server the ``token`` the node leads with (None: it does not), so that only the live term
    the node knows of is renewed; anything else becomes a new term with a higher token (see
    :data:`csms.storage.leases.ACQUIRE`)."""

    group_id: str
    timing: LeaseTiming
    #: The token while leading, None while following.
    token: int | None = None
    #: Local time until which the node may act as leader (meaningless while following).
    valid_until: float = float("-inf")
    #: When the next acquire/renew attempt is due.
    next_attempt_at: float = float("-inf")
    #: The highest token the server has given this node for the group: an older answer never wins it back.
    highest: int = 0
    #: Answers to requests sent before this local time are void: a release in between reset the server's expiry.
    void_before: float = float("-inf")

    def token_at(self, now: float) -> int | None:
        """The token to put on a command sent now, or None when the node must not act for the group."""
        return self.token if self.token is not None and now < self.valid_until else None

    def due(self, now: float) -> bool:
        return now >= self.next_attempt_at

    def wake_at(self) -> float:
        """The next time something is due: an attempt, or the local deadline while leading."""
        return min(self.next_attempt_at, self.valid_until) if self.token is not None else self.next_attempt_at

    def expire(self, now: float) -> list[Event]:
        """Steps down when the local deadline has passed (a leader that could not renew in time)."""
        if self.token is not None and now >= self.valid_until:
            return self._step_down(EXPIRED)
        return []

    def won(self, sent_at: float, token: int, now: float) -> list[Event]:
        """The server granted (or renewed) the lease with ``token`` to the attempt sent at ``sent_at``."""
        events = self.expire(now)
        self.next_attempt_at = max(self.next_attempt_at, sent_at + self.timing.renew_every)
        if sent_at < self.void_before or token < self.highest:
            return events  # a stale answer: the lease it speaks of was given up, or replaced by a newer one
        self.highest = token
        deadline = self.timing.deadline(sent_at)
        if deadline <= now:
            self.next_attempt_at = now  # answered too late to act on: ask again at once
            return events
        if self.token is not None and token != self.token:
            events += self._step_down(SUPERSEDED)
        if self.token is None:
            self.token, self.valid_until = token, deadline
            events.append(Gained(self.group_id, token))
        else:
            self.valid_until = max(self.valid_until, deadline)
        return events

    def refused(self, sent_at: float, now: float) -> list[Event]:
        """The server answered that another node holds an unexpired lease: follow, and look again later."""
        events = self.expire(now)
        self.next_attempt_at = max(self.next_attempt_at, sent_at + self.timing.renew_every)
        if self.token is not None:
            events += self._step_down(TAKEN)
        return events

    def failed(self, now: float, retry_at: float) -> list[Event]:
        """No answer (server down, error, timeout): a leader stays one until its deadline; retry at ``retry_at``."""
        self.next_attempt_at = retry_at
        return self.expire(now)

    def release(self, now: float, reason: str) -> list[Event]:
        """Steps down at once (shutdown, group no longer ours); answers to requests sent before are void."""
        self.void_before = now
        return self._step_down(reason) if self.token is not None else []

    def _step_down(self, reason: str) -> list[Event]:
        assert self.token is not None
        lost = Lost(self.group_id, self.token, reason)
        self.token, self.valid_until = None, float("-inf")
        return [lost]
