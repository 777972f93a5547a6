"""Max-min fair sharing of a few phases among many chargers, by progressive filling.

A charger given limit ``x`` draws ``x`` on *each* of its phases, so a 3-phase charger couples the phases:
it can only rise while all of its phases have room. Progressive filling raises one common level for all
chargers at once; a charger stops rising when it reaches its cap, and every charger still rising stops
when one of its phases is full. The result is the max-min fair allocation (no charger can get more
without taking from one that has no more than it), and no phase is over-filled.

Chargers with the same phase set and the same cap are indistinguishable to this process, so they are
filled as one class: the work is O(k log k) in the number of distinct (phase set, cap) pairs, with at
most 7 phase sets and caps on a 0.1 A grid, whatever the number of chargers.
"""

from __future__ import annotations

from collections.abc import Mapping

INF = float("inf")

PhaseSet = tuple[int, ...]


def fill(
    available: Mapping[int, float],
    classes: Mapping[PhaseSet, Mapping[float, int]],
) -> dict[PhaseSet, tuple[float, int | None]]:
    """Levels of a max-min fair fill of ``available`` A per phase.

    ``classes`` maps a phase set to ``{cap: number of chargers}``; every phase of every set must be a key
    of ``available``. Returns, per phase set, ``(level, phase)``: each charger of that set gets
    ``min(cap, level)``, and ``phase`` is the phase that stopped the set rising (``level`` is infinite and
    ``phase`` None when every charger of the set reached its cap). Levels are never below 0; if a phase is
    over-committed even at level 0 (more than the caller admitted), its chargers get 0.
    """
    queues: dict[PhaseSet, list[tuple[float, int]]] = {}
    pos: dict[PhaseSet, int] = {}
    weight: dict[PhaseSet, int] = {}
    load = {p: 0.0 for p in available}
    rising = {p: 0 for p in available}
    for phases, caps in classes.items():
        items = sorted((c, n) for c, n in caps.items() if n > 0)
        if not items:
            continue
        queues[phases], pos[phases] = items, 0
        weight[phases] = total = sum(n for _, n in items)
        for p in phases:
            rising[p] += total

    levels: dict[PhaseSet, tuple[float, int | None]] = {}
    level = 0.0
    while queues:
        cap_set, cap = None, INF
        for phases, items in queues.items():
            c = items[pos[phases]][0]
            if c < cap:
                cap_set, cap = phases, c
        full_phase, full_level = None, INF
        for p, n in rising.items():
            if n:
                lvl = (available[p] - load[p]) / n
                if lvl < full_level:
                    full_phase, full_level = p, lvl
        if cap <= full_level:
            # The smallest cap is reached before any phase is full: that class stops at its cap.
            level = max(level, cap)
            items = queues[cap_set]
            c, n = items[pos[cap_set]]
            for p in cap_set:
                load[p] += c * n
                rising[p] -= n
            weight[cap_set] -= n
            pos[cap_set] += 1
            if pos[cap_set] == len(items):
                del queues[cap_set]
                levels[cap_set] = (INF, None)
        else:
            # A phase is full: every set on it stops at this level.
            level = max(level, full_level)
            for phases in [s for s in queues if full_phase in s]:
                n = weight[phases]
                for p in phases:
                    load[p] += level * n
                    rising[p] -= n
                del queues[phases]
                levels[phases] = (level, full_phase)
    return levels
