"""The lease policy, driven without a database or a clock: examples of each rule, then property tests.

The property tests simulate the ``group_leases`` row on a server whose clock is the true clock, and nodes whose
monotonic clocks have any offset and drift by up to 2 % in rate, sending acquire, renew and release requests at
any times with any delays each way (or no answer at all). Whatever the schedule:

* no two nodes believe they lead the group at overlapping true times;
* tokens strictly increase from one holder to the next, and a node's own tokens never go down.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from csms.cluster.lease import EXPIRED, SUPERSEDED, TAKEN, Gained, GroupLease, LeaseTiming, Lost, lease_ttl_for

TTL = 3.0


def lease(ttl: float = TTL, margin: float | None = None) -> GroupLease:
    return GroupLease("g", LeaseTiming.of(ttl, margin))


# -- examples ---------------------------------------------------------------------------------------------------


def test_the_local_deadline_counts_from_when_the_request_was_sent_not_answered():
    g = lease()
    assert g.won(sent_at=10.0, token=1, now=12.0) == [Gained("g", 1)]
    assert g.valid_until == pytest.approx(10.0 + TTL - 0.3)  # a slow answer only shortens the lease
    assert g.token_at(12.6) == 1 and g.token_at(12.7) is None
    assert g.next_attempt_at == pytest.approx(11.0)  # renew every ttl / 3, counted from the send too


def test_a_renewal_keeps_the_token_and_moves_the_deadline():
    g = lease()
    g.won(0.0, 4, 0.1)
    assert g.won(1.0, 4, 1.1) == []
    assert (g.token, g.valid_until) == (4, pytest.approx(1.0 + 2.7))


def test_failed_renewals_keep_the_lead_until_the_local_deadline_then_step_down():
    g = lease()
    g.won(0.0, 1, 0.0)
    assert g.failed(1.0, retry_at=1.5) == [] and g.next_attempt_at == 1.5
    assert g.failed(2.6, retry_at=2.8) == [] and g.token_at(2.6) == 1
    assert g.expire(2.7) == [Lost("g", 1, EXPIRED)]
    assert g.token_at(2.7) is None and g.expire(5.0) == []


def test_an_answer_that_arrives_after_its_own_deadline_is_not_acted_on():
    g = lease()
    assert g.won(0.0, 1, now=2.7) == []
    assert g.token is None and g.due(2.7)  # asks again at once: it probably still holds the row


def test_another_holder_makes_a_leader_step_down_and_a_follower_wait():
    g = lease()
    assert g.refused(0.0, 0.1) == [] and g.next_attempt_at == pytest.approx(1.0)
    g.won(1.0, 2, 1.1)
    assert g.refused(2.0, 2.1) == [Lost("g", 2, TAKEN)]


def test_a_new_token_while_leading_is_a_new_term_and_an_older_token_never_wins():
    g = lease()
    g.won(0.0, 3, 0.1)
    assert g.won(1.0, 5, 1.1) == [Lost("g", 3, SUPERSEDED), Gained("g", 5)]
    assert g.won(0.5, 4, 1.2) == [] and g.token == 5  # a late answer to an older request


def test_answers_to_requests_sent_before_a_release_are_void():
    g = lease()
    g.won(0.0, 1, 0.1)
    assert g.release(1.0, "stopping") == [Lost("g", 1, "stopping")]
    assert g.won(0.9, 1, 1.2) == [] and g.token is None  # the release reset the server's expiry after it
    assert g.won(1.5, 2, 1.6) == [Gained("g", 2)]
    assert lease().release(0.0, "stopping") == []


def test_timing_rules():
    assert LeaseTiming.of(3.0).renew_every == pytest.approx(1.0)
    assert LeaseTiming.of(3.0).margin == pytest.approx(0.3)
    with pytest.raises(ValueError):
        LeaseTiming.of(0.0)
    with pytest.raises(ValueError):
        LeaseTiming.of(3.0, margin=2.0)  # the deadline would fall before the next renewal is sent
    # A dead leader's group is taken over within stale_after: its lease runs out, then one follower period.
    ttl = lease_ttl_for(10.0)
    assert ttl + LeaseTiming.of(ttl).renew_every == pytest.approx(10.0)
    with pytest.raises(ValueError):
        lease_ttl_for(0)


# -- properties -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    holder: str
    token: int
    expires_at: float


@dataclass
class Server:
    """The ``group_leases`` row, as the acquire and release statements change it, on the true clock."""

    row: Row | None = None

    def acquire(self, holder: str, now: float, ttl: float, held: int | None) -> int | None:
        """``held``: the token the node believes it leads with (None: it leads not)."""
        old = self.row
        if old is None:
            self.row = Row(holder, (held or 0) + 1, now + ttl)
        elif old.holder == holder and old.expires_at > now and old.token == held:
            self.row = Row(holder, old.token, now + ttl)  # a renewal of the term the node knows of
        elif old.holder == holder or old.expires_at <= now:
            self.row = Row(holder, old.token + 1, now + ttl)  # a new term
        else:
            return None
        return self.row.token

    def release(self, holder: str, token: int | None, now: float) -> None:
        if self.row is not None and (self.row.holder, self.row.token) == (holder, token):
            self.row = Row(holder, token, min(self.row.expires_at, now))


@dataclass
class Node:
    name: str
    offset: float
    rate: float
    lease: GroupLease
    #: (true start, true end, token) of each stretch during which the node believed it led.
    stretches: list[tuple[float, float, int]] = field(default_factory=list)
    gains: list[tuple[float, int]] = field(default_factory=list)
    last_event_at: float = 0.0

    def local(self, t: float) -> float:
        return self.offset + self.rate * t

    def true(self, local: float) -> float:
        return (local - self.offset) / self.rate

    def handle(self, t: float, act) -> None:
        """Closes the stretch that led up to ``t``, runs ``act`` on the lease, records what it gained."""
        if self.lease.token is not None:
            end = min(t, self.true(self.lease.valid_until))
            if end > self.last_event_at:
                self.stretches.append((self.last_event_at, end, self.lease.token))
        self.last_event_at = t
        for event in act(self.local(t)):
            if isinstance(event, Gained):
                self.gains.append((t, event.token))

    def finish(self, t: float) -> None:
        self.handle(t, lambda now: self.lease.expire(now))


@dataclass(frozen=True)
class Request:
    node: int
    release: bool
    gap: float  # true time since the previous request was sent
    there: float  # delay to the server
    back: float  # delay of the answer
    reaches: bool  # the server executes it
    answered: bool  # the node hears the answer


requests = st.builds(
    Request,
    node=st.integers(0, 2),
    release=st.integers(0, 3).map(lambda i: i == 0),
    gap=st.floats(0, 2.0),
    there=st.floats(0, 1.0) | st.floats(0, 5.0),
    back=st.floats(0, 1.0) | st.floats(0, 5.0),
    reaches=st.integers(0, 4).map(lambda i: i != 0),
    answered=st.integers(0, 4).map(lambda i: i != 0),
)
clocks = st.tuples(st.floats(-1000, 1000), st.floats(0.98, 1.02))


@dataclass(order=True)
class Step:
    at: float
    order: int
    what: str = field(compare=False)
    request: Request = field(compare=False)
    sent: float = field(compare=False, default=0.0)  # the node's local time when it sent the request
    token: int | None = field(compare=False, default=None)  # sent: the node's token; answered: the server's


def simulate(schedule: list[Request], node_clocks: list[tuple[float, float]], margin_fraction: float) -> list[Node]:
    """Runs ``schedule`` (true send times from the gaps) and returns the nodes with what each believed."""
    server = Server()
    nodes = [Node(f"n{i}", off, rate, GroupLease("g", LeaseTiming(TTL, TTL * margin_fraction)))
             for i, (off, rate) in enumerate(node_clocks)]
    order = itertools.count()
    queue: list[Step] = []
    t = 0.0
    for r in schedule:
        t += r.gap
        heapq.heappush(queue, Step(t, next(order), "send", r))
    while queue:
        step = heapq.heappop(queue)
        at, r = step.at, step.request
        node = nodes[r.node]
        lease = node.lease
        if step.what == "send":
            sent, held = node.local(at), lease.token
            if r.release:
                node.handle(at, lambda now: lease.release(now, "released"))
            if r.reaches:
                heapq.heappush(queue, Step(at + r.there, next(order), "execute", r, sent, held))
            elif not r.release:
                heapq.heappush(queue, Step(at + r.there + r.back, next(order), "failed", r, sent))
        elif step.what == "execute":
            if r.release:
                server.release(node.name, step.token, at)
            else:
                token = server.acquire(node.name, at, TTL, step.token)
                what = ("refused" if token is None else "won") if r.answered else "failed"
                heapq.heappush(queue, Step(at + r.back, next(order), what, r, step.sent, token))
        elif step.what == "won":
            node.handle(at, lambda now: lease.won(step.sent, step.token, now))
        elif step.what == "refused":
            node.handle(at, lambda now: lease.refused(step.sent, now))
        else:
            node.handle(at, lambda now: lease.failed(now, now + 0.1))
    for node in nodes:
        node.finish(t + 100.0)
    return nodes


def check(nodes: list[Node]) -> None:
    stretches = sorted((s, e, tok, n.name) for n in nodes for s, e, tok in n.stretches)
    for (s1, e1, tok1, n1), (s2, e2, tok2, n2) in itertools.combinations(stretches, 2):
        if n1 != n2:
            assert e1 <= s2 or e2 <= s1, f"{n1} led {s1:.3f}-{e1:.3f} (token {tok1}) and {n2} {s2:.3f}-{e2:.3f}"
            if s1 < s2:
                assert tok1 < tok2, f"{n2} led after {n1} with token {tok2}, not above {tok1}"
        else:
            if s1 < s2:
                assert tok1 <= tok2
    gains = sorted((t, tok, n.name) for n in nodes for t, tok in n.gains)
    for (_, tok1, n1), (_, tok2, n2) in itertools.combinations(gains, 2):
        assert tok2 > tok1 if n1 != n2 else tok2 >= tok1, f"{n2} gained {tok2} after {n1} gained {tok1}"


@settings(max_examples=400, deadline=None)
@given(schedule=st.lists(requests, min_size=4, max_size=40), node_clocks=st.lists(clocks, min_size=3, max_size=3))
def test_never_two_leaders_and_tokens_only_increase(schedule, node_clocks):
    nodes = simulate(schedule, node_clocks, margin_fraction=0.1)
    event(f"nodes that led: {sum(bool(n.gains) for n in nodes)}")
    check(nodes)


@settings(max_examples=200, deadline=None)
@given(schedule=st.lists(requests, min_size=4, max_size=40), node_clocks=st.lists(st.tuples(st.floats(-1000, 1000),
                                                                                st.just(1.0)), min_size=3, max_size=3))
def test_without_drift_even_no_margin_is_safe(schedule, node_clocks):
    """Delays alone never make two leaders: the local deadline counts from the send, before the server acts."""
    nodes = simulate(schedule, node_clocks, margin_fraction=0.0)
    event(f"nodes that led: {sum(bool(n.gains) for n in nodes)}")
    check(nodes)


def test_a_renewal_answered_after_a_release_does_not_bring_the_lead_back():
    """n0 renews at 1 (answer delayed to 2.5), releases at 1.2; n1 takes over at 1.5 with token 2. The late
    answer speaks of a lease the release has ended on the server: n0 must not lead on it."""
    schedule = [Request(0, False, 0.0, 0.0, 0.0, True, True), Request(0, False, 1.0, 0.0, 1.5, True, True),
                Request(0, True, 0.2, 0.0, 0.0, True, True), Request(1, False, 0.3, 0.0, 0.0, True, True)]
    nodes = simulate(schedule, [(0.0, 1.0)] * 3, margin_fraction=0.1)
    check(nodes)
    assert [tok for _, tok in nodes[0].gains] == [1] and [tok for _, tok in nodes[1].gains] == [2]


def test_the_simulation_can_find_an_overlap():
    """The check is not vacuous: a node that counted its lease from the answer (delay 2 back) overlaps the next."""
    schedule = [Request(0, False, 0.0, 0.0, 2.0, True, True), Request(1, False, 3.5, 0.0, 0.0, True, True)]
    nodes = simulate(schedule, [(0.0, 1.0)] * 3, margin_fraction=0.0)
    check(nodes)  # counted from the send: n0 led 2.0-3.0, n1 from 3.5
    n0 = nodes[0]
    s, e, tok = n0.stretches[0]
    n0.stretches[0] = (s, e + 2.0, tok)  # what counting from the answer would give: 2.0-5.0
    with pytest.raises(AssertionError, match="n0 led"):
        check(nodes)
