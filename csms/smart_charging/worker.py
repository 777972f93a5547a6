"""The asyncio side of the delivery's channels: one worker per charger, holding a task only while it has work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from csms.balancer.model import ControlState
from csms.domain.link import StationLink
from csms.runtime.deadlines import Bound, Deadline, Deadlines, bound

from .channel import ChargerChannel
from .trigger import Trigger

log = logging.getLogger("csms.delivery")


@dataclass(slots=True)
class Worker:
    """The asyncio side of one channel: its link, whether it must ask the policy again, and its task while it
    runs. An idle worker holds no task (10,000 connected chargers would hold 10,000 tasks and their coroutines,
    about 1.5 KB each), only the timer of its next refresh when one is due."""

    link: StationLink | None = None
    due: bool = False      # woken: something it must look at changed
    serving: bool = False  # set up on ``link``: a wake-up runs it
    task: asyncio.Task | None = None
    #: Its next refresh, on the loop's shared deadline timer: a decision wakes every worker of its group, and
    #: each one's refresh is cancelled and set again.
    timer: Deadline | None = None
    timers: Deadlines | None = None  # whose ``timer`` is

    def cancel_timer(self) -> None:
        if self.timer is not None and self.timers is not None:
            self.timers.cancel(self.timer)
        self.timer = None

    def halt(self) -> None:
        """Nothing more runs on the current link: its task is cancelled (and awaited at the delivery's stop)."""
        self.serving = False
        self.cancel_timer()
        if self.task is not None:
            self.task.cancel()


class Workers:
    """Mixin of :class:`~csms.smart_charging.delivery.Delivery`: starting a channel's worker when it is woken."""

    channels: dict[str, ChargerChannel]
    workers: dict[str, Worker]
    #: Every worker task not yet ended (a replaced one until it has): cancelled and awaited at the delivery's stop.
    _tasks: set[asyncio.Task]
    #: Every pending timer of :meth:`_later`: cancelled at the delivery's stop.
    _timers: set[asyncio.TimerHandle]
    trigger: Trigger
    #: The delivery's: one round of asking the policy and doing what it says.
    _step: Callable[[ChargerChannel, Worker, StationLink], Awaitable[None]]
    #: The delivery's: seconds until the limit in force must be refreshed (None: nothing to refresh).
    _next_refresh_in: Callable[[ChargerChannel], float | None]
    _set_control: Callable[[ChargerChannel, ControlState, float | None, str], None]
    #: The loop the delivery runs on and its deadlines, asked for once (:func:`csms.runtime.deadlines.bound`).
    _on: Bound | None

    def _bind(self) -> Bound:
        self._on = on = bound()
        return on

    def _spawn(self, coro: Coroutine[Any, Any, None], cid: str) -> asyncio.Task:
        loop, _ = self._on or self._bind()
        task = loop.create_task(coro, name=f"delivery-{cid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        """Runs ``callback(*args)`` after ``delay`` s, unless the delivery stops first."""
        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)
        loop, _ = self._on or self._bind()
        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _wake_later(self, ch: ChargerChannel, delay: float) -> None:
        self._later(max(0.05, delay), self._wake, ch.id)

    def _wake(self, cid: str) -> None:
        """Something the worker of ``cid`` must look at changed: it asks the policy again, at once if it is idle."""
        worker = self.workers.get(cid)
        if worker is None:
            return
        worker.due = True
        if worker.task is None and worker.serving and worker.link is not None:
            worker.cancel_timer()
            worker.task = self._spawn(self._serve(self.channels[cid], worker, worker.link), cid)

    async def _serve(self, ch: ChargerChannel, worker: Worker, link: StationLink) -> None:
        """Asks the policy and does what it says while woken; then ends, leaving a timer for the next refresh."""
        try:
            while worker.link is link and worker.due:
                worker.due = False
                await self._step(ch, worker, link)
                await self.trigger.maybe(ch, link)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._worker_failed(ch, worker)
            return
        finally:
            loop, timers = self._on or self._bind()
            if worker.task is asyncio.current_task(loop):
                worker.task = None
        if worker.link is link and worker.serving:
            refresh_in = self._next_refresh_in(ch)
            if refresh_in is not None:
                worker.timer, worker.timers = timers.at(loop.time() + refresh_in, self._wake, ch.id), timers

    def _worker_failed(self, ch: ChargerChannel, worker: Worker) -> None:
        """Until the charger connects again (or is set up again), nothing more is sent to it."""
        worker.serving = False
        loop, _ = self._on or self._bind()
        if worker.task is asyncio.current_task(loop):
            worker.task = None
        log.exception("%s: delivery worker failed", ch.id)
        self._set_control(ch, ControlState.UNCONTROLLED, ch.in_force, "delivery worker failed")
