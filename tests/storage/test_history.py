"""Mains readings history: batched recording and the thinned range queries, on a real SQLite file and a real
PostgreSQL database."""

from __future__ import annotations

import json

from csms.storage import history
from csms.storage.database import Storage
from csms.storage.readings import ReadingRecorder, phase_currents
from csms.storage.records import log_event


class Clock:
    def __init__(self, t: float = 1_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_readings_are_written_in_batches_and_flushed_on_demand(storage_target):
    clock = Clock()
    async with Storage(storage_target, commit_interval=0) as storage:
        rec = ReadingRecorder(storage, clock, flush_every=5.0)
        everything = history.Range(1000, 1100, points=600)  # buckets of 1/6 s: every reading
        for i in range(4):
            clock.t += 1
            rec.add("M1G", clock.t, (10.0 + i, 5.0, None))
        await storage.write(lambda db: None)  # let anything queued commit
        assert await storage.read(phase_currents("M1G", everything)) == []  # still buffered
        writes_before = storage.writes
        clock.t += 2
        rec.add("M1G", clock.t, (20.0, 6.0, None))  # 5 s after the first: one write for all five
        await storage.write(lambda db: None)
        rows = await storage.read(phase_currents("M1G", everything))
        assert [r["l1"] for r in rows] == [10.0, 11.0, 12.0, 13.0, 20.0]
        assert rows[0]["l3"] is None
        assert storage.writes == writes_before + 2  # the batch, and our own empty write
        clock.t += 1
        rec.add("M1G", clock.t, (30.0, 6.0, None))
        rec.flush()
        await storage.write(lambda db: None)
        assert len(await storage.read(phase_currents("M1G", everything))) == 6
        assert await storage.read(phase_currents("OTHERG", everything)) == []


async def test_long_ranges_are_thinned_keeping_each_buckets_peak(storage_target):
    clock = Clock(0.0)
    async with Storage(storage_target, commit_interval=0) as storage:
        rec = ReadingRecorder(storage, clock, flush_every=1e9, max_rows=10_000)
        for i in range(1000):
            clock.t = float(i)
            rec.add("M1G", clock.t, (50.0 if i == 433 else 10.0, 1.0, 2.0))
        rec.flush()
        await storage.write(lambda db: None)
        rows = await storage.read(phase_currents("M1G", history.Range(0, 999, points=10)))
        assert len(rows) == 10
        assert sum(r["l1"] == 50.0 for r in rows) == 1 and all(r["l1"] in (10.0, 50.0) for r in rows)
        assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
        some = await storage.read(phase_currents("M1G", history.Range(100, 109, points=600)))
        assert [r["at"] for r in some] == [float(t) for t in range(100, 110)]


async def test_decisions_events_and_transactions_read_back(storage_target):
    async with Storage(storage_target, commit_interval=0) as storage:
        for i in range(30):
            await storage.write(lambda db, i=i: db.execute(
                "INSERT INTO decisions (group_id, at, meter_fresh, budget, limits) VALUES (?, ?, ?, ?, ?)",
                ["g", float(i), 1, json.dumps({"1": 30.0 - i}), json.dumps({"CP1": {"limit": float(i)}})]))
        await storage.write(log_event("control", 5.0, station_id="CP1", group_id="g", state="controlled"))
        await storage.write(log_event("meter_offline", 6.0, meter="M1G", reason="timeout"))
        rows = await storage.read(history.decisions("g", history.Range(0, 29, points=3)))
        assert len(rows) == 3
        assert [r["limits"]["CP1"]["limit"] for r in rows] == [r["at"] for r in rows]  # the last of each bucket
        assert rows[-1]["at"] == 29.0 and rows[-1]["budget"] == {"1": 1.0}
        events = await storage.read(history.events(0, 10, 10))
        assert [e["kind"] for e in events] == ["meter_offline", "control"]  # newest first
        assert events[1]["detail"] == {"state": "controlled"}
        assert [e["kind"] for e in await storage.read(history.events(0, 10, 10, station_id="CP1"))] == ["control"]
        assert await storage.read(history.events(0, 10, 10, kind="profile")) == []
        assert await storage.read(history.transactions(0, 10, 10)) == []
