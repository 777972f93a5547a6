"""What a stuck test was waiting for: the stack of every unfinished asyncio task, printed shortly before pytest's
``faulthandler_timeout`` (``pyproject.toml``) dumps every thread's traceback and ends the run.

A thread traceback alone shows an idle event loop in ``select``; the tasks show which await never returned. The
report goes to a copy of the real standard error taken before capturing starts: during a test, file descriptor 2
is pytest's capture file, which nobody reads once the process exits.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import TextIO

#: How long before the thread dump the task report is printed (at most a tenth of the limit).
LEAD_S = 10.0


class HangReport:
    """A watchdog armed for each test: :meth:`arm` at its start, :meth:`disarm` at its end."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._out: TextIO = os.fdopen(os.dup(2), "w", buffering=1)
        self._timer: threading.Timer | None = None

    def arm(self, test_id: str) -> None:
        if self.limit_s <= 0:
            return
        delay = self.limit_s - min(LEAD_S, self.limit_s / 10)
        self._timer = threading.Timer(delay, self._report, args=(test_id,))
        self._timer.daemon = True
        self._timer.start()

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self.disarm()
        self._out.close()

    def _report(self, test_id: str) -> None:
        tasks = [t for t in gc.get_objects() if isinstance(t, asyncio.Task) and not t.done()]
        self._out.write(f"\n{test_id} has run {self.limit_s - min(LEAD_S, self.limit_s / 10):.0f} s: "
                        f"stuck? {len(tasks)} unfinished asyncio tasks:\n")
        for task in tasks:
            task.print_stack(file=self._out)
        self._out.flush()
