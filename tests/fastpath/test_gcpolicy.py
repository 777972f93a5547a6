"""FrozenHeap freezes survivors, collects fully only when due, and leaves nothing frozen behind."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from csms.ocpp.socket_writes import WriteBatch
from csms.runtime.gcpolicy import FrozenHeap


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_freezes_survivors_and_collects_cycles_when_a_full_collection_is_due() -> None:
    now = [0.0]
    heap = FrozenHeap(freeze_every=3600, full_every=100, clock=lambda: now[0])
    try:
        async with heap:
            assert gc.get_freeze_count() > 0
            garbage = Cycle()
            ref = weakref.ref(garbage)
            heap.step()  # not due: the (still referenced) cycle is frozen with everything else alive
            del garbage
            gc.collect()
            assert ref() is not None  # frozen objects are out of the collector's reach...
            now[0] = 100.0
            heap.step()  # ...until a full collection is due: unfreeze, collect, freeze again
            assert heap.full_collections == 1 and ref() is None
            assert gc.get_freeze_count() > 0
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


async def test_young_passes_run_from_the_timer_not_at_an_allocation() -> None:
    """Inside the heap the collector does not run on its own (a pass at an allocation may land in the middle of
    a decision's burst of sends); the timer runs the pass it would have run, between turns of the loop."""
    was_enabled = gc.isenabled()
    gc.enable()
    heap = FrozenHeap(freeze_every=3600, full_every=3600, young_every=0.01)
    try:
        async with heap:
            assert not gc.isenabled()
            garbage = Cycle()
            ref = weakref.ref(garbage)
            del garbage
            filler = [Cycle() for _ in range(2 * gc.get_threshold()[0])]  # past the young threshold
            assert ref() is not None  # no allocation collects any more...
            for _ in range(100):
                await asyncio.sleep(0.01)
                if ref() is None:
                    break
            assert ref() is None  # ...the timer's pass did
            del filler
        assert gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable() if was_enabled else gc.disable()


def test_a_young_pass_leaves_nothing_young_behind() -> None:
    """Each pass walks only what the interval since the last left alive: generation 1 does not gather the
    survivors of many passes (at 10,000 stations its passes stood the loop still for up to 100 ms), and a
    young cycle that is garbage is collected by the next pass."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        gc.collect()
        kept = []
        for _ in range(3 * gc.get_threshold()[1]):
            kept += [Cycle() for _ in range(100)]
            garbage = Cycle()
            ref = weakref.ref(garbage)
            del garbage
            FrozenHeap.young()
            assert ref() is None
            assert not gc.get_objects(1) and len(gc.get_objects(0)) <= 2  # (the test's own frame objects)
        assert all(gc.is_tracked(c) for c in kept[:10])
    finally:
        gc.enable() if was_enabled else gc.disable()


async def test_a_pass_never_runs_between_a_burst_and_its_writes() -> None:
    """A reading wakes the balancer, whose decision wakes every charger's worker: a burst that queues each
    charger's frame, written at the start of the next turn of the loop. A pass whose timer fell due while the
    reading was handled is woken in the balancer's turn and queued behind the burst: it must let the writes go
    first, not walk the burst's objects while the chargers wait. The shipped pass interval; a reading every few
    milliseconds (2 ms to handle it, 3 ms to decide, 4 ms to send) for 1.5 s: without the yield, about
    a third of the passes came between a burst and its writes."""
    loop = asyncio.get_running_loop()
    batch = WriteBatch(loop)
    unwritten = [False]
    passes: list[bool] = []  # for each pass: whether a burst's writes were still waiting
    decide, send = asyncio.Event(), asyncio.Event()

    class Writer:
        def write_out(self) -> None:
            unwritten[0] = False

    class Watched(FrozenHeap):
        def young(self) -> None:  # type: ignore[override]
            passes.append(unwritten[0])
            FrozenHeap.young()

    def busy(seconds: float) -> None:  # work that holds the loop, as handling 1,000 chargers does
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            pass

    async def readings() -> None:
        while True:
            await asyncio.sleep(0.001)
            busy(0.002)
            decide.set()

    def balancer() -> None:
        busy(0.003)
        send.set()

    def burst() -> None:
        batch.queue(Writer())
        unwritten[0] = True
        busy(0.004)

    async def woken_by(event: asyncio.Event, work) -> None:
        while True:
            await event.wait()
            event.clear()
            work()

    try:
        async with Watched(freeze_every=3600, full_every=3600):
            tasks = [asyncio.create_task(c) for c in (readings(), woken_by(decide, balancer), woken_by(send, burst))]
            await asyncio.sleep(1.5)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        gc.unfreeze()
    assert len(passes) >= 10
    assert not any(passes), f"{sum(passes)} of {len(passes)} passes ran before a burst's writes"
