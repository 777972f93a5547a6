"""Garbage-collector policy for a central system holding thousands of live sessions.

CPython 3.11's full (generation 2) collection walks every tracked object. With 10,000 stations
connected, ``csms serve`` holds about 1.5 million of them (websocket connections, tasks, sessions,
state), a full collection takes 0.7-1.5 s, and it runs every few seconds while stations connect
and every 10-20 s afterwards (meter samples that live one metering interval count as long-lived).
The event loop stands still meanwhile: every station waits, which was the whole p99 at 10,000
stations. It almost never frees anything; sessions are freed by reference counting.

:class:`FrozenHeap` moves what has survived so far into the permanent generation (``gc.freeze()``)
now and then, so the collector's passes only walk what is new. Cyclic garbage among frozen objects
(rare: a closed session caught in a cycle) is reclaimed by a full collection every ``full_every``
seconds, the only pause left, and at shutdown.

The young passes are not left to the collector either. It runs one whenever allocations pass its
threshold (700), wherever that allocation happens: also in the middle of the turn of the event loop in
which a decision's delivery sends a profile to each of 1,000 chargers, whose objects (some twenty a
charger) all live until their charger answers. Those passes walked them again and again and found
nothing to free: over 15 such decisions (``bench/bench_send_path.py --compare-automatic-gc``) 1,430
passes took 3.0 s of CPU and freed about 100 objects, and cost a fifth to a third of the send burst.
Automatic collection is therefore off while the heap is held, and a timer runs, every ``young_every``
seconds, one pass over generations 0 and 1 together: between two turns of the loop, never inside one, and never
between a decision's burst of sends and the turn that writes them to the sockets. What
survives it goes straight to generation 2, which the next freeze makes permanent, so no pass walks more than
what one interval left alive. (The collector's own schedule, generation 1 every eleventh pass, let generation 1
gather eleven intervals of survivors - meter samples and sessions' messages that live a few seconds - and at
10,000 stations and 1,000 msg/s its passes stood the loop still for 12-100 ms every few seconds, the whole p99.
Its trigger, allocations minus deallocations, also misses a generation 0 that grows while older objects die.)
A cycle that becomes garbage after surviving one pass waits for the next full collection; in those runs no
young pass found any. Generation 2 is left to the freeze and the full collection above.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from csms.ocpp.socket_writes import writes_pending

log = logging.getLogger("csms.gc")


class FrozenHeap:
    """Owns a background task that runs the young passes and freezes the surviving heap every ``freeze_every``
    seconds."""

    def __init__(self, freeze_every: float = 5.0, full_every: float = 3600.0, young_every: float = 0.05,
                 clock=time.monotonic):
        self.freeze_every, self.full_every, self._clock = freeze_every, full_every, clock
        self.young_every = young_every
        self._task: asyncio.Task | None = None
        self._last_full = clock()
        self._was_enabled = True
        self.full_collections = 0

    def step(self) -> None:
        """One round: a full collection if one is due, then freeze what is alive."""
        if self._clock() - self._last_full >= self.full_every:
            started = time.perf_counter()
            gc.unfreeze()
            freed = gc.collect()
            self._last_full = self._clock()
            self.full_collections += 1
            log.info("full garbage collection: %d objects freed in %.0f ms", freed,
                     (time.perf_counter() - started) * 1000)
        else:
            gc.collect(1)  # leave garbage of the young generations out of the frozen set
        gc.freeze()

    @staticmethod
    def young() -> None:
        """One pass over generations 0 and 1 together; its survivors go to generation 2. Run whatever the
        allocation counts say: they fall when frozen objects die, while generation 0 keeps growing."""
        gc.collect(1)

    async def _run(self) -> None:
        next_freeze = self._clock() + self.freeze_every
        while True:
            await asyncio.sleep(self.young_every)
            if writes_pending():
                # This step was queued behind a decision's burst of sends, whose frames go to the sockets at the
                # start of the next turn (csms.ocpp.socket_writes): a pass now would walk the burst's 20,000 young
                # objects (3-7 ms at 1,000 chargers) while the chargers wait. One turn later they are out.
                await asyncio.sleep(0)
            if self._clock() >= next_freeze:
                self.step()
                next_freeze = self._clock() + self.freeze_every
            else:
                self.young()

    async def __aenter__(self) -> "FrozenHeap":
        gc.collect()
        gc.freeze()  # everything built at start-up (config, compiled schemas, modules) lives forever
        self._was_enabled = gc.isenabled()
        gc.disable()  # the young passes run from the timer, between turns of the loop
        self._task = asyncio.create_task(self._run(), name="gc-freeze")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._was_enabled:
            gc.enable()
        gc.unfreeze()
