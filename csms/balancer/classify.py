"""Step 2 of the allocation: sorting the chargers into controlled sessions (the candidates the admission and the
fill share ``available`` among, each with its cap) and the rest, which are reserved (:mod:`csms.balancer.reserve`).
The same pass adds up what the chargers draw at the reading (:mod:`csms.balancer.drawn`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .grid import floor_step
from .memory import ChargerMemory
from .model import ChargerInput, ChargerLimit, ControlState
from .operator_cap import active_cap, capped_reason, paused_reason
from .reserve import reserve
from .run_state import RunState
from .trim import Trimming

_CONTROLLED = ControlState.CONTROLLED
_PENDING = ControlState.PENDING


def classify(run: RunState, chargers: Sequence[ChargerInput], reading_at: float | None) -> dict[str, ChargerLimit]:
    """Sorts the chargers into controlled sessions (candidates) and the rest, which it reserves.

    With ``reading_at`` (a fresh reading that sees the chargers) it also works out, in the same pass, what
    each charger may be drawing at that moment (:meth:`~csms.balancer.drawn.DrawSums.estimate`).
    """
    now = run.now
    period = run.group.rotation_period
    limits: dict[str, ChargerLimit] = {}
    old_get, new = run.old_memory.get, run.new_memory
    append = run.candidates.append
    sets_get, phase_set = run.phase_sets.get, run.phase_set
    classes, resuming = run.classes, run.resuming
    estimate = run.drawn.estimate
    cap_of = Trimming(now, run.group.tuning, run.min).cap
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
            estimate(ch, mem, reading_at)
        if ch.connected and (ch.control is controlled or (pending and not _slow_first_limit(run, ch, mem))):
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
                    cap, why = cap_of(ch, phases, mem, full)
                if ch.operator_cap is not None and (op := active_cap(ch, now)) is not None:
                    if op < run.min or op <= 0:
                        limits[cid] = _paused_by_operator(run, ch, phases, mem, op)
                        continue
                    if op < cap:
                        # The operator's cap binds; a trimmed car keeps saying so (it still lends its headroom).
                        reason = capped_reason(op, ch.operator_cap_until)
                        cap, why = op, reason if why is None else f"{reason}; {why}"
                if spec.circuit is not None:
                    phases = run.key(phases, spec.circuit)  # the fuses above it are resources of the fill too
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
        if spec.circuit is None:
            limit = reserve(run, ch, mem)
        else:
            before = dict(run.reserved)
            limit = reserve(run, ch, mem)
            run.reserve_on_path(spec.circuit, before)
        limits[cid] = limit
        if limit.controlled:
            mem.target = limit.limit
    return limits


def _paused_by_operator(run: RunState, ch: ChargerInput, phases: tuple[int, ...], mem: ChargerMemory,
                        cap: float) -> ChargerLimit:
    """A session whose operator cap is below ``min_current``: paused (limit 0), its room left to the others.
    Recorded as a pause (as admission records one), so that rotation and the resume margin treat it alike."""
    mem.pause(run.now)
    why = paused_reason(cap, ch.operator_cap_until, run.group.min_current)
    return ChargerLimit(0.0, phases, why, True, 0.0)


def _slow_first_limit(run: RunState, ch: ChargerInput, mem: ChargerMemory) -> bool:
    """A new session whose first limit has been in flight longer than an EV takes to start drawing, or
    whose charger is known to answer slower than that: its charger may be applying its fallback, so it is
    reserved at that until it confirms.

    Any other change in flight is planned like a settled one: the allocation decides where every limit
    should go, and the delivery moves there safely (decreases first, an increase only once the capacity it
    needs is free). Reserving the old limit here as well would pause other sessions for the round trip of
    every decrease, and pause a charging car each time another car plugs in.
    """
    grace = run.group.tuning.first_limit_grace
    return (ch.session_active and mem.running_since is None and mem.paused_since is None
            and mem.pending_since is not None
            and (run.now - mem.pending_since >= grace or (ch.answer_time or 0.0) >= grace))
