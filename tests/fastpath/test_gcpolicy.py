"""FrozenHeap freezes survivors, collects fully only when due, and leaves nothing frozen behind."""

from __future__ import annotations

import gc
import weakref

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
