"""Deciding every charger's current limit in a load-balancing group.

:func:`allocate` is pure and deterministic: it reads a :class:`~csms.balancer.model.GroupSpec`, the
latest mains reading, the chargers' states and the time, and returns a
:class:`~csms.balancer.model.Decision`. It has no clock and does no I/O. Its one mutable input is the
:class:`BalancerMemory`, which carries what must persist from one run to the next (who is paused and
since when, who is trimmed) and which ``allocate`` updates in place.

The algorithm, per run:

1. **Budget per building phase** (:func:`phase_budget`). With a fresh reading:
   ``min(max_current_online, supply_max_current - margin - other_load[p])``, where the other load is the
   measured current minus the chargers' own fresh draw when the meter sees them
   (``chargers_in_measurement``), the measured current otherwise. Solar export makes it negative and so
   raises the budget, never above ``max_current_online``. A clamp at the top of its range only says "at
   least this much": that phase's budget is at most 0 (overload). A stale or missing reading, or a group
   without a meter, gives ``max_current_offline``.
2. **Reserve what the balancer does not control.** A disconnected charger is counted at its offline
   current on its offline phase when its fallback is known to be in force, at ``max_current`` on every
   wired phase otherwise. A connected charger whose limit is pending, rejected or ignored is counted at the
   most it may draw (the old or the new limit, or ``max_current``). What is left per phase is ``available``.
3. **Who charges.** Every controlled session needs at least ``min_current`` on each phase it draws on
   (IEC 61851 cannot go lower), or 0. If ``available`` fits them all, all charge. Otherwise sessions are
   admitted greedily in rotation order (those running in their turn, then those that waited longest; a
   session that ran for ``rotation_period`` goes to the back), and one is paused only when ``min_current``
   no longer fits on one of its phases. When a multi-phase session would take the room of several 1-phase
   ones, the sessions not owed a turn are also tried smallest footprint first, and whichever order pauses
   fewer wins. A session paused less than a rotation period ago also needs ``resume_margin``, so a
   hovering reading does not pause and resume it on every sample.
4. **How much.** The admitted sessions share ``available`` max-min fairly by progressive filling
   (:mod:`csms.balancer.waterfill`), each up to its cap: ``max_current``, or for a car that drew clearly
   less than its limit for a while, its draw plus headroom (lifted every ``probe_every`` seconds to see
   whether it wants more). Such a trimmed car is counted at its draw: the headroom it does not use is lent
   to the others, at most ``trim_headroom`` per phase in all. A session draws only on the phases its EV
   really uses once they are learned, so a 1-phase EV on a 3-phase charger leaves the other two phases to
   others.
5. Limits are rounded **down** to 0.1 A (OCPP 1.6 ``multipleOf``), never below ``min_current``.

Safety argument. For every group phase p: the reserved chargers are counted at the most they can draw;
admission keeps ``sum(min_current)`` of the admitted sessions on p within ``available[p]``; progressive
filling never lets a phase's sum exceed its available current (a phase that is full stops every set on
it); rounding only lowers limits. So the worst case of everything the group's chargers can draw on p is
within the budget, which itself keeps ``margin`` below the fuse after the other load, or is the operator's
offline figure when the load cannot be measured; except for the headroom trimmed cars lend (at most
``trim_headroom`` per phase), which a car uses only by rising above the draw it was measured at: for the
fuse that is a step of the load like an appliance switching on, which the next reading shows and the
budget takes back from the others. The one exception is the reserved chargers alone
exceeding the budget (for instance several disconnected chargers of unknown state): then every controlled
session on that phase is paused, which is the most the balancer can do. A limit takes a round trip to be
in force: the allocation plans where every limit goes, and the delivery moves there safely (a decrease at
once, an increase only once the capacity it needs is free: break before make). A decision also names the
chargers whose accepted decrease its reading shows done (:meth:`_Run.proven_down`), so that the delivery need
not wait out their ramp time. A new session whose first
limit is slow to be confirmed is reserved at its fallback (``first_limit_grace``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from . import waterfill
from .budget import clamp_saturated, meter_fresh, phase_budget, phase_ceiling, steady
from .estimate import CAP_TOLERANCE, INF, other_load
from .grid import EPS, ceil_half, ceil_step, floor_step
from .memory import BalancerMemory, ChargerMemory
from .model import ChargerInput, ChargerLimit, ChargerSpec, ControlState, Decision, GroupSpec, MeterInput

_CONTROLLED = ControlState.CONTROLLED
_FALLBACK = ControlState.FALLBACK
_PENDING = ControlState.PENDING
_NOT_OBEYING = ControlState.NOT_OBEYING


def most_drawn(control: ControlState, in_force: float | None, max_current: float,
               pending: float | None = None) -> float:
    """The most a connected charger not (yet) steered may draw per phase (A): the limit it accepted, or its
    ``max_current`` when none is known in force or it draws over its limit; while a new limit (``pending``) is
    in flight, the larger of the two. Its offline fallback, which binds on its offline phase, is counted apart:
    0 here. The allocation reserves it so (:meth:`_Run.reserve`) and the delivery's break-before-make counts it
    so (:mod:`csms.smart_charging.exposure`)."""
    if control is _FALLBACK:
        worst = 0.0
    elif control is _NOT_OBEYING or in_force is None:
        worst = max_current
    else:
        worst = in_force
    if control is _PENDING and pending is not None and pending > worst:
        worst = pending
    return worst


def _first(item: tuple) -> float:
    return item[0]


def _own_per_phase(draw: dict[int, float], spec_max: float, wired: tuple[int, ...],
                   limit: float | None) -> tuple[float, float, float]:
    """A charger's reported draw on building phases 1, 2, 3, bounded by what it can physically draw: nothing
    on a phase it is not wired to, at most its ``max_current``, and at most ``limit`` (a controlled charger's
    limit in force: an older sample may predate a decrease). A charger that reports 16,000 A (mA sent as A)
    is therefore counted at its ``max_current``, not subtracted from the reading as if it were real."""
    top = spec_max if limit is None or limit > spec_max else limit
    out = [0.0, 0.0, 0.0]
    for p, a in draw.items():
        if p in wired and a > 0:
            out[p - 1] = a if a < top else top
    return out[0], out[1], out[2]


def allocate(
    group: GroupSpec,
    meter: MeterInput | None,
    chargers: Sequence[ChargerInput],
    now: float,
    memory: BalancerMemory,
) -> Decision:
    """Decide every charger's limit for this run; see the module docstring. Updates ``memory``."""
    if not group.active:
        return _inactive(group, chargers, now, memory)
    run = _Run(group, now, memory)
    measured = group.chargers_in_measurement and meter_fresh(group, meter, now)
    limits = run.classify(chargers, meter.taken_at if measured else None)  # type: ignore[union-attr]
    if measured:
        other = run.other_load(meter)  # type: ignore[arg-type]
    elif meter_fresh(group, meter, now):  # the meter does not see the chargers: the reading is the other load
        other = run.peak(meter.taken_at, dict(meter.current))  # type: ignore[union-attr]
    else:
        other = None
    budget, fresh, notes = phase_budget(group, meter, other, now)
    if fresh:
        budget = steady(group, memory.budget, budget, notes)
    memory.budget = budget if fresh else None
    run.available = {p: budget[p] - run.reserved[p] for p in group.phases}
    run.admit_and_fill(limits)
    memory.chargers = run.new_memory
    proven = run.proven_down(meter, budget) if measured and fresh else {}  # type: ignore[arg-type]
    return Decision(group.id, now, budget, fresh, limits, run.available, notes, proven)


