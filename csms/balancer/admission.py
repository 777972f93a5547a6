"""Step 3 of the allocation: who charges when ``available`` cannot give every session ``min_current``. Sessions
are admitted greedily in rotation order, and one is paused only when ``min_current`` no longer fits on one of its
phases (see the module docstring of :mod:`csms.balancer.allocation`).
"""

from __future__ import annotations

from .circuits import where
from .grid import EPS
from .model import ChargerLimit
from .run_state import Candidate, RunState


def _first(item: tuple) -> float:
    return item[0]


def admit(run: RunState, limits: dict[str, ChargerLimit]) -> list[Candidate]:
    """Greedy admission in rotation order; records the paused ones in ``limits``.

    Sessions running in their turn come first; when they all fit (the usual case) they are admitted
    as a block and only the others are sorted.
    """
    now, m = run.now, run.min
    period = run.group.rotation_period
    resume = m + run.group.tuning.resume_margin
    candidates = run.candidates
    room = dict(run.available)
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
    shorts = greedy(order, rest, room, m)
    # Rotation order can pause more sessions than needed when a multi-phase session takes the room
    # of several 1-phase ones. Sessions that are owed a turn (tiers 0 and 1) keep their place, so
    # nobody starves; the others are also tried smallest footprint first, and the order that pauses
    # fewer sessions wins.
    tail = tiers[2] + tiers[3]
    phases_of = run.phases_of  # a footprint's circuit resources do not make a session bigger
    if len({len(phases_of(rest[i][1])) for _, i, _ in tail}) > 1:
        by_size = tiers[0] + tiers[1] + sorted(tail, key=lambda e: len(phases_of(rest[e[1]][1])))
        other = greedy(by_size, rest, room, m)
        if sum(s is None for s in other) > sum(s is None for s in shorts):
            order, shorts = by_size, other
    paused_limits: dict[tuple, ChargerLimit] = {}
    classes = run.classes
    for (_, i, req), short in zip(order, shorts):
        cand = rest[i]
        if short is None:
            admitted.append(cand)
            continue
        phases = cand[1]
        key = (phases, short, req)
        lim = paused_limits.get(key)
        if lim is None:
            why = (f"paused: {where(short)} cannot give it min_current {m:.1f} A"
                   + (f" plus {req - m:.1f} A resume margin" if req > m else "")
                   + f" after the sessions ahead of it (rotation every {period:.0f} s)")
            lim = paused_limits[key] = ChargerLimit(0.0, run.phases_of(phases), why, True, 0.0)
        limits[cand[0]] = lim
        classes[phases][cand[2]] -= 1
        cand[3].pause(now)
    return admitted


def greedy(order: list[tuple[float, int, float]], rest: list[Candidate], room: dict,
           m: float) -> list:
    """Admits in ``order`` while ``min_current`` (plus any resume margin) fits; per entry, None if
    admitted, else the phase (or circuit phase, :mod:`csms.balancer.circuits`) that had no room. ``m`` is
    ``min_current`` on the grid."""
    room = dict(room)
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
