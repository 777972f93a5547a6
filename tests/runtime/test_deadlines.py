"""The shared deadline timer: each deadline runs once, at or after its time, in the order of the times (ties in the
order they were set); a cancelled one never runs; cancelled ones do not pile up."""

from __future__ import annotations

import asyncio
import gc
import weakref

from hypothesis import given, settings, strategies as st

from csms.runtime.deadlines import Deadlines, bound, deadlines



async def until(condition, timeout: float = 2.0) -> None:
    """Polls ``condition`` until it holds: a loaded machine runs the loop's timers late, never early."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_deadlines_run_in_time_order_at_or_after_their_time():
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    ran: list[tuple[str, float]] = []
    t0 = loop.time()
    for name, delay in (("c", 0.03), ("a", 0.01), ("b", 0.02), ("a2", 0.01)):
        timers.at(t0 + delay, lambda n=name, d=delay: ran.append((n, loop.time() - t0 - d)))
    await until(lambda: len(ran) == 4)
    assert [n for n, _ in ran] == ["a", "a2", "b", "c"]
    assert all(late >= -1e-6 for _, late in ran)
    assert len(timers) == 0


async def test_a_cancelled_deadline_never_runs_and_the_next_still_does():
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    ran: list[str] = []
    first = timers.at(loop.time() + 0.01, ran.append, "first")
    timers.at(loop.time() + 0.02, ran.append, "second")
    timers.cancel(first)
    timers.cancel(first)  # twice is harmless
    assert len(timers) == 1
    await until(lambda: len(timers) == 0)
    assert ran == ["second"]


async def test_an_earlier_deadline_set_later_is_not_held_up_by_the_armed_one():
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    ran: list[float] = []
    t0 = loop.time()
    timers.at(t0 + 5.0, ran.append, 5.0)
    timers.at(t0 + 0.01, ran.append, 0.01)
    await until(lambda: ran)
    assert ran == [0.01]
    assert len(timers) == 1


async def test_one_failing_callback_does_not_keep_the_others_from_running(caplog):
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")
    timers.at(loop.time() + 0.01, boom)
    timers.at(loop.time() + 0.01, ran.append, "after")
    await until(lambda: len(timers) == 0)
    assert ran == ["after"]
    assert "boom" in caplog.text


async def test_cancelled_deadlines_do_not_pile_up():
    """A server that answers every call quickly cancels every deadline: the heap keeps at most about twice
    what is live, not every answered call's deadline until its time."""
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    keep = timers.at(loop.time() + 30, print)
    for _ in range(10_000):
        timers.cancel(timers.at(loop.time() + 30, print))
    assert len(timers) == 1
    assert len(timers._heap) <= 2 * 100 + 2
    timers.cancel(keep)


async def test_one_per_running_loop():
    assert deadlines() is deadlines()


def test_a_loop_s_deadlines_do_not_keep_it_alive():
    def other_loop() -> weakref.ref:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(_set_one())
            return weakref.ref(loop)
        finally:
            loop.close()
    gone = other_loop()
    gc.collect()
    assert gone() is None


async def _set_one() -> None:
    deadlines().cancel(deadlines().at(asyncio.get_running_loop().time() + 1, print))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=30))
def test_what_runs_is_what_was_not_cancelled_in_time_order(plan):
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        timers = Deadlines()
        t0 = loop.time() + 0.005
        ran: list[int] = []
        entries = [timers.at(t0 + ms / 1000, ran.append, i) for i, (ms, _) in enumerate(plan)]
        for entry, (_, cancelled) in zip(entries, plan):
            if cancelled:
                timers.cancel(entry)
        await until(lambda: len(timers) == 0)
        expected = [i for i, (ms, cancelled) in sorted(enumerate(plan), key=lambda x: (x[1][0], x[0]))
                    if not cancelled]
        assert ran == expected
        assert len(timers) == 0 and timers._timer is None
    asyncio.run(scenario())


async def test_a_deadline_set_by_a_callback_does_not_delay_an_earlier_one():
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    t0 = loop.time()
    ran: list[str] = []
    timers.at(t0 + 0.01, lambda: (ran.append("first"), timers.at(t0 + 5.0, ran.append, "late")))
    timers.at(t0 + 0.03, ran.append, "second")
    await until(lambda: "second" in ran)
    assert loop.time() - t0 < 1.0
    assert ran == ["first", "second"]


async def test_a_callback_that_cancels_many_leaves_the_rest_to_run_once():
    loop = asyncio.get_running_loop()
    timers = Deadlines()
    t0 = loop.time()
    ran: list[int] = []
    later = [timers.at(t0 + 0.02, ran.append, i) for i in range(300)]
    timers.at(t0 + 0.01, lambda: [timers.cancel(e) for e in later[:250]])  # rebuilds the heap mid-run
    await until(lambda: len(timers) == 0)
    assert ran == list(range(250, 300))


async def test_bound_is_the_running_loop_and_its_deadlines():
    loop, timers = bound()
    assert loop is asyncio.get_running_loop() and timers is deadlines() is deadlines(loop)
