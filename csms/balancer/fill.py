"""Steps 4 and 5 of the allocation: the admitted sessions share ``available`` max-min fairly by progressive filling
(:mod:`csms.balancer.waterfill`), each up to its cap; trimmed sessions lend the headroom they do not draw; limits
are rounded down to the 0.1 A grid. Admission (:mod:`csms.balancer.admission`) runs first when not every session
fits.
"""

from __future__ import annotations

from . import waterfill
from .admission import admit
from .circuits import where
from .grid import EPS, floor_step
from .model import ChargerLimit
from .run_state import Candidate, RunState


def admit_and_fill(run: RunState, limits: dict[str, ChargerLimit]) -> None:
    avail = run.available
    group, now, m = run.group, run.now, run.min
    resume = m + group.tuning.resume_margin
    # Room the sessions need: min_current each, plus the resume margin for those paused less than a
    # rotation period ago.
    need = dict.fromkeys(avail, 0.0)  # the group's phases, and its circuits' (csms.balancer.circuits)
    for phases, counts in run.classes.items():
        total = sum(counts.values()) * m + run.resuming.get(phases, 0) * (resume - m)
        for p in phases:
            need[p] += total
    if all(need[p] <= avail[p] + EPS for p in need):
        admitted = run.candidates
    else:
        admitted = admit(run, limits)
    levels = waterfill.fill(avail, run.classes)
    lent = lend(run, admitted, levels)
    if lent:
        # More room only raises levels, so every lender stays at its cap in the second fill.
        levels = waterfill.fill({p: avail[p] + lent.get(p, 0.0) for p in avail}, run.classes)

    # Per phase set: its level and the (shared) limit of every session held at that level.
    at_level: dict[tuple[int, ...], tuple[float, ChargerLimit | None]] = {}
    for phases, (level, bound) in levels.items():
        if bound is None:
            at_level[phases] = (level, None)
            continue
        limit = floor_step(level)
        if limit < m:  # rounding cannot take it below what admission reserved; stay safe if it did
            limit = 0.0
        why = f"fair share: {where(bound)} is full ({avail[bound]:.1f} A shared by the sessions on it)"
        at_level[phases] = (level, ChargerLimit(limit, run.phases_of(phases), why, True, limit))
    at_cap: dict[tuple, ChargerLimit] = {}
    lends = run.lends
    for cid, phases, cap, mem, why in admitted:
        level, shared = at_level[phases]
        if cap <= level:
            counted = cap - lends.get(cid, 0.0)
            shared = at_cap.get((phases, cap, why, counted))
            if shared is None:
                shared = at_cap[(phases, cap, why, counted)] = ChargerLimit(
                    cap, run.phases_of(phases), why or f"at its max_current {cap:.1f} A", True, counted)
        limits[cid] = shared  # type: ignore[assignment]
        mem.target = shared.limit  # type: ignore[union-attr]
        if mem.running_since is None:
            mem.running_since, mem.paused_since = now, None


def lend(run: RunState, admitted: list[Candidate],
         levels: dict[tuple[int, ...], tuple[float, int | None]]) -> dict[int, float]:
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
    headroom = run.group.tuning.trim_headroom
    offers: list[tuple[float, str, tuple[int, ...]]] = []
    for cid, footprint, cap, mem, why in admitted:
        if why is None or mem.trim_cap is None or not footprint or cap > levels[footprint][0]:
            continue
        # Lent on the group's phases only: a circuit's fuse still counts the car at its cap.
        phases = run.phases_of(footprint)
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
    left = dict.fromkeys(run.group.phases, headroom)
    lent: dict[int, float] = {}
    for spare, cid, phases in offers:
        amount = min(spare, *(left[p] for p in phases))
        if amount <= EPS:
            continue
        run.lends[cid] = amount
        for p in phases:
            left[p] -= amount
            lent[p] = lent.get(p, 0.0) + amount
    return lent
