"""Runs the allocation for every load-balancing group whenever something relevant happens.

The controller keeps, per group, the balancer's view of each charger (connected, session, control
state, own draw, phases in use) and the latest mains reading. It learns them from three sources: the
station state's events (:mod:`csms.domain.state`), the meter glue (:meth:`BalancerController.on_reading`,
:meth:`~BalancerController.on_meter_state`) and the smart-charging delivery
(:meth:`~BalancerController.on_control`). Every input only updates that view and wakes the group's task;
the task coalesces a burst of wake-ups into one :func:`~csms.balancer.allocation.allocate` run, hands the
decision to the :class:`~csms.balancer.ports.LimitSink` and the :class:`~csms.balancer.ports.DecisionStore`,
and logs it. A silent meter is noticed by the task's own timer, so the group moves to its offline budget even
when nothing else happens. Each group has its own task, so one group's work never waits on another's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from csms.config import SiteConfig
from csms.domain import state as st
from csms.runtime.aio import cancel_and_wait, wait_event

from .allocation import allocate
from .decision_log import log_decision
from .live import ANSWERS_KEPT, LiveCharger, LiveGroup, circuit_serials, group_spec
from .model import ChargerSpec, ControlState, Decision, MeterInput
from .ports import DecisionStore, LimitSink

log = logging.getLogger(__name__)

#: Connector statuses in which a running transaction draws nothing and wants nothing.
NO_CURRENT_STATUSES = frozenset({"Available", "Finishing", "Unavailable", "Faulted", "Reserved"})


class BalancerController:
    """One asyncio task per group that re-runs the allocation on every relevant change.

    ``debounce`` is how long a group's task waits after a station's event for more to arrive before it runs
    (bursts of events become one run; a meter reading runs it at once); ``tick`` is the longest it goes without a run, so that rotation,
    trimming and probing advance even when nothing reports.
    """

    def __init__(
        self,
        site: SiteConfig,
        state: st.SiteState,
        sink: LimitSink,
        store: DecisionStore | None = None,
        clock: Callable[[], float] = time.time,
        *,
        debounce: float = 0.02,
        tick: float = 5.0,
    ):
        self._state = state
        self._sink = sink
        self._store = store
        self._clock = clock
        self._debounce = debounce
        self._tick = tick
        self._groups: dict[str, LiveGroup] = {}
        self._group_of: dict[str, LiveGroup] = {}
        self._unsubscribe: Callable[[], None] | None = None
        #: Called as ``observer(group_id, seconds)`` after each run with how long allocating, handing the
        #: decision to the sink and the store took (the operator view's decision latency histogram).
        self.run_observers: list[Callable[[str, float], None]] = []
        self._started = False
        self._build(site)

    def _build(self, site: SiteConfig) -> list[LiveGroup]:
        """Puts ``site``'s groups in force, keeping the live view of each group and charger that stays (its
        state, its memory, its task) and building the new ones; returns the groups dropped."""
        known = {cid: charger for g in self._groups.values() for cid, charger in g.chargers.items()}
        groups: dict[str, LiveGroup] = {}
        for cfg in site.load_balancers:
            chargers = {}
            for cid in cfg.chargers:
                charger = site.charger(cid)
                if charger is None:
                    continue
                live = known.get(cid)
                spec = ChargerSpec.from_config(charger, site.circuit_of(cid))
                if live is None:
                    live = LiveCharger(spec)
                    self._refresh(live, self._state.stations.get(cid))
                elif live.spec != spec:
                    live.spec = spec
                chargers[cid] = live
            group = self._groups.get(cfg.id)
            if group is None:
                group = LiveGroup(group_spec(site, cfg), cfg.meter, chargers)
            else:
                group.spec, group.chargers = group_spec(site, cfg), chargers
                if group.meter_serial != cfg.meter:
                    group.meter_serial, group.meter = cfg.meter, None  # another meter's reading is not this one's
                group.cap_until = {cid: t for cid, t in group.cap_until.items() if cid in chargers}
            group.circuit_serials = circuit_serials(site, group.spec)
            metered = {c for ids in group.circuit_serials.values() for c in ids}
            group.circuit_meters = {c: r for c, r in group.circuit_meters.items() if c in metered}
            groups[cfg.id] = group
        dropped = [g for gid, g in self._groups.items() if gid not in groups]
        self._groups = groups
        self._group_of = {cid: g for g in groups.values() for cid in g.chargers}
        return dropped

    async def apply_config(self, site: SiteConfig) -> None:
        """A reloaded config: each group runs its next allocation on its new definition (limits, ``active``,
        members); a dropped group's task is cancelled and awaited, a new group's started. Chargers that stay
        keep what the balancer learned of them (draw, phases in use, control state, answer times)."""
        dropped = self._build(site)
        await cancel_and_wait(g.task for g in dropped)
        for group in self._groups.values():
            if self._started and group.task is None:
                self._start_group(group)
            group.wake.set()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Takes the stations' current state, subscribes to its events and starts one task per group."""
        if self._unsubscribe is not None:
            raise RuntimeError("BalancerController already started")
        for cid, group in self._group_of.items():
            self._refresh(group.chargers[cid], self._state.stations.get(cid))
        self._unsubscribe = self._state.subscribe(self._on_event)
        self._started = True
        for group in self._groups.values():
            self._start_group(group)

    def _start_group(self, group: LiveGroup) -> None:
        group.wake = asyncio.Event()
        group.wake.set()
        group.task = asyncio.create_task(self._run(group), name=f"balancer group {group.spec.id}")

    async def stop(self) -> None:
        """Unsubscribes and cancels and awaits every group's task."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._started = False
        await cancel_and_wait(g.task for g in self._groups.values())
        for g in self._groups.values():
            g.task = None

    # -- queries -----------------------------------------------------------------------------------

    def decision(self, group_id: str) -> Decision | None:
        """The group's latest decision (None before its first run or for an unknown group)."""
        group = self._groups.get(group_id)
        return group.decision if group is not None else None

    def explain(self, charger_id: str) -> str:
        """Why a charger has its limit, from its group's latest decision."""
        group = self._group_of.get(charger_id)
        if group is None:
            return f"{charger_id}: not in any load-balancing group"
        if group.decision is None:
            return f"{charger_id}: group {group.spec.id} has not decided yet"
        return group.decision.explain(charger_id)

    async def next_decision(self, charger_id: str, timeout: float) -> Decision | None:
        """The charger's group's first decision made after this call (so it includes every input given before
        it), or its latest one if none comes within ``timeout`` s; None for a charger in no group."""
        group = self._group_of.get(charger_id)
        if group is None:
            return None
        decided = group.decided
        group.wake.set()
        await wait_event(decided, timeout)
        return group.decision

    # -- inputs ------------------------------------------------------------------------------------

    def on_reading(self, serial: str, current: tuple[float | None, float | None, float | None],
                   saturated: frozenset[int], taken_at: float) -> None:
        """A valid mains reading; meter phases map 1:1 to building phases."""
        reading = MeterInput(taken_at, {p: a for p, a in zip((1, 2, 3), current) if a is not None},
                             frozenset(saturated))
        for group in self._groups.values():
            for circuit in group.circuit_serials.get(serial, ()):
                group.circuit_meters[circuit] = reading
                group.urgent = True
                group.hurry.set()
                group.wake.set()
            if group.meter_serial != serial:
                continue
            if group.meter is not None and taken_at <= group.meter.taken_at:
                log.debug("group %s: meter %s reading at %.3f is not newer than %.3f; ignored",
                          group.spec.id, serial, taken_at, group.meter.taken_at)
                continue
            group.meter = reading
            group.urgent = True
            group.hurry.set()
            group.wake.set()

    def on_meter_state(self, serial: str, online: bool) -> None:
        """An offline meter's last reading is no longer trusted: its groups go to their offline budget now."""
        if online:
            return
        for group in self._groups.values():
            for circuit in group.circuit_serials.get(serial, ()):
                if group.circuit_meters.pop(circuit, None) is not None:
                    group.wake.set()  # its circuits go to their max_current_offline
            if group.meter_serial == serial and group.meter is not None:
                log.info("group %s: meter %s is not online (stale or offline); using max_current_offline %.1f A",
                         group.spec.id, serial, group.spec.max_current_offline)
                group.meter = None
                group.wake.set()

    def on_control(self, charger_id: str, control: ControlState, limit_in_force: float | None) -> None:
        """The delivery's word on whether a charger's limit is in force."""
        group = self._group_of.get(charger_id)
        if group is None:
            return
        charger = group.chargers[charger_id]
        if control is ControlState.CONTROLLED:
            if charger.ours_since is None and charger.session_active:
                charger.ours_since = self._clock()
        elif control is not ControlState.PENDING:
            charger.ours_since = None  # its fallback, or nothing known, is in force again
        if charger.control is control and charger.limit_in_force == limit_in_force:
            return
        if charger.limit_in_force != limit_in_force:
            charger.limit_since = self._clock()
        charger.control, charger.limit_in_force = control, limit_in_force
        group.wake.set()

    def set_operator_cap(self, charger_id: str, amps: float | None, until: float | None = None) -> bool:
        """The operator's cap on a charger's limit (A per phase; None lifts it), ignored from ``until`` on
        (our clock; None: until lifted). False for a charger in no group (there is no limit to cap)."""
        group = self._group_of.get(charger_id)
        if group is None:
            return False
        charger = group.chargers[charger_id]
        charger.operator_cap, charger.operator_cap_until = amps, (until if amps is not None else None)
        if charger.operator_cap_until is None:
            group.cap_until.pop(charger_id, None)
        else:
            group.cap_until[charger_id] = charger.operator_cap_until
        group.wake.set()
        return True

    def on_answer(self, charger_id: str, seconds: float) -> None:
        """The delivery's word on how long a charger took to answer a profile: one slower than an EV takes
        to start is reserved at its fallback from a new session's start (see ``Tuning.first_limit_grace``)."""
        group = self._group_of.get(charger_id)
        if group is None:
            return
        charger = group.chargers[charger_id]
        charger.answers.append(seconds)
        del charger.answers[:-ANSWERS_KEPT]
        slowest = max(charger.answers)
        if slowest != charger.answer_time:
            charger.answer_time = slowest

    def on_fallback(self, charger_id: str, phases: tuple[int, ...]) -> None:
        group = self._group_of.get(charger_id)
        if group is None:
            return
        charger = group.chargers[charger_id]
        if charger.fallback_phases != phases:
            charger.fallback_phases = phases
            group.wake.set()

    def _on_event(self, event: st.Event) -> None:
        group = self._group_of.get(event.station_id)
        if group is None:
            return
        charger = group.chargers[event.station_id]
        station = self._state.stations.get(event.station_id)
        match event:
            case st.StationConnected():
                charger.connected = True
            case st.StationDisconnected():
                charger.connected = False
                charger.ours_since = None
                charger.forget_draw()
            case st.TransactionStarted() | st.TransactionEnded():
                charger.phases_in_use = charger.ours_since = None
                # A new EV starts to follow the limit in force now, not when the idle charger got it.
                charger.limit_since = self._clock()
                charger.forget_draw()
                self._refresh(charger, station)
            case st.StatusChanged(status=status):
                if status in NO_CURRENT_STATUSES:
                    charger.forget_draw()
                self._refresh(charger, station)
            case st.MeterSampled(connector_id=connector_id, sample=sample):
                if station is not None:
                    self._learn(charger, station, connector_id, sample, group.spec.tuning.ev_response)
            case _:
                return
        group.wake.set()

    def _refresh(self, charger: LiveCharger, station: st.StationState | None) -> None:
        if station is None:
            charger.connected = charger.session_active = False
            return
        charger.connected = station.connected
        was_active = charger.session_active
        charger.session_active = any(
            (conn := station.connectors.get(tx.connector_id)) is None or conn.status not in NO_CURRENT_STATUSES
            for tx in station.transactions.values())
        if not charger.session_active and was_active:
            charger.phases_in_use = None

    def _learn(self, charger: LiveCharger, station: st.StationState, connector_id: int, sample: st.PhaseSample,
               ev_response: float) -> None:
        """Maps the charger's own per-phase draw to building phases, and learns the phases its EV uses.

        The phases are learned only from a sample taken once the EV has had ``ev_response`` to follow the
        session's first limit of ours, which allows every wired phase. Under a charger's offline fallback
        (often one phase) a 3-phase car draws on one phase; learned then, it would be counted on one phase
        once our 3-phase limit lets it draw on all three.
        """
        wired = charger.spec.phases_wired
        running = [station.samples[c] for c in station.transactions if c != 0 and c in station.samples]
        samples = running or [sample]
        draw = dict.fromkeys(wired, 0.0)
        for s in samples:
            for i, a in enumerate(s.current[: len(wired)]):
                if a is not None and a > 0:
                    draw[wired[i]] += a
        charger.draw, charger.draw_at = draw, min(s.taken_at for s in samples)
        # Learn only from a sample that reports every wired phase: a charger that reports L1 alone
        # would otherwise look like a 1-phase EV.
        ours_since = charger.ours_since
        if (charger.session_active and ours_since is not None
                and sample.taken_at >= ours_since + ev_response and self._clock() >= ours_since + ev_response
                and all(a is not None for a in sample.current[: len(wired)])):
            in_use = {wired[i - 1] for i in sample.phases_in_use if i <= len(wired)}
            if in_use:
                known = set(charger.phases_in_use or ())
                charger.phases_in_use = tuple(p for p in wired if p in in_use | known)

    # -- the group task ----------------------------------------------------------------------------

    async def _run(self, group: LiveGroup) -> None:
        while True:
            if not group.wake.is_set():
                await wait_event(group.wake, self._timeout(group))
            # A burst of station events (boots, statuses, samples) is one run; a meter reading is acted on at
            # once: it is the input that may say a fuse is over its limit, and it comes at most every poll.
            if self._debounce and not group.urgent:
                group.hurry.clear()
                await wait_event(group.hurry, self._debounce)
            group.urgent = False
            group.wake.clear()
            self._run_once(group)

    def _timeout(self, group: LiveGroup) -> float:
        """Until the next tick, or until the meter goes stale or an operator cap lapses if that is sooner."""
        timeout = self._tick
        now = self._clock()
        if group.meter is not None:
            stale_in = group.meter.taken_at + group.spec.stale_after - now
            if stale_in >= 0:
                timeout = min(timeout, stale_in + 0.01)
        for c in group.spec.circuits:  # a circuit's meter going stale changes its budget too
            if (reading := group.circuit_meters.get(c.id)) is not None:
                stale_in = reading.taken_at + c.stale_after - now
                if stale_in >= 0:
                    timeout = min(timeout, stale_in + 0.01)
        for until in group.cap_until.values():
            if until >= now:
                timeout = min(timeout, until - now + 0.01)
        return max(timeout, 0.0)

    def _run_once(self, group: LiveGroup) -> None:
        started = time.perf_counter()
        gid = group.spec.id
        try:
            inputs = [c.as_input() for c in group.chargers.values()]
            decision = allocate(group.spec, group.meter, inputs, self._clock(), group.memory, group.circuit_meters)
        except Exception:
            log.exception("group %s: allocation failed; the previous limits stay in force", gid)
            return
        previous, group.decision = group.decision, decision
        decided, group.decided = group.decided, asyncio.Event()
        decided.set()
        log_decision(decision, previous)
        try:
            self._sink.apply(decision)
        except Exception:
            log.exception("group %s: the limit sink refused the decision", gid)
        if self._store is not None:
            try:
                self._store.record_decision(decision)
            except Exception:
                log.exception("group %s: storing the decision failed", gid)
        elapsed = time.perf_counter() - started
        for observer in self.run_observers:
            try:
                observer(gid, elapsed)
            except Exception:
                log.exception("group %s: a run observer failed", gid)
