"""Smart-charging delivery: the balancer decides, this makes chargers obey, safely, in both versions.

One worker per connected charger owns everything we send that charger: a task while it has something to do,
none while it is idle (:mod:`.worker`). It sets the charger up when it connects (:mod:`.setup`), then keeps
exactly one dynamic limit in force: a higher-stack profile that expires after ``failsafe_ttl`` unless refreshed,
so a charger that stops hearing from us falls back by itself. What to send and when is the pure policy's call
(:mod:`.policy`, break before make in :mod:`.exposure`); the worker owns the tasks, timers, link calls and storage
writes, and reports every change of a charger's control state to the balancer
(:class:`~csms.balancer.ports.ControlReports`).

Coalescing: a channel holds only the newest wanted limit; a slow charger never receives a stale one and
never holds up another channel. Every profile sent, its answer and every change of a charger's control state
is logged and stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from csms.runtime.aio import cancel_and_wait
from csms.balancer.ports import ControlReports, DecisionOutbox
from csms.balancer.model import ControlState, Decision
from csms.config import SiteConfig, SmartChargingConfig, charger_phases
from csms.domain.link import Outcome, ProfileSpec, Purpose, StationLink
from csms.domain.state import (
    Event, MeterSampled, SiteState, StationBooted, StationDisconnected, TransactionEnded, TransactionStarted,
)
from csms.storage.database import Storage
from csms.storage.records import log_event

from . import policy
from .chain import Move, after_failure, chain_of, purpose_of, retry_delay
from .channel import ChargerChannel, Sent
from .exposure import ExposureBook, may_apply
from .profiles import dynamic_spec, in_unit
from .readings import StationReadings
from .reconfig import Reconfigurable
from .worker import Worker, Workers
from .setup import Installer
from .trigger import TRIGGER_SETTLE, Trigger
from .wakes import GroupWakes

log = logging.getLogger("csms.delivery")


class Delivery(Reconfigurable, Workers):
    """Receives the balancer's decisions from ``decisions`` and reports control states back to ``reports``."""

    def __init__(self, cfg: SiteConfig, state: SiteState, decisions: DecisionOutbox, reports: ControlReports,
                 storage: Storage | None = None, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self.settings: SmartChargingConfig = cfg.smart_charging
        self.state = state
        self.storage = storage
        self.reports = reports
        self.clock = clock
        self.channels = {c.id: ChargerChannel(c, cfg.group_of(c.id), charger_phases(c)) for c in cfg.chargers}
        self.workers = {cid: Worker() for cid in self.channels}
        self.readings = StationReadings(state)
        self.book = ExposureBook(self.channels.values(), self.settings.ramp_time, self.settings.failsafe_ttl,
                                 self.readings)
        self.installer = Installer(self.settings, self._record, self._set_profile, clock, self.readings.volts)
        self.trigger = Trigger(state, clock, self._record, self._wake_later)
        self.group_wakes = GroupWakes(g.id for g in cfg.load_balancers)
        self._tasks = set()
        self._timers = set()
        self._on = None
        self._unsubscribe = state.subscribe(self._on_event)
        decisions.open(self.apply)
        self.sent = self.accepted = self.rejected = 0

    # -- inputs ---------------------------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        """LimitSink: remember the newest limit per charger and wake the channels that must act."""
        self.book.take(decision)
        now = self.clock()
        for cid, lim in decision.limits.items():
            ch = self.channels.get(cid)
            if ch is None or not lim.controlled:
                continue
            ch.decided_at = now
            if ch.wanted != lim.limit or ch.new_session:
                # A new session's first limit goes out even when it equals the previous one (0 A while paused):
                # until it is accepted the charger applies its fallback, not that limit.
                ch.wanted = lim.limit
                self._wake(cid)
        self._poke_group(decision.group_id)

    def attach(self, link: StationLink) -> None:
        """A station's session started: (re)start its channel's worker on the new link."""
        ch = self.channels.get(link.id)
        if ch is None:
            return
        worker = self.workers[ch.id]
        worker.halt()  # a task of the previous link is awaited at stop() if it has not ended by then
        worker.link = link
        version = getattr(link, "version", None)
        ch.reset_for_connection(None if version is None else str(version),
                                bool(self.state.station(ch.id).transactions.get(ch.connector)))
        worker.task = self._spawn(self._run(ch, worker, link), ch.id)

    async def stop(self) -> None:
        """Unsubscribes, cancels every timer, and cancels and awaits every worker task."""
        self._unsubscribe()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for worker in self.workers.values():
            worker.cancel_timer()
        await cancel_and_wait(list(self._tasks))

    def _on_event(self, event: Event) -> None:
        ch = self.channels.get(event.station_id)
        if ch is None:
            return
        worker = self.workers[ch.id]
        if isinstance(event, StationDisconnected):
            worker.link, ch.connected = None, False
            worker.halt()
            # Until its dynamic profile expires the charger keeps the last limit it accepted.
            self._set_control(ch, ControlState.FALLBACK if ch.fallback_installed and ch.in_force is None
                              else ControlState.DISCONNECTED_UNKNOWN, ch.in_force, "disconnected")
            if ch.fallback_installed and ch.in_force is not None:
                self._later(ch.expires_in(self.clock(), self.settings.failsafe_ttl), self._expired, ch)
        elif isinstance(event, StationBooted):
            link = worker.link
            if link is not None and ch.setup_for_boot is not None and getattr(link, "boots", 0) != ch.setup_for_boot:
                log.info("%s: rebooted on the same connection; setting it up again", ch.id)
                self._record("rebooted", ch)
                self.attach(link)
        elif isinstance(event, (TransactionStarted, TransactionEnded)):
            ch.session_seen_at = self.clock()
            if isinstance(event, TransactionStarted) and event.transaction.connector_id == ch.connector:
                self._session_started(ch)
            if isinstance(event, TransactionEnded):
                ch.new_session = False
                ch.forget_tx_profile()
                ch.failures = ch.refusals = 0  # refusals of a profile for the ended transaction say nothing
                if ch.control is ControlState.NOT_OBEYING:  # idle, it draws nothing; a new session is judged anew
                    self._set_control(ch, ControlState.UNCONTROLLED, ch.in_force, "its session ended")
                self._idle_in_fallback(ch)
            if ch.group is not None:
                self._poke_group(ch.group.id, ch)
            self._wake(ch.id)
        elif isinstance(event, MeterSampled):
            self._check_obeying(ch, event)
            if ch.group is not None:
                self._poke_group(ch.group.id, ch)

    def _session_started(self, ch: ChargerChannel) -> None:
        """Until its first limit is accepted a new session draws what its charger may apply on its own (its
        fallback, or its maximum without one): the balancer counts that (PENDING), and the first decision for
        the session is sent whatever it is."""
        ch.new_session = True
        ch.trigger_due = True
        if purpose_of(ch) is Purpose.TX:
            ch.forget_tx_profile()  # an old TxProfile belonged to another transaction
        if not ch.connected or ch.group is None or not ch.group.active:
            return
        if ch.gave_up:
            self._set_control(ch, ControlState.UNCONTROLLED, None, ch.control_reason)
            return
        may = self._may_apply(ch)
        self._set_control(ch, ControlState.PENDING, may,
                          f"new session: may draw {may:.1f} A until its first limit is accepted")

    def _may_apply(self, ch: ChargerChannel) -> float:
        return may_apply(ch, self.clock(), self.settings.failsafe_ttl)

    def _expired(self, ch: ChargerChannel) -> None:
        if not ch.connected and ch.fallback_installed:
            ch.in_force = None
            self._set_control(ch, ControlState.FALLBACK, None, "dynamic limit expired; fallback in force")

    def _poke_group(self, group_id: str, ch: ChargerChannel | None = None) -> None:
        """Something in a group changed (one charger's, when ``ch`` is given): refresh exposures, wake gates."""
        if ch is None:
            self.book.forget(group_id)
        else:
            self.book.refresh(ch, self.clock())
        self.group_wakes.poke(group_id)

    # -- the worker ------------------------------------------------------------------------------

    async def _run(self, ch: ChargerChannel, worker: Worker, link: StationLink) -> None:
        """Sets the charger up on a new link, then serves it."""
        try:
            await self.installer.wait_for_boot(ch, link)
            await self.installer.set_up(ch, link)
            self._report_set_up(ch)
            self._repair_later(ch)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._worker_failed(ch, worker)
            return
        worker.serving = worker.due = True
        await self._serve(ch, worker, link)

    def _report_set_up(self, ch: ChargerChannel) -> None:
        if ch.new_session and ch.group is not None and ch.group.active:
            may = self._may_apply(ch)
            self._set_control(ch, ControlState.PENDING, may, f"set up with a session: may draw {may:.1f} A until "
                              "its first limit is accepted")
        else:
            self._set_control(ch, ControlState.CONTROLLED if ch.fallback_installed else ControlState.UNCONTROLLED,
                              None, "set up")

    def _next_refresh_in(self, ch: ChargerChannel) -> float | None:
        if ch.last is None:
            return None
        return max(0.0, ch.last.at + self.settings.failsafe_ttl / 3 - self.clock())

    async def _step(self, ch: ChargerChannel, worker: Worker, link: StationLink) -> None:
        """Asks the policy what to send now and does it."""
        tx = self.state.station(ch.id).transactions.get(ch.connector)
        if ch.setup_unanswered and self.clock() >= ch.setup_retry_at:
            await self._repair(ch, link, tx is None)
        target = ch.wanted
        decided = policy.step(ch, self.clock(), self.settings, self.book, tx is not None)
        if not await self._follow(ch, decided) or decided.send is None:
            return
        await self._send(ch, link, decided.send, purpose_of(ch), tx.transaction_id if tx else None)
        await self._follow(ch, policy.after_send(ch, target, decided.send, self.clock(), self.settings))

    async def _repair(self, ch: ChargerChannel, link: StationLink, idle: bool) -> None:
        """Asks again what its set-up left unanswered; a fallback installed now puts an idle charger under control."""
        had_fallback = ch.fallback_installed
        await self.installer.repair(ch, link)
        self._repair_later(ch)
        if ch.fallback_installed and not had_fallback and ch.group is not None:
            self._poke_group(ch.group.id, ch)
            if idle:
                self._idle_in_fallback(ch)

    def _repair_later(self, ch: ChargerChannel) -> None:
        delay = self.installer.retry_in(ch)
        if delay is not None:
            self._wake_later(ch, delay)

    async def _follow(self, ch: ChargerChannel, decided: policy.Step) -> bool:
        """Carries out what a step decided besides sending; False if it says to stop here."""
        if decided.idle:
            self._idle_in_fallback(ch)  # no session: the fallback TxDefaultProfile caps whatever starts next
        for at in decided.wake_at:
            self._wake_later(ch, at - self.clock())
        if decided.wait_for_group:
            await self._wait_for_group(ch)
        return not decided.idle

    def _idle_in_fallback(self, ch: ChargerChannel) -> None:
        """A connected charger with no session and its fallback installed is under control: it can only
        start at its offline current. (A TxProfile it refused for a transaction it had already ended, e.g.
        one that ended while we were down, must not leave it uncontrolled.)"""
        if not ch.connected or not ch.fallback_installed or ch.in_force is not None or ch.gave_up:
            return
        if ch.control in (ControlState.UNCONTROLLED, ControlState.PENDING):
            self._set_control(ch, ControlState.CONTROLLED, None, "no session; its offline fallback applies")

    async def _wait_for_group(self, ch: ChargerChannel) -> None:
        """Blocked by break-before-make: wait for another charger's acceptance or new draw, then retry."""
        await self.group_wakes.wait(ch.group.id, max(0.5, self.settings.ramp_time / 4))
        self._wake(ch.id)

    # -- sending ---------------------------------------------------------------------------------

    async def _set_profile(self, ch: ChargerChannel, link: StationLink, spec: ProfileSpec) -> Outcome:
        """Sends one profile and reports how long the charger took to answer (the balancer counts a new
        session at its fallback at once on a charger slower than an EV takes to start)."""
        sent = self.clock()
        outcome = await link.set_profile(spec)
        if outcome.ok or outcome is Outcome.TIMEOUT or outcome is Outcome.REJECTED:
            self.reports.on_answer(ch.id, self.clock() - sent)
        return outcome

    async def _send(self, ch: ChargerChannel, link: StationLink, amps: float, purpose: Purpose,
                    transaction_id: str | None) -> None:
        s, now = self.settings, self.clock()
        limit, unit = in_unit(ch, amps, ch.cfg.phases, self.readings.volts)
        levels = ch.stack_levels or [1]
        level = levels[min(ch.level_pos, len(levels) - 1)]
        spec = dynamic_spec(ch, limit, unit, purpose, level, transaction_id, now, s)
        previous = ch.in_force
        applied = ch.start_sending(amps, self._may_apply(ch))
        if amps != previous and ch.control is not ControlState.NOT_OBEYING:
            self._set_control(ch, ControlState.PENDING, applied, f"sending {amps:.1f} A")  # refreshes its exposure
        else:
            self.book.refresh(ch, self.clock())
        self.sent += 1
        ch.sent += 1
        outcome = await self._set_profile(ch, link, spec)
        self._record("profile", ch, role="dynamic", purpose=purpose.value, stack_level=level, limit=limit, unit=unit,
                     outcome=outcome.value)
        if outcome.ok:
            await self._accepted(ch, link, Sent(amps, purpose, level, now), previous, unit)
        else:
            await self._failed(ch, link, amps, purpose, level, outcome, now)

    async def _accepted(self, ch: ChargerChannel, link: StationLink, sent: Sent, previous: float | None,
                        unit: str) -> None:
        amps, s = sent.limit, self.settings
        self.accepted += 1
        ch.accepted += 1
        refresh = ch.limit_accepted(sent, previous, self.clock())
        # DEBUG: the balancer logs each decision's changes in one line, and the "profile" event keeps each answer.
        log.debug("%s: %s %.1f A accepted (%s, stack %d)", ch.id, "refreshed" if refresh else "limit", amps,
                  sent.purpose.value, sent.stack_level)
        if ch.control is ControlState.NOT_OBEYING:
            # Accepting a limit is no proof of following it: only a sample within its limit is.
            self.book.refresh(ch, self.clock())
        else:
            self._set_control(ch, ControlState.CONTROLLED, amps, "accepted")
        self._poke_group(ch.group.id, ch)
        if not refresh:
            # A fresh sample shows how the car follows the new limit, once it has had ramp_time to: one
            # taken at once shows the old draw, which the balancer cannot learn phases or caps from, and a
            # 60 s charger's next periodic sample may be a minute away.
            ch.trigger_due = True
            ch.trigger_after = self.clock() + s.ramp_time + TRIGGER_SETTLE
            if s.confirm_with_composite:
                await self.installer.confirm(ch, link, amps, unit)

    async def _failed(self, ch: ChargerChannel, link: StationLink, amps: float, purpose: Purpose, level: int,
                      outcome: Outcome, now: float) -> None:
        self.rejected += 1
        ch.rejected += 1
        ch.exposure_limit = None
        verdict = after_failure(ch, outcome)
        ch.refusals, ch.failures = verdict.refusals, verdict.failures
        if verdict.move is Move.GIVE_UP:
            self._give_up(ch)
            return
        if verdict.move is Move.LOWER_LEVEL:
            ch.level_pos += 1
        elif verdict.move is Move.NEXT_PURPOSE:
            await self._next_purpose(ch, link)
        delay = retry_delay(ch.failures)
        ch.retry_at = now + delay
        log.warning("%s: limit %.1f A %s (%s, stack %d); retrying in %.1f s, meanwhile uncontrolled", ch.id, amps,
                    outcome.value, purpose.value, level, delay)
        self._set_control(ch, ControlState.UNCONTROLLED, ch.in_force, f"profile {outcome.value}")
        self._wake_later(ch, delay)

    def _give_up(self, ch: ChargerChannel) -> None:
        """Every purpose we may use is not implemented: stop sending, count it at its maximum, tell the operator."""
        ch.gave_up = True
        tried = ", ".join(p.value for p in chain_of(ch))
        log.error("%s: charger does not implement SetChargingProfile for any purpose we can use (%s): it is "
                  "not controlled and is counted at its max_current %.1f A; asked again only after it reconnects "
                  "or reboots", ch.id, tried, ch.cfg.max_current)
        self._record("profiles_not_supported", ch, purposes=tried, counted=ch.cfg.max_current)
        self._set_control(ch, ControlState.UNCONTROLLED, None,
                          "charger does not support charging profiles; not retried until it reconnects or reboots")

    async def _next_purpose(self, ch: ChargerChannel, link: StationLink) -> None:
        old = purpose_of(ch)
        ch.chain_pos += 1
        ch.level_pos = 0
        new = purpose_of(ch)
        log.warning("%s: charger refuses %s; trying %s", ch.id, old.value, new.value)
        self._record("purpose_fallback", ch, refused=old.value, next=new.value)
        if new is Purpose.STATION_MAX and ch.fallback_purpose is Purpose.TX_DEFAULT:
            await self.installer.move_fallback_to_station_max(ch, link)

    # -- obeying and bookkeeping -------------------------------------------------------------------

    def _check_obeying(self, ch: ChargerChannel, event: MeterSampled) -> None:
        drawn = max((a for a in event.sample.current if a is not None), default=0.0)
        verdict = policy.judge_draw(ch, drawn, event.at, self.settings)
        ch.over_limit_since = verdict.over_limit_since
        if verdict.control is None:
            return
        if verdict.note:
            log.warning("%s: %s", ch.id, verdict.note)
        self._set_control(ch, verdict.control, ch.in_force, verdict.reason)

    def _set_control(self, ch: ChargerChannel, control: ControlState, limit: float | None, reason: str) -> None:
        if control is ControlState.FALLBACK and ch.fallback_phases:
            self.reports.on_fallback(ch.id, ch.fallback_phases)  # where it binds: told before it counts
        ch.control = control
        ch.control_reason = reason
        self.book.refresh(ch, self.clock())  # after the change: an unsteered charger counts at its maximum
        if control is not ControlState.PENDING and control is not ch.settled_control:
            # Leaving NOT_OBEYING (its session ended) is no alarm, even through UNCONTROLLED until the next limit.
            alarm = control is ControlState.NOT_OBEYING or (control is ControlState.UNCONTROLLED
                                                             and ch.settled_control is not ControlState.NOT_OBEYING)
            ch.settled_control = control
            level = logging.WARNING if alarm else logging.INFO
            log.log(level, "%s: control %s (%s)", ch.id, control.value, reason)
            self._record("control", ch, state=control.value, reason=reason, limit=limit)
        self.reports.on_control(ch.id, control, limit)

    def _record(self, kind: str, ch: ChargerChannel, **detail) -> None:
        if self.storage is not None:
            self.storage.write_nowait(log_event(kind, self.clock(), station_id=ch.id,
                                                group_id=ch.group.id if ch.group else None, **detail), kind)
