"""The lease manager against a real PostgreSQL: one leader per group, takeover after a crash, release on a clean
stop, step-down when the server is stopped or hangs, and tokens that only go up (with the groups spread between
the managers; how they spread is in ``test_spreading.py``).

Every manager runs in this one process, so their monotonic clocks are the same clock: a sampler checks every
few milliseconds that no group has two leaders (by :meth:`LeaseManager.token`, what a controller would ask before
each command), and takeover times are compared with the deposed leader's own local deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest

from csms.cluster.leadership import DROPPED, STOPPED, LeaseManager
from csms.cluster.lease import EXPIRED, LeaseTiming
from csms.cluster.spread import HANDED_OVER, Member, assignment
from tests.support.leadership import Log, Sampler, until
from tests.support.postgres import PostgresCluster, unavailable_reason
from tests.support.tcp_proxy import FreezableProxy

TTL = 1.5
TIMING = LeaseTiming.of(TTL)
GROUPS = ["g1", "g2", "g3"]
#: Scheduling slack on a busy test machine, for "within" bounds only (the safety checks get none).
SLACK = 0.5
#: How late the event loop may run a deadline timer on a busy machine (less than the margin: the step-down
#: still comes before the ttl has elapsed).
TIMER_SLACK = 0.1


def new_log() -> Log:
    return Log(GROUPS, TTL)


def all_led(*managers: LeaseManager) -> bool:
    led = [g for m in managers for g in m.leading()]
    return sorted(led) == GROUPS


def spread(*managers: LeaseManager, groups: list[str] = GROUPS) -> Callable[[], bool]:
    """Whether each manager leads exactly the groups rendezvous hashing gives it among ``managers``."""
    share = assignment(groups, [Member(m.holder, m.node, frozenset(groups)) for m in managers])
    return lambda: all(sorted(m.leading()) == sorted(g for g, h in share.items() if h == m.holder) for m in managers)


async def test_two_managers_contending_for_three_groups_give_each_exactly_one_leader(postgres_url):
    log = new_log()
    a, b = log.manager(postgres_url, "a"), log.manager(postgres_url, "b")
    async with a, b, Sampler(GROUPS, a, b) as sampler:
        await until(spread(a, b), 10, "each group led by its preferred manager")
        settled = len(log.events)
        await asyncio.sleep(3 * TIMING.renew_every)  # several renewals: still one leader each, same tokens
        assert spread(a, b)() and len(log.events) == settled and sampler.samples > 100
    assert {(node, g) for _, node, g, _ in log.gained} == {(node, g) for _, node, g, _ in log.lost}
    assert {reason for *_, reason in log.lost} <= {STOPPED, HANDED_OVER.format(node="a"), HANDED_OVER.format(node="b")}
    log.one_leader_at_a_time()
    log.tokens_only_go_up()


async def test_a_crashed_leader_is_replaced_after_its_lease_with_a_higher_token(postgres_url):
    log = new_log()
    a, b = log.manager(postgres_url, "a"), log.manager(postgres_url, "b")
    async with b, Sampler(GROUPS, a, b):
        await a.start()
        await until(spread(a, b), 10, "the groups spread")
        old = a.leading()
        assert old and b.leading()  # a leads some groups, b the others
        deadlines = {g: a._groups[g].valid_until for g in old}
        crashed_at = time.monotonic()
        await a.stop(release=False)  # as SIGKILL: the connection drops, the rows stay until they expire
        taken_at = await until(lambda: all_led(b), 10, "b leads every group")
        new = b.leading()
    assert all(new[g] > old[g] for g in old), (old, new)
    gains = {g: at for at, node, g, _ in log.gained if node == "b" and g in old}
    for g in old:
        assert gains[g] >= deadlines[g], f"b led {g} before a's own deadline for it"
    assert taken_at - crashed_at <= TTL + TIMING.renew_every + SLACK
    log.one_leader_at_a_time()
    log.tokens_only_go_up()
    print(f"taken over {taken_at - crashed_at:.2f} s after the crash (ttl {TTL} s, renew every "
          f"{TIMING.renew_every} s); {min(gains.values()) - max(deadlines.values()):.2f} s after a's last deadline")


async def test_a_clean_stop_releases_the_groups_at_once(postgres_url):
    long = LeaseTiming.of(6.0)  # a lease that would take 6 s to run out
    a = LeaseManager(postgres_url, "a", ttl=long.ttl)
    b = LeaseManager(postgres_url, "b", ttl=long.ttl)
    for m in (a, b):
        m.set_groups(GROUPS)
    await a.start()
    await until(lambda: all_led(a), 10, "a leads every group")
    async with b, Sampler(GROUPS, a, b):
        await asyncio.sleep(0.2)
        stopped_at = time.monotonic()
        await a.stop()  # before b is settled: a still leads every group
        taken_at = await until(lambda: all_led(b), 10, "b leads every group")
    assert taken_at - stopped_at <= long.renew_every + SLACK < long.ttl
    print(f"taken over {taken_at - stopped_at:.2f} s after a clean stop (ttl {long.ttl} s)")


async def test_a_group_dropped_from_the_list_is_given_up_and_released(postgres_url):
    log = new_log()
    a, b = log.manager(postgres_url, "a"), log.manager(postgres_url, "b")
    await a.start()
    await until(lambda: all_led(a), 10, "a leads every group")
    async with b, Sampler(GROUPS, a, b):
        a.set_groups(["g1", "g2"], ttls={"g1": 3.0})  # before b is settled: a still leads every group
        assert set(a.leading()) == {"g1", "g2"}
        assert [(node, g, reason) for _, node, g, reason in log.lost] == [("a", "g3", DROPPED)]
        await until(lambda: "g3" in b.leading(), TIMING.renew_every + SLACK, "b takes g3 at its next try")
        assert a._groups["g1"].timing.ttl == 3.0
    await a.stop()
    log.tokens_only_go_up()


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
async def test_a_stopped_server_makes_the_leaders_step_down_before_their_ttl_then_leadership_resumes(caplog):
    caplog.set_level(logging.DEBUG, "csms.cluster")
    log = new_log()
    with PostgresCluster(dbname="leases") as pg:
        url = pg.url.replace(f"{pg.user}@", f"{pg.user}:s3cret-pw@")  # trust auth ignores the password
        a, b = log.manager(url, "a"), log.manager(url, "b")
        await a.start()
        async with b, Sampler(GROUPS, a, b):
            await until(spread(a, b), 10, "the groups spread")
            await asyncio.sleep(TIMING.renew_every)
            stopping_at = time.monotonic()
            await asyncio.to_thread(pg.stop)
            stopped_at = time.monotonic()
            def lost_since() -> list[tuple[float, str, str]]:  # by the callbacks: token() is None a hair before
                return [(at, g, reason) for at, node, g, reason in log.lost if at >= stopping_at]
            await until(lambda: len(lost_since()) == len(GROUPS), TTL + SLACK, "both step down")
            lost = lost_since()
            assert sorted(g for _, g, _ in lost) == GROUPS and all(r == EXPIRED for *_, r in lost)
            # The last renewal that succeeded was sent before the stop began: its lease ends within the ttl.
            assert all(at < stopping_at + TTL - TIMING.margin + TIMER_SLACK for at, _, _ in lost), (stopping_at, lost)
            await asyncio.sleep(TTL)  # nobody leads while the server is down
            assert a.leading() == {} == b.leading()
            assert a.failed >= 2 and b.failed >= 2
            await asyncio.to_thread(pg.start)
            resumed_at = await until(lambda: all_led(a, b), 10, "every group led again")
            await until(spread(a, b), 10, "the groups spread again")
        await a.stop()
    log.one_leader_at_a_time()
    log.tokens_only_go_up()
    assert "s3cret-pw" not in caplog.text and ":***@" in caplog.text
    assert "reachable again" in caplog.text
    print(f"server stop took {stopped_at - stopping_at:.2f} s; steps down "
          f"{max(at for at, _, _ in lost) - stopping_at:.2f} s after it began; led again "
          f"{resumed_at - stopped_at:.2f} s after the stop")


@pytest.mark.slow
async def test_a_hung_server_cannot_keep_a_leader_past_its_deadline(postgres_url):
    """The server stops answering without closing anything (a partition): the leader still steps down at its
    local deadline, and another controller reaching the server takes over only after that; once the partition
    heals, the groups spread again."""
    log = new_log()
    port = int(postgres_url.rsplit(":", 1)[1].split("/")[0])
    async with FreezableProxy(port) as proxy:
        a = log.manager(postgres_url.replace(f":{port}/", f":{proxy.port}/"), "a")
        b = log.manager(postgres_url, "b")
        await a.start()
        async with b, Sampler(GROUPS, a, b):
            await until(spread(a, b), 10, "the groups spread")
            await asyncio.sleep(TIMING.renew_every)
            led = set(a.leading())
            deadline_bound = time.monotonic() + TTL - TIMING.margin
            proxy.freeze()
            frozen_at = time.monotonic()
            await until(lambda: all_led(b), TTL + TIMING.renew_every + SLACK, "b takes over")
            lost = [(at, g, reason) for at, node, g, reason in log.lost if node == "a" and at >= frozen_at]
            assert sorted(g for _, g, _ in lost) == sorted(led) and all(r == EXPIRED for *_, r in lost)
            lost_at = max(at for at, *_ in lost)
            assert lost_at <= deadline_bound + TIMER_SLACK
            assert min(at for at, node, g, _ in log.gained if node == "b" and at >= frozen_at) >= lost_at
            proxy.thaw()
            await until(spread(a, b), 10, "a reaches the server again: the groups spread again")
            await a.stop()
    log.tokens_only_go_up()
    print(f"a stepped down {lost_at - frozen_at:.2f} s after the freeze")


async def test_a_restarted_gateway_takes_the_groups_tokens_from_their_leases(postgres_url):
    """A gateway that has seen no command yet refuses a deposed leader's token from the start: it reads each
    group's current token (the ungrouped chargers' lease is the group None of commands)."""
    from csms.bus.commands import Refusal
    from csms.bus.fencing import FenceBook, check
    from csms.runtime.roles import UNGROUPED, seed_fences

    a = LeaseManager(postgres_url, "a", ttl=TTL)
    a.set_groups(["g1", UNGROUPED])
    async with a:
        await until(lambda: sorted(a.leading()) == sorted(["g1", UNGROUPED]), 10, "a leads")
        old = {g: a.token(g) for g in ("g1", UNGROUPED)}
    b = LeaseManager(postgres_url, "b", ttl=TTL)  # a's clean stop released the rows: b takes them, tokens + 1
    b.set_groups(["g1", UNGROUPED])
    async with b:
        await until(lambda: sorted(b.leading()) == sorted(["g1", UNGROUPED]), 10, "b leads")
        new = {g: b.token(g) for g in ("g1", UNGROUPED)}
        book = FenceBook()
        await seed_fences(book, postgres_url, timeout=5)
        assert book.mark("g1") == new["g1"] > old["g1"] and book.mark(None) == new[UNGROUPED] > old[UNGROUPED]
        stale = check(book, group="g1", token=old["g1"], deadline=1e12, station_group="g1", now=0)
        assert stale is not None and stale[0] is Refusal.FENCED
        assert check(book, group="g1", token=new["g1"], deadline=1e12, station_group="g1", now=0) is None


async def test_a_gateway_without_the_leases_learns_tokens_from_commands(caplog):
    from csms.bus.fencing import FenceBook
    from csms.runtime.roles import seed_fences

    book = FenceBook()
    await seed_fences(book, "postgresql://nobody@127.0.0.1:1/none", timeout=1)
    assert book.marks == {} and "learns them from the controllers' commands" in caplog.text