def _reported(sample: dict[int, float], spec: ChargerSpec) -> dict[int, float]:
    """The phases a sample reports, each bounded by what the charger can draw (see :func:`_own_per_phase`)."""
    return {p: min(max(a, 0.0), spec.max_current) for p, a in sample.items() if p in spec.phases_wired}


def pending_target(ch: ChargerInput, mem: ChargerMemory) -> bool:
    """Whether a limit is in flight to ``ch`` that it may switch to at any moment."""
    return ch.control is _PENDING and mem.target is not None


def _inactive(group: GroupSpec, chargers: Sequence[ChargerInput], now: float, memory: BalancerMemory) -> Decision:
    memory.chargers = {}
    limits = {}
    for ch in chargers:
        s = ch.spec
        limits[s.id] = ChargerLimit(s.offline_current, (s.offline_phase,),
                                    "group inactive: the charger keeps its offline limit", False, s.offline_current)
    budget = dict.fromkeys(group.phases, group.max_current_offline)
    note = "group inactive (active = false): chargers keep their offline limits"
    return Decision(group.id, now, budget, False, limits, dict(budget), dict.fromkeys(group.phases, note))


class _Run:
    """The working state of one :func:`allocate` call."""

    def __init__(self, group: GroupSpec, now: float, memory: BalancerMemory):
        self.group = group
        self.now = now
        self.memory = memory
        self.old_memory = memory.chargers
        self.new_memory: dict[str, ChargerMemory] = {}
        self.min = ceil_step(group.min_current)
        self.gset = frozenset(group.phases)
        self.available: dict[int, float] = {}
        self.reserved = dict.fromkeys(group.phases, 0.0)
        #: At the reading's time: the least and the most the chargers may draw per building phase 1..3, and
        #: how many of them are moving on each (see :mod:`csms.balancer.estimate`).
        self.least = [0.0, 0.0, 0.0]
        self.most = [0.0, 0.0, 0.0]
        self.moving = [0, 0, 0]
        #: Per building phase, how much less the chargers draw than the model believed before this run
        #: learned it (the held other load is raised by that much).
        self.relearned = [0.0, 0.0, 0.0]
        #: Chargers whose move ended since the previous reading: what the new reading can teach.
        self.settled: list[tuple[ChargerMemory, tuple[float, float, float]]] = []
        #: Controlled sessions per phase set and cap, and how many per phase set were paused recently.
        self.classes: dict[tuple[int, ...], dict[float, int]] = {}
        self.resuming: dict[tuple[int, ...], int] = {}
        #: Controlled sessions: (charger id, phase set, cap, memory, cap reason or None).
        self.candidates: list[tuple[str, tuple[int, ...], float, ChargerMemory, str | None]] = []
        self._phase_sets: dict[tuple, tuple[int, ...]] = {}
        self._reasons: dict[tuple, str] = {}
        #: Per trimmed session: the A of its headroom lent to others (see :meth:`_lend`).
        self.lends: dict[str, float] = {}
        #: Sessions the model follows at the reading (under a limit of ours, one in flight, or their fallback),
        #: with the least and the most they may draw then.
        self.steered: list[tuple[ChargerInput, tuple[float, float, float], tuple[float, float, float]]] = []

    # -- step 2: classify and reserve ---------------------------------------------------------------

    def phase_set(self, phases: tuple[int, ...]) -> tuple[int, ...]:
        s = self._phase_sets.get(phases)
        if s is None:
            s = self._phase_sets[phases] = tuple(p for p in phases if p in self.gset)
        return s

    def classify(self, chargers: Sequence[ChargerInput], reading_at: float | None) -> dict[str, ChargerLimit]:
        """Sorts the chargers into controlled sessions (candidates) and the rest, which it reserves.

        With ``reading_at`` (a fresh reading that sees the chargers) it also works out, in the same pass, what
        each charger may be drawing at that moment (:meth:`estimate`).
        """
        reserved = self.reserved
        now = self.now
        period = self.group.rotation_period
        limits: dict[str, ChargerLimit] = {}
        old_get, new = self.old_memory.get, self.new_memory
        append = self.candidates.append
        sets_get, phase_set = self._phase_sets.get, self.phase_set
        classes, resuming = self.classes, self.resuming
        caps: dict[float, float] = {}
        idle_limits: dict[tuple[int, ...], ChargerLimit] = {}
        idle_get = idle_limits.get
        controlled = _CONTROLLED
        for ch in chargers:
            spec = ch.spec
            cid = spec.id
            mem = old_get(cid)
            if mem is None:
                mem = ChargerMemory()
            new[cid] = mem
            pending = ch.control is _PENDING
            if pending:
                if mem.pending_since is None:
                    mem.pending_since = now
            else:
                mem.pending_since = None
            if reading_at is not None:
                self.estimate(ch, mem, reading_at)
            if ch.connected and (ch.control is controlled or (pending and not self._slow_first_limit(ch, mem))):
                if ch.session_active:
                    key = ch.phases_in_use or mem.model.in_use or spec.phases_wired
                    phases = sets_get(key)
                    if phases is None:
                        phases = phase_set(key)
                    full = caps.get(spec.max_current)
                    if full is None:
                        full = caps[spec.max_current] = floor_step(spec.max_current)
                    if ((ch.draw or None) is mem.sample and mem.in_force == ch.limit_in_force
                            and now < mem.recheck_at and mem.full == full):
                        cap, why = mem.cap, mem.cap_why  # nothing new and no timer due: the common case
                    else:
                        cap, why = self.cap(ch, phases, mem, full)
                    append((cid, phases, cap, mem, why))
                    counts = classes.get(phases)
                    if counts is None:
                        counts = classes[phases] = {}
                    counts[cap] = counts.get(cap, 0) + 1
                    paused = mem.paused_since
                    if paused is not None and now - paused < period:
                        resuming[phases] = resuming.get(phases, 0) + 1
                else:
                    mem.running_since = mem.paused_since = mem.under_since = mem.trim_cap = mem.probe = None
                    mem.charged = 0.0
                    mem.target = 0.0
                    idle = idle_get(spec.phases_wired)
                    if idle is None:
                        idle = idle_limits[spec.phases_wired] = ChargerLimit(
                            0.0, phase_set(spec.phases_wired), "no session: nothing to charge", True, 0.0)
                    limits[cid] = idle
                continue
            limit = self.reserve(ch, mem, reserved)
            limits[cid] = limit
            if limit.controlled:
                mem.target = limit.limit
        return limits

    def _slow_first_limit(self, ch: ChargerInput, mem: ChargerMemory) -> bool:
        """A new session whose first limit has been in flight longer than an EV takes to start drawing, or
        whose charger is known to answer slower than that: its charger may be applying its fallback, so it is
        reserved at that until it confirms.

        Any other change in flight is planned like a settled one: the allocation decides where every limit
        should go, and the delivery moves there safely (decreases first, an increase only once the capacity it
        needs is free). Reserving the old limit here as well would pause other sessions for the round trip of
        every decrease, and pause a charging car each time another car plugs in.
        """
        grace = self.group.tuning.first_limit_grace
        return (ch.session_active and mem.running_since is None and mem.paused_since is None
                and mem.pending_since is not None
                and (self.now - mem.pending_since >= grace or (ch.answer_time or 0.0) >= grace))

    # -- the estimate of the chargers' own draw (csms.balancer.estimate) ---------------------------

    def estimate(self, ch: ChargerInput, mem: ChargerMemory, at: float) -> None:
        """Adds what ``ch`` may be drawing at the reading's time ``at`` to the run's sums, and teaches its
        model what is new (a changed limit, a sample)."""
        spec, model, tuning = ch.spec, mem.model, self.group.tuning
        window = tuning.ev_response
        sample = ch.draw or None
        recent = (sample is not None and ch.draw_at is not None
                  and self.now - ch.draw_at <= tuning.draw_max_age)
        control = ch.control
        steered = ch.connected and ch.session_active and (control is _CONTROLLED or control is _PENDING)
        if not steered:
            if (model.limit is not None and mem.ended_at is None and ch.connected and not ch.session_active
                    and control is _CONTROLLED):
                # Its session just ended. A reading taken before that saw its EV drawing (the demo: a reading
                # a second old, minus the chargers without this one, made the other load 7 A too large, and
                # the peak window held that for 10 s), and one taken since may not yet show it stopped: it is
                # counted along a move to 0 from now, as a lowered limit would be.
                mem.ended_at = self.now
                model.follow(0.0, self.now, window)
            if mem.ended_at is not None and at < mem.ended_at + window:
                least, most, moving = model.bounds(at, window)
                self._add(least, most, moving)
                return
            mem.ended_at = None
            # Not following a limit we know: counted at its reported draw (bounded by what it can draw).
            model.reset()
            if recent:
                limit = ch.limit_in_force if control is _CONTROLLED else None
                own = _own_per_phase(sample, spec.max_current, spec.phases_wired, limit)  # type: ignore[arg-type]
                self._add(own, own, False)
            return
        if mem.ended_at is not None:  # a new session within ev_response of the last one's end
            mem.ended_at = None
            model.reset()
        limit = ch.limit_in_force if ch.limit_in_force is not None else spec.offline_current
        if limit > spec.max_current:
            limit = spec.max_current
        phases = ch.phases_in_use or spec.phases_wired
        since = ch.limit_since if ch.limit_since is not None else self.now
        if model.limit is None:
            model.phases = phases
            # First seen in this session. A recent sample that shows it drawing says it has been following
            # its limit; otherwise its EV starts (or started at some unknown time) to follow it now.
            model.limit, model.before, model.learned_from_mains = limit, (0.0, 0.0, 0.0), True
            model.reached = INF
            model.before_least, model.earlier, model.earlier_until = None, None, -INF
            if control is _CONTROLLED and recent and any(a >= 1.0 for a in sample.values()):  # type: ignore[union-attr]
                model.since = -INF
                model.cap = (INF, INF, INF)
                model.learn_sample(_reported(sample, spec), -INF, 0.0, CAP_TOLERANCE)  # type: ignore[arg-type]
                model.sample = sample
            else:
                model.since = min(since, at)
        elif control is _CONTROLLED:
            model.follow(limit, since, window)
        new_sample = sample is not model.sample
        if new_sample or model.phases != phases:  # otherwise nothing the model believes can have changed
            believed = model.expected()
            model.phases = phases
            if new_sample:
                model.sample = sample
                # Only under a limit of ours: a charger pending on its offline fallback (often one phase) shows
                # a 3-phase car on one phase, which says nothing about what it takes on all three.
                if sample is not None and ch.draw_at is not None and control is _CONTROLLED:
                    model.learn_sample(_reported(sample, spec), ch.draw_at, window, CAP_TOLERANCE)
            learned = model.expected()
            if learned != believed:
                model.narrow(model.phases)
                # It draws less than the model believed (a phase its EV does not use, a cap): the held other
                # load was the reading minus that belief, too small by the difference (and the budget too large).
                for i in range(3):
                    self.relearned[i] += believed[i] - learned[i]
        target = mem.target if pending_target(ch, mem) else None
        least, most, moving = model.bounds(at, window, target)
        if (not moving and not model.learned_from_mains and model.since > -INF
                and at >= model.since + window):
            self.settled.append((mem, least))
        self.steered.append((ch, least, most))
        self._add(least, most, moving)

    def proven_down(self, meter: MeterInput, budget: dict[int, float]) -> dict[str, tuple[float, float]]:
        """Chargers whose accepted decrease this reading shows done: ``{id: (limit in force, reading time)}``.

        Break-before-make counts a charger that accepted a decrease at its old draw for ``ramp_time``, because
        its EV may still take it. The mains meter can prove sooner that the capacity is free. Let ``S`` be the
        chargers on phase p that accepted a limit before the reading and may still draw above it, ``B`` the
        other load the budget allows for (``ceiling - margin - budget``), and ``least`` what every other session
        the model follows draws at the very least at the reading. If ``reading - B - least <= sum of S's
        limits`` (plus half the margin, as :meth:`steady` allows a budget: the base load's jitter would
        otherwise fail the proof on every other reading), then the other load and S draw together no more than
        ``B`` plus S's limits; from now on S only come down (or rise to their limits), so counting them at their
        limits keeps the phase within the fuse with half the margin to spare, however the reading splits between
        them and the other load.

        ``least`` is the model's: a car that draws less than the model believes (one that draws nothing before a
        sample showed it drawing, see :mod:`csms.balancer.estimate`) weakens the proof by as much as it raises
        the budget, and both count it at its limit. A phase whose budget is set by ``max_current_online`` (a
        sub-board, not the fuse) or a saturated clamp proves nothing; a charger must be proven on every phase on
        which it may still draw above its limit.
        """
        group = self.group
        at = meter.taken_at
        down = []
        for ch, least, most in self.steered:
            limit, since = ch.limit_in_force, ch.limit_since
            if ch.control is not _CONTROLLED or limit is None or since is None or since > at:
                continue
            phases = [i for i in range(3) if most[i] > limit + EPS]  # type: ignore[operator]
            if phases:
                down.append((ch, least, phases))
        if not down:
            return {}
        ceiling = phase_ceiling(group)[0]
        failed: set[str] = set()
        for i in range(3):
            on = [(ch, least) for ch, least, phases in down if i in phases]
            if not on:
                continue
            p = i + 1
            measured, b = meter.current.get(p), budget.get(p)
            if (measured is None or b is None or b <= 0 or b >= group.max_current_online - EPS
                    or clamp_saturated(group, meter, p, measured)):
                failed.update(ch.spec.id for ch, _ in on)
                continue
            other = ceiling - group.margin - b
            # The rest at the least the model allows. Only sessions the model follows count: another charger's
            # last sample (up to draw_max_age old) is no lower bound of what it draws now.
            rest = sum(least[i] for _, least, _ in self.steered) - sum(least[i] for _, least in on)
            limits = sum(ch.limit_in_force for ch, _ in on)  # type: ignore[misc]
            if measured - other - rest > limits + group.margin / 2:
                failed.update(ch.spec.id for ch, _ in on)
        return {ch.spec.id: (ch.limit_in_force, at) for ch, _, _ in down  # type: ignore[misc]
                if ch.spec.id not in failed}

    def _add(self, least: tuple[float, float, float], most: tuple[float, float, float], moving: bool) -> None:
        lo, hi, mv = self.least, self.most, self.moving
        for i in range(3):
            lo[i] += least[i]
            hi[i] += most[i]
            if moving and most[i] > least[i]:
                mv[i] += 1

    def other_load(self, meter: MeterInput) -> dict[int, float]:
        """The other load per group phase at the reading (:func:`csms.balancer.estimate.other_load`).

        Runs between two readings (a charger's answer, a sample) see the same reading again: they compare
        with the estimate of the reading before it, so that every run on one reading agrees.
        """
        memory = self.memory
        if memory.other_at != meter.taken_at:
            memory.held, memory.other_at = (dict(memory.other) if memory.other else memory.other), meter.taken_at
        held = memory.held
        if held and any(self.relearned):
            for p in held:
                if 1 <= p <= 3 and self.relearned[p - 1] > 0:
                    held[p] += self.relearned[p - 1]
        self._learn_from_reading(meter, held)
        other: dict[int, float] = {}
        guessed: set[int] = set()  # phases whose other load is held, not measured, at this reading
        for p in self.group.phases:
            measured = meter.current.get(p)
            if measured is None:
                continue
            i = p - 1
            if clamp_saturated(self.group, meter, p, measured):
                # "At least this much": the most other load the reading allows, never a held lower value (or
                # the next reading, back in range while the cars stop, resumes them into saturation again).
                other[p] = measured - self.least[i]
                continue
            moving = self.moving[i] > 0
            other[p] = other_load(measured, self.least[i], self.most[i], moving, held.get(p) if held else None)
            if moving:
                guessed.add(p)
        memory.other = other
        return self.peak(meter.taken_at, other, guessed)

    def peak(self, at: float, other: dict[int, float], guessed: set[int] | frozenset[int] = frozenset()
             ) -> dict[int, float]:
        """The highest other load per phase over the last ``peak_window`` seconds, this reading included.

        A step down is let go sooner: once the newest ``step_down_readings`` are all below every older reading
        in the window by more than the older ones flickered, those belong to a level that has gone (a cooker
        switched off). Holding them for the rest of the window idled the fuse by the whole step (the demo: 11 A
        for 10 s). The flicker they showed is still allowed for until the window has seen as much at the new
        level. Only measured values count as evidence: while a charger moves, the other load of a phase is held
        (``guessed``), and three runs on one held value are not three readings of a lower load.
        """
        tuning = self.group.tuning
        oldest = at - tuning.peak_window
        n = tuning.step_down_readings
        peak: dict[int, float] = {}
        for p, a in other.items():
            window = self.memory.recent.get(p)
            if window is None:
                window = self.memory.recent[p] = deque()
            if window and window[-1][0] == at:
                window.pop()
            window.append((at, a, p not in guessed))
            while window[0][0] < oldest:
                window.popleft()
            values = [v for _, v, _ in window]
            if len(values) > n and all(m for _, _, m in list(window)[-n:]):
                older = values[:-n]
                spread = max(older) - min(older)
                if max(values[-n:]) + spread < min(older):
                    self.memory.flicker[p] = (spread, at + tuning.peak_window)
                    for _ in older:
                        window.popleft()
                    values = values[-n:]
            top, low = max(values), min(values)
            amplitude, until = self.memory.flicker.get(p, (0.0, -INF))
            if at < until and low + amplitude > top:
                top = low + amplitude
            peak[p] = top
        return peak

    def _learn_from_reading(self, meter: MeterInput, held: dict[int, float] | None) -> None:
        """A charger that just finished moving, alone on a phase where nothing else moves: the reading minus
        the held other load minus everyone else is what it draws there (its cap, or a phase it does not use)."""
        if not held or not self.settled:
            return
        alone = [0, 0, 0]
        for mem, _ in self.settled:
            for p in mem.model.phases:
                alone[p - 1] += 1
        slack = CAP_TOLERANCE
        for mem, least in self.settled:
            model = mem.model
            model.learned_from_mains = True
            for p in model.phases:
                i = p - 1
                measured = meter.current.get(p)
                if alone[i] != 1 or self.moving[i] or measured is None or p not in held:
                    continue
                drawn = measured - held[p] - (self.least[i] - least[i])
                model.learn_from_reading(p, drawn, slack)
            model.in_use = model.phases_in_use(model.phases)
            now = model.expected()
            for i in range(3):
                self.least[i] += now[i] - least[i]
                self.most[i] += now[i] - least[i]

    def reserve(self, ch: ChargerInput, mem: ChargerMemory, reserved: dict[int, float]) -> ChargerLimit:
        """Counts a charger the balancer cannot steer right now at the most it may draw."""
        spec = ch.spec
        if not ch.session_active:
            mem.running_since = mem.paused_since = mem.under_since = mem.trim_cap = mem.probe = None
            mem.charged = 0.0
        if not ch.connected:
            if ch.control is _FALLBACK:
                if spec.offline_phase in reserved:
                    reserved[spec.offline_phase] += spec.offline_current
                fallback = f"{spec.offline_current:.1f} A on L{spec.offline_phase}"
                return ChargerLimit(spec.offline_current, (spec.offline_phase,),
                                    f"disconnected; its offline fallback ({fallback}) is in force and counted",
                                    False, spec.offline_current)
            wired = self.phase_set(spec.phases_wired)
            for p in wired:
                reserved[p] += spec.max_current
            return ChargerLimit(spec.max_current, wired, "disconnected and its fallback is not known to be "
                                "installed: counted at its max_current", False, spec.max_current)
        # Connected, but its latest limit is not (yet) in force.
        phases = self.phase_set(ch.phases_in_use or spec.phases_wired)
        control = ch.control
        worst = most_drawn(control, ch.limit_in_force, spec.max_current, mem.target)  # fallback: counted below
        target = mem.target if mem.target is not None else (self.min if ch.session_active else 0.0)
        if control is _FALLBACK:
            target = min(target, spec.offline_current)
        else:
            target = min(target, worst, spec.max_current)
        target = floor_step(target)
        if target < self.min:
            target = 0.0
        counted = max(worst, target)
        for p in phases:
            reserved[p] += counted
        if control is _FALLBACK and spec.offline_phase in reserved:
            extra = spec.offline_current - (counted if spec.offline_phase in phases else 0.0)
            if extra > 0:
                reserved[spec.offline_phase] += extra
        why = {
            ControlState.PENDING: "its new limit is not accepted yet",
            ControlState.UNCONTROLLED: "it rejected or did not answer its last limit",
            ControlState.NOT_OBEYING: "it draws more than its limit",
            ControlState.FALLBACK: f"its offline fallback ({spec.offline_current:.1f} A on L{spec.offline_phase}) "
                                   "is in force",
            ControlState.DISCONNECTED_UNKNOWN: "its state is not known",
        }.get(control, str(control))
        return ChargerLimit(target, phases, f"not under control ({why}): counted at {counted:.1f} A", True, counted)

    def cap(self, ch: ChargerInput, phases: tuple[int, ...], mem: ChargerMemory,
            full: float) -> tuple[float, str | None]:
        """The most a session may get: max_current, or less while its EV draws clearly less (trimming)."""
        now = self.now
        tuning = self.group.tuning
        in_force, at = ch.limit_in_force, ch.draw_at
        if in_force != mem.in_force:
            # A lower limit still above its draw leaves "it draws clearly less" true: only a rise, or a limit
            # it would now fill, starts the judgement over (a 60 s charger's car was trimmed 60 s late for
            # every small decrease the others' arrivals caused).
            old = mem.in_force
            if (in_force is None or old is None or in_force > old
                    or in_force < mem.used + tuning.trim_slack):
                mem.under_since = None
            mem.in_force, mem.in_force_since = in_force, now
        if (ch.draw or None) is not mem.sample:
            mem.sample = ch.draw or None
            self._judge(ch, phases, mem)
        if mem.trim_cap is None:
            if (mem.under_since is not None and now - mem.under_since >= tuning.trim_after
                    and at is not None and now - at <= tuning.draw_max_age):
                mem.trim_cap = max(self.min, ceil_half(mem.used + tuning.trim_headroom))
                mem.trimmed_at = now
        elif now - mem.trimmed_at >= tuning.probe_every:
            mem.probe = (mem.used, mem.trim_cap)
            mem.trim_cap = mem.under_since = None  # probe: offer its full share again
        trim = mem.trim_cap
        if trim is None:
            mem.recheck_at = INF if mem.under_since is None else mem.under_since + tuning.trim_after
        else:
            mem.recheck_at = mem.trimmed_at + tuning.probe_every
        mem.full = full
        if trim is None or trim >= full:
            mem.cap, mem.cap_why = full, None
            return full, None
        why = self._reasons.get(("trim", trim))
        if why is None:
            why = self._reasons[("trim", trim)] = (
                f"its EV draws clearly less than offered: capped at {trim:.1f} A (its draw + "
                f"{tuning.trim_headroom:.1f} A headroom; offered more every {tuning.probe_every:.0f} s)")
        mem.cap, mem.cap_why = floor_step(trim), why
        return mem.cap, why

    def _judge(self, ch: ChargerInput, phases: tuple[int, ...], mem: ChargerMemory) -> None:
        """Looks at a new sample of the charger's own draw: does its EV take what it is offered?"""
        tuning = self.group.tuning
        draw, at, in_force = ch.draw, ch.draw_at, ch.limit_in_force
        if not draw or at is None or at < mem.in_force_since or self.now - at > tuning.draw_max_age:
            return  # nothing, or taken before the limit in force now: says nothing about it
        used = 0.0
        for p in phases or draw:
            a = draw.get(p, 0.0)
            if a > used:
                used = a
        mem.used = used
        if mem.trim_cap is not None:
            if used >= mem.trim_cap - tuning.trim_headroom / 2:
                mem.trim_cap = mem.under_since = None  # it wants more again
            else:
                mem.trim_cap = min(mem.trim_cap, max(self.min, ceil_half(used + tuning.trim_headroom)))
        elif in_force is not None and in_force >= self.min and used < in_force - tuning.trim_slack:
            # Only once its EV could follow the limit: a 60 s charger's first sample, taken a second after an
            # increase while the car still ramped, once trimmed a car that wanted its full share.
            if at >= mem.in_force_since + tuning.ev_response:
                probe = mem.probe
                if probe is not None and in_force > probe[1]:
                    mem.probe = None
                    if used <= probe[0] + tuning.trim_slack / 2:
                        # The probe offered it more and it took no more: its cap is known, no need to wait.
                        mem.trim_cap = max(self.min, ceil_half(used + tuning.trim_headroom))
                        mem.trimmed_at = self.now
                        return
                if mem.under_since is None:
                    mem.under_since = at
        else:
            mem.under_since = mem.probe = None

    # -- steps 3-5: admission, filling, rounding ---------------------------------------------------

    def admit_and_fill(self, limits: dict[str, ChargerLimit]) -> None:
        avail = self.available
        group, now, m = self.group, self.now, self.min
        resume = m + group.tuning.resume_margin
        # Room the sessions need: min_current each, plus the resume margin for those paused less than a
        # rotation period ago.
        need = dict.fromkeys(group.phases, 0.0)
        for phases, counts in self.classes.items():
            total = sum(counts.values()) * m + self.resuming.get(phases, 0) * (resume - m)
            for p in phases:
                need[p] += total
        if all(need[p] <= avail[p] + EPS for p in need):
            admitted = self.candidates
        else:
            admitted = self._admit(limits)
        levels = waterfill.fill(avail, self.classes)
        lent = self._lend(admitted, levels)
        if lent:
            # More room only raises levels, so every lender stays at its cap in the second fill.
            levels = waterfill.fill({p: avail[p] + lent.get(p, 0.0) for p in avail}, self.classes)

        # Per phase set: its level and the (shared) limit of every session held at that level.
        at_level: dict[tuple[int, ...], tuple[float, ChargerLimit | None]] = {}
        for phases, (level, bound) in levels.items():
            if bound is None:
                at_level[phases] = (level, None)
                continue
            limit = floor_step(level)
            if limit < m:  # rounding cannot take it below what admission reserved; stay safe if it did
                limit = 0.0
            why = f"fair share: phase L{bound} is full ({avail[bound]:.1f} A shared by the sessions on it)"
            at_level[phases] = (level, ChargerLimit(limit, phases, why, True, limit))
        at_cap: dict[tuple, ChargerLimit] = {}
        lends = self.lends
        for cid, phases, cap, mem, why in admitted:
            level, shared = at_level[phases]
            if cap <= level:
                counted = cap - lends.get(cid, 0.0)
                shared = at_cap.get((phases, cap, why, counted))
                if shared is None:
                    shared = at_cap[(phases, cap, why, counted)] = ChargerLimit(
                        cap, phases, why or f"at its max_current {cap:.1f} A", True, counted)
            limits[cid] = shared  # type: ignore[assignment]
            mem.target = shared.limit  # type: ignore[union-attr]
            if mem.running_since is None:
                mem.running_since, mem.paused_since = now, None

    def _lend(self, admitted: list, levels: dict) -> dict[int, float]:
        """The headroom of trimmed sessions that others may use, per phase; records each lender's share.

        A trimmed car is offered its draw plus ``trim_headroom`` so that it can show it wants more; counted at
        that limit, the headroom idles the fuse (one car capped at 8 A on a 63 A site left 2 A of it unused).
        A car that rises from its learned draw into its headroom is, for the fuse, an appliance switching on:
        the mains reading shows it, and the budget takes it back from the others within a reading and their
        ramp time, as it does for any step of the other load. So each trimmed car at its cap is counted at its
        draw (as the estimator models it), and what it does not draw is lent, at most ``trim_headroom`` per phase
        in all: the import can rise above the budget by no more than one car's headroom however many cars are
        trimmed.
        """
        headroom = self.group.tuning.trim_headroom
        offers: list[tuple[float, str, tuple[int, ...]]] = []
        for cid, phases, cap, mem, why in admitted:
            if why is None or mem.trim_cap is None or not phases or cap > levels[phases][0]:
                continue
            # Only what the estimator also takes as undrawn: it counts a car that draws nothing (suspended) at its
            # limit, and the budget is the reading minus that belief; lending it as well left a suspended car's
            # headroom counted twice, 1.6 A over a 40 A fuse for as long as it stayed suspended.
            expected = mem.model.expected()
            drawn = max(mem.used, max(expected[p - 1] for p in phases))
            spare = min(headroom, cap - drawn)
            if spare > EPS:
                offers.append((spare, cid, phases))
        if not offers:
            return {}
        offers.sort(reverse=True)
        left = dict.fromkeys(self.group.phases, headroom)
        lent: dict[int, float] = {}
        for spare, cid, phases in offers:
            amount = min(spare, *(left[p] for p in phases))
            if amount <= EPS:
                continue
            self.lends[cid] = amount
            for p in phases:
                left[p] -= amount
                lent[p] = lent.get(p, 0.0) + amount
        return lent

    def _admit(self, limits: dict[str, ChargerLimit]) -> list:
        """Greedy admission in rotation order; records the paused ones in ``limits``.

        Sessions running in their turn come first; when they all fit (the usual case) they are admitted
        as a block and only the others are sorted.
        """
        now, m = self.now, self.min
        period = self.group.rotation_period
        resume = m + self.group.tuning.resume_margin
        candidates = self.candidates
        room = dict(self.available)
        in_turn, rest = [], []
        per_set: dict[tuple[int, ...], int] = {}
        for cand in candidates:
            running = cand[3].running_since
            if running is not None and now - running < period:
                in_turn.append(cand)
                per_set[cand[1]] = per_set.get(cand[1], 0) + 1
            else:
                rest.append(cand)
        need = dict.fromkeys(room, 0.0)
        for phases, n in per_set.items():
            for p in phases:
                need[p] += n * m
        if all(need[p] <= room[p] + EPS for p in room):
            admitted = in_turn
            for p in room:
                room[p] -= need[p]
        else:
            admitted, rest = [], candidates
        # Four tiers, each sorted by one float (floats sort several times faster than tuples; the sort is
        # stable). Times are taken relative to now, so that a tie-break of 1e-7 per second charged so far
        # stays far above float precision: among sessions paused at the same moment (every turn ends on
        # the same run when the group is steady), the one that has charged least goes first.
        tiers: tuple[list, list, list, list] = ([], [], [], [])
        for i, cand in enumerate(rest):
            mem = cand[3]
            bonus = mem.charged * 1e-7
            if mem.running_since is not None:
                # Running: in its turn first, newest first; once its turn is over, to the back.
                ran = now - mem.running_since
                tiers[0 if ran < period else 3].append((ran + bonus, i, m))
            elif mem.paused_since is not None:
                waited = now - mem.paused_since
                if waited >= period:
                    tiers[1].append((bonus - waited, i, m))
                else:  # paused recently: resuming needs the margin
                    tiers[2].append((bonus - waited, i, resume))
            else:
                tiers[2].append((bonus, i, m))  # a new session queues behind those already waiting
        for tier in tiers:
            tier.sort(key=_first)
        order = tiers[0] + tiers[1] + tiers[2] + tiers[3]
        shorts = self._greedy(order, rest, room)
        # Rotation order can pause more sessions than needed when a multi-phase session takes the room
        # of several 1-phase ones. Sessions that are owed a turn (tiers 0 and 1) keep their place, so
        # nobody starves; the others are also tried smallest footprint first, and the order that pauses
        # fewer sessions wins.
        tail = tiers[2] + tiers[3]
        if len({len(rest[i][1]) for _, i, _ in tail}) > 1:
            by_size = tiers[0] + tiers[1] + sorted(tail, key=lambda e: len(rest[e[1]][1]))
            other = self._greedy(by_size, rest, room)
            if sum(s is None for s in other) > sum(s is None for s in shorts):
                order, shorts = by_size, other
        paused_limits: dict[tuple, ChargerLimit] = {}
        classes = self.classes
        for (_, i, req), short in zip(order, shorts):
            cand = rest[i]
            if short is None:
                admitted.append(cand)
                continue
            phases = cand[1]
            key = (phases, short, req)
            lim = paused_limits.get(key)
            if lim is None:
                why = (f"paused: phase L{short} cannot give it min_current {m:.1f} A"
                       + (f" plus {req - m:.1f} A resume margin" if req > m else "")
                       + f" after the sessions ahead of it (rotation every {period:.0f} s)")
                lim = paused_limits[key] = ChargerLimit(0.0, phases, why, True, 0.0)
            limits[cand[0]] = lim
            classes[phases][cand[2]] -= 1
            mem = cand[3]
            mem.target = 0.0
            mem.under_since = None
            if mem.paused_since is None:
                if mem.running_since is not None:
                    mem.charged += now - mem.running_since
                mem.paused_since, mem.running_since = now, None
        return admitted

    def _greedy(self, order: list[tuple[float, int, float]], rest: list, room: dict[int, float]) -> list[int | None]:
        """Admits in ``order`` while ``min_current`` (plus any resume margin) fits; per entry, None if
        admitted, else the phase that had no room."""
        room = dict(room)
        m = self.min
        shorts: list[int | None] = []
        for _, i, req in order:
            phases = rest[i][1]
            short = None
            for p in phases:
                if room[p] < req - EPS:
                    short = p
                    break
            if short is None:
                for p in phases:
                    room[p] -= m
            shorts.append(short)
        return shorts
