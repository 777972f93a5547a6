"""The writes of one turn of the event loop go out together at the start of the next, in order per connection."""

from __future__ import annotations

import asyncio

from csms.ocpp.socket_writes import WriteBatch


class Recorder:
    def __init__(self, name: str, log: list[str], fail: bool = False):
        self.name, self.log, self.fail = name, log, fail

    def write_out(self) -> None:
        if self.fail:
            raise OSError("broken pipe")
        self.log.append(self.name)


async def test_writes_of_one_turn_go_out_together_at_the_start_of_the_next():
    log: list[str] = []
    batch = WriteBatch(asyncio.get_running_loop())
    writers = [Recorder(f"w{i}", log) for i in range(5)]
    for w in writers:
        batch.queue(w)
    assert log == []  # nothing is written in the turn that queued it
    await asyncio.sleep(0)
    assert log == [w.name for w in writers]  # in the order queued
    batch.queue(writers[0])
    await asyncio.sleep(0)
    assert log[-1] == "w0"  # a later turn's write is not held back for company


async def test_one_connection_failing_does_not_keep_the_others_back(caplog):
    log: list[str] = []
    batch = WriteBatch(asyncio.get_running_loop())
    for w in (Recorder("a", log), Recorder("broken", log, fail=True), Recorder("c", log)):
        batch.queue(w)
    await asyncio.sleep(0)
    assert log == ["a", "c"]
    assert "writing to" in caplog.text and "broken pipe" in caplog.text
