"""Asking a charger for a fresh meter sample (TriggerMessage MeterValues) when the balancer needs one."""

from __future__ import annotations

import logging
from collections.abc import Callable

from csms.balancer.model import ControlState
from csms.domain.link import Outcome, StationLink
from csms.domain.state import SiteState

from .channel import ChargerChannel

log = logging.getLogger("csms.delivery")

#: At most one TriggerMessage(MeterValues) per charger in this many seconds.
TRIGGER_MIN_INTERVAL = 5.0
#: Seconds after ``ramp_time`` that the sample asked for after a changed limit waits, so that it is taken once the
#: EV has followed (the balancer learns phases and caps only from such samples) and not in the same instant.
TRIGGER_SETTLE = 0.5
#: Consecutive Rejected answers (or timeouts) to TriggerMessage after which it is not asked again on that connection.
TRIGGER_MAX_REFUSALS = 3


class Trigger:
    """Asks for a meter sample after a session started or a changed limit was accepted (``trigger_due``)."""

    def __init__(self, state: SiteState, clock: Callable[[], float], record: Callable[..., None],
                 wake_later: Callable[[ChargerChannel, float], None]):
        self.state = state
        self.clock = clock
        self.record = record
        self.wake_later = wake_later

    async def maybe(self, ch: ChargerChannel, link: StationLink) -> None:
        """Asks once the EV has had ramp_time to follow: at most every TRIGGER_MIN_INTERVAL s, never again on
        this connection once the charger said it cannot (NotImplemented/NotSupported) or refused
        TRIGGER_MAX_REFUSALS times in a row."""
        if not ch.trigger_due or ch.trigger_off:
            return
        if ch.new_session and ch.control is ControlState.PENDING:
            return  # the session's first limit goes first: one call at a time, and a slow charger takes seconds
        now = self.clock()
        wait = max(ch.last_trigger_at + TRIGGER_MIN_INTERVAL, ch.trigger_after) - now
        if wait > 0:
            self.wake_later(ch, wait)
            return
        ch.trigger_due = False
        if self.state.station(ch.id).transactions.get(ch.connector) is None:
            return
        ch.last_trigger_at = now
        outcome = await link.trigger_meter_values(ch.connector)
        if outcome.ok:
            ch.trigger_refusals = 0
        elif outcome.permanent:
            ch.trigger_off = True
        elif outcome in (Outcome.REJECTED, Outcome.TIMEOUT, Outcome.ERROR):
            ch.trigger_refusals += 1
            if ch.trigger_refusals >= TRIGGER_MAX_REFUSALS:
                ch.trigger_off = True
                log.warning("%s: TriggerMessage(MeterValues) %s %d times in a row; not asked again on this "
                            "connection", ch.id, outcome.value, ch.trigger_refusals)
                self.record("trigger_refused", ch, times=ch.trigger_refusals)
