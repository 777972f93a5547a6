"""Controllers spread the groups among themselves, against a real PostgreSQL: each group ends up with its preferred
live controller (rendezvous hashing), a controller leaving (cleanly or by a crash) hands its groups to the others,
one joining takes its share, and through all of it no group ever has two leaders: neither by the sampler (what a
controller asks before each command) nor in any sequence of callbacks (a group is gained only while nobody holds it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from csms.cluster.leadership import STOPPED, LeaseManager
from csms.cluster.lease import LeaseTiming
from csms.cluster.spread import HANDED_OVER, Member, assignment
from csms.storage.leases import LeaseStore
from tests.support.leadership import Log, Sampler, until

TTL = 1.5
TIMING = LeaseTiming.of(TTL)
GROUPS = [f"g{i}" for i in range(1, 7)]
SLACK = 0.5
#: Until a newcomer is settled and handed its groups (about 3 rounds, with room for a busy machine): its presence
#: must be seen renewed (two of its rounds, ttl/3 apart), then the leader's next round hands over and the
#: newcomer's next one claims.
SETTLE = 8 * TIMING.renew_every + SLACK


def share(managers: list[LeaseManager], groups: list[str] = GROUPS) -> dict[str, list[str]]:
    """Node → the groups rendezvous hashing gives it among ``managers`` (all wanting ``groups``)."""
    given = assignment(groups, [Member(m.holder, m.node, frozenset(groups)) for m in managers])
    return {m.node: sorted(g for g, h in given.items() if h == m.holder) for m in managers}


def spread(*managers: LeaseManager) -> Callable[[], bool]:
    expected = share(list(managers))
    return lambda: {m.node: sorted(m.leading()) for m in managers} == expected


async def test_two_controllers_split_the_groups_and_never_both_lead_one(postgres_url):
    log = Log(GROUPS, TTL)
    a, b = log.manager(postgres_url, "a"), log.manager(postgres_url, "b")
    expected = share([a, b])
    assert expected["a"] and expected["b"], expected  # a, b and g1..g6: 4 and 2
    started = time.monotonic()
    async with a, b, Sampler(GROUPS, a, b) as sampler:
        took = await until(spread(a, b), SETTLE, "each group led by its preferred controller") - started
        settled = len(log.events)
        await asyncio.sleep(4 * TIMING.renew_every)  # renewals: nothing moves any more
        assert spread(a, b)() and len(log.events) == settled and sampler.samples > 100
    log.one_leader_at_a_time()
    log.tokens_only_go_up()
    assert set(log.reasons("a")) | set(log.reasons("b")) <= {STOPPED, HANDED_OVER.format(node="a"),
                                                              HANDED_OVER.format(node="b")}
    print(f"spread {expected} {took:.2f} s after the start (ttl {TTL} s)")


async def test_a_clean_stop_hands_every_group_to_the_other_at_once(postgres_url):
    log = Log(GROUPS, TTL)
    long = LeaseTiming.of(6.0)  # leases and presence that would take 6 s to run out
    a, b = log.manager(postgres_url, "a", ttl=long.ttl), log.manager(postgres_url, "b", ttl=long.ttl)
    async with b, Sampler(GROUPS, a, b):
        await a.start()
        await until(spread(a, b), 5 * long.renew_every + SLACK, "the groups spread")
        stopped_at = time.monotonic()
        await a.stop()
        taken_at = await until(lambda: sorted(b.leading()) == GROUPS, long.renew_every + SLACK,
                               "b leads every group at its next round")
    assert set(log.reasons("a")) <= {STOPPED, HANDED_OVER.format(node="b")}
    log.one_leader_at_a_time()
    log.tokens_only_go_up()
    print(f"b leads every group {taken_at - stopped_at:.2f} s after a's clean stop (ttl {long.ttl} s)")


async def test_a_crashed_controllers_groups_go_to_the_other_after_the_ttl(postgres_url):
    log = Log(GROUPS, TTL)
    a, b = log.manager(postgres_url, "a"), log.manager(postgres_url, "b")
    async with b, Sampler(GROUPS, a, b):
        await a.start()
        await until(spread(a, b), SETTLE, "the groups spread")
        old = a.leading()
        deadlines = {g: a._groups[g].valid_until for g in old}
        crashed_at = time.monotonic()
        await a.stop(release=False)  # as SIGKILL: leases and presence stay until they run out
        taken_at = await until(lambda: sorted(b.leading()) == GROUPS, TTL + TIMING.renew_every + SLACK,
                               "b leads every group")
        new = b.leading()
    assert all(new[g] > token for g, token in old.items())
    gains = {g: at for at, node, g, _ in log.gained if node == "b" and g in old}
    assert all(gains[g] >= deadlines[g] for g in old), "b led a group before a's own deadline for it"
    log.one_leader_at_a_time()
    log.tokens_only_go_up()
    print(f"b leads every group {taken_at - crashed_at:.2f} s after a's crash (ttl {TTL} s)")


async def test_a_third_controller_joining_takes_its_share_from_the_others(postgres_url):
    log = Log(GROUPS, TTL)
    a, b, c = (log.manager(postgres_url, n) for n in "abc")
    async with a, b, Sampler(GROUPS, a, b, c):
        await until(spread(a, b), SETTLE, "a and b share the groups")
        before = {m.node: sorted(m.leading()) for m in (a, b)}
        joined = len(log.events)
        started = time.monotonic()
        async with c:
            took = await until(spread(a, b, c), SETTLE, "c takes its share") - started
            after = share([a, b, c])
            assert after["c"] and all(set(after[n]) <= set(before[n]) for n in "ab")  # c took, nobody else moved
            moved = log.events[joined:]
            assert sorted((kind, node, group) for kind, node, group, _ in moved) == sorted(
                [("gained", "c", g) for g in after["c"]] + [("lost", n, g) for n in "ab" for g in before[n]
                                                             if g in after["c"]])
            assert {reason for kind, *_, reason in moved if kind == "lost"} == {HANDED_OVER.format(node="c")}
    log.one_leader_at_a_time()
    log.tokens_only_go_up()
    print(f"c took {after['c']} {took:.2f} s after it started")


async def test_a_restarted_controller_gets_its_groups_back(postgres_url):
    """The preference is by node name, not by process: a controller started again under its name leads the same
    groups as before (the others hand them back)."""
    log = Log(GROUPS, TTL)
    a, b = log.manager(postgres_url, "a"), log.manager(postgres_url, "b")
    async with b, Sampler(GROUPS, a, b) as sampler:
        async with a:
            await until(spread(a, b), SETTLE, "the groups spread")
            mine = sorted(a.leading())
        await until(lambda: sorted(b.leading()) == GROUPS, TIMING.renew_every + SLACK, "b leads every group")
        again = log.manager(postgres_url, "a")
        sampler.managers.append(again)
        async with again:
            await until(lambda: sorted(again.leading()) == mine, SETTLE, "a leads its groups again")
    log.one_leader_at_a_time()
    log.tokens_only_go_up()


async def test_a_group_is_never_left_to_a_controller_that_does_not_want_it(postgres_url):
    """During a rolling config change controllers may want different groups: a group only one of them has is led by
    that one, even where the other would rank first; and its presence says what it wants."""
    log = Log(GROUPS, TTL)
    a, b = log.manager(postgres_url, "a", groups=["g1", "g2", "g3"]), log.manager(postgres_url, "b")
    async with a, b, Sampler(GROUPS, a, b):
        expected = share([a, b], ["g1", "g2", "g3"])
        await until(lambda: sorted(a.leading()) == expected["a"] and sorted(b.leading()) == sorted(
            set(GROUPS) - set(expected["a"])), SETTLE, "a leads only its share of the groups it has")
        store = await LeaseStore.open(postgres_url, timeout=2)
        try:
            wanted = {p.node: sorted(p.groups) for p in await store.presences()}
        finally:
            await store.close()
        assert wanted == {"a": ["g1", "g2", "g3"], "b": GROUPS}
    log.one_leader_at_a_time()
