"""Online / stale / offline state of one meter, from its valid readings and its source's reachability.

The state only leaves ``online`` when the last valid reading is older than ``stale_after``: a brief
reconnect between two polls does not disturb the balancer. A timer (:meth:`MeterWatch.run`) makes sure a
meter that falls silent is reported even though nothing arrives to trigger a check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .reading import MeterState, Status

log = logging.getLogger(__name__)

StateCallback = Callable[[str, MeterState], None]


class MeterWatch:
    def __init__(
        self,
        serial: str,
        stale_after: float,
        on_state: StateCallback,
        clock: Callable[[], float],
        initial_reason: str = "no reading yet (gateway starting)",
    ):
        self.serial = serial
        self.stale_after = stale_after
        self._on_state = on_state
        self._clock = clock
        self._last_valid: float | None = None
        self._source_error: str | None = None
        self._last_refusal: str | None = None
        self._started = clock()
        self.state = MeterState("offline", initial_reason, clock())

    def announce(self) -> None:
        """Reports the current state (e.g. the initial one, to overwrite a retained state of a previous run)."""
        self._on_state(self.serial, self.state)

    def valid_reading(self) -> None:
        self._last_valid = self._clock()
        self._set("online", "receiving valid readings")

    def refused(self, why: str) -> None:
        self._last_refusal = why

    def suspect(self, why: str) -> None:
        """The meter's readings cannot be trusted (two sources publish for it): stale now, not after
        ``stale_after``, so the balancer falls back to the group's offline maximum at once."""
        self._last_refusal = why
        self._set("stale", why)

    def source_down(self, reason: str) -> None:
        self._source_error = reason
        if self.state.status != "online":
            self._set("offline", reason)

    def source_up(self) -> None:
        """The source answers again. The state waits for a valid reading (online) or the timer (stale)."""
        self._source_error = None

    def set(self, status: Status, reason: str) -> None:
        """Forces a state, e.g. ``offline`` when the gateway stops."""
        self._set(status, reason)

    def check(self) -> float:
        """Marks the meter stale/offline once its last valid reading is too old; returns seconds to the next check.

        Before the first reading, the grace period runs from the watch's creation.
        """
        fresh_since = self._last_valid if self._last_valid is not None else self._started
        age = self._clock() - fresh_since
        if age < self.stale_after and (self.state.status == "online" or self._last_valid is None):
            return self.stale_after - age
        if self._source_error is not None:
            self._set("offline", self._source_error)
        else:
            reason = f"no valid reading for {self.stale_after:g} s"
            if self._last_refusal:
                reason += f"; last refused: {self._last_refusal}"
            self._set("stale", reason)
        return self.stale_after

    async def run(self) -> None:
        """The stale timer: checks exactly when the newest valid reading turns stale, until cancelled."""
        while True:
            await asyncio.sleep(self.check())

    def _set(self, status: Status, reason: str) -> None:
        if (status, reason) == (self.state.status, self.state.reason):
            return
        since = self.state.since if status == self.state.status else self._clock()
        self.state = MeterState(status, reason, since)
        level = logging.INFO if status == "online" else logging.WARNING
        log.log(level, "meter %s is %s: %s", self.serial, status, reason)
        self._on_state(self.serial, self.state)
