"""Nested limits: the circuits (sub-boards) of a group's tree, each holding its own fuse on every phase.

A group is a tree: its main fuse (the budget of :mod:`csms.balancer.budget`) at the root, circuits below it, and
every charger wired on one node. A charger given limit ``x`` draws ``x`` on each of its phases *at every node on
its path to the root*. So the allocation treats each (circuit, phase) as one more resource beside the group's
phases: a session's footprint is its phases plus ``(circuit, phase)`` for each circuit on its path
(:meth:`~csms.balancer.run_state.RunState.key`). The progressive filling (:mod:`csms.balancer.waterfill`) is
unchanged: with nested capacities it is still the max-min fair allocation (every session rises until it reaches
its cap or one resource on its path is full, and nobody on that full resource gets more than it), and no
resource, hence no node, is over-filled. Admission, reserves and rotation work on the same resources.

What a circuit's chargers may draw together per phase (its *budget*):

* **Without a meter**: ``max_current - margin``. Nothing else is known to draw on it, so it is bounded by the
  sum of what the balancer allows the chargers under it (their limits, and the reserves of those it cannot
  steer, exactly as the group counts them).
* **With a fresh meter reading**: ``max_current - margin - other load``, the other load being the reading
  minus what the chargers under it draw *at the least* at the reading's time (the estimator's bounds,
  :mod:`csms.balancer.estimate`), held at its previous value while one of them moves, as far as the reading
  allows. Erring towards more other load is safe: the circuit's chargers then share less. When the group's
  meter does not follow the chargers this run (stale, static group, ``chargers_in_measurement = false``) the
  estimator knows nothing of them, and the whole reading is counted as other load.
* **With a stale meter**: ``max_current_offline``.

Groups and trees. One tree is the inside of one group (:mod:`csms.config.circuits` refuses a tree shared by two
groups), so every charger under a fuse is allocated in one pass and the fairness holds across the whole tree.
Pure: no I/O, time is an input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .budget import NO_READING
from .drawn import pending_target
from .estimate import other_load
from .estimate import Phases3
from .memory import BalancerMemory, ChargerMemory, CircuitMemory
from .model import ChargerInput, ChargerLimit, CircuitLoad, CircuitSpec, GroupSpec, MeterInput

#: A resource of the fill: a group phase (int), or a circuit's phase ``(circuit id, phase)``.
Resource = int | tuple[str, int]


def paths(group: GroupSpec) -> dict[str, tuple[str, ...]]:
    """Each circuit's path to the main fuse, itself first."""
    parent = {c.id: c.parent for c in group.circuits}
    out: dict[str, tuple[str, ...]] = {}
    for c in group.circuits:
        path: list[str] = []
        node: str | None = c.id
        while node is not None and node in parent and node not in path:
            path.append(node)
            node = parent[node]
        out[c.id] = tuple(path)
    return out


def where(resource: Resource) -> str:
    """A resource as an operator reads it: ``phase L2`` or ``circuit garage L2``."""
    if isinstance(resource, tuple):
        return f"circuit {resource[0]} L{resource[1]}"
    return f"phase L{resource}"


def circuit_budgets(group: GroupSpec, meters: Mapping[str, MeterInput],
                    memory: BalancerMemory, steered: Sequence[tuple[ChargerInput, Phases3, Phases3]],
                    models: Mapping[str, ChargerMemory], now: float, in_path: Mapping[str, tuple[str, ...]],
                    ) -> tuple[dict[tuple[str, int], float], dict[str, bool | None], dict[str, dict[int, str]]]:
    """Per (circuit, phase): what the chargers under the circuit may draw together; per circuit whether its meter
    was fresh (None: no meter) and how each phase's budget came about.

    ``steered`` are the sessions the estimator followed this run (:attr:`~csms.balancer.drawn.DrawSums.steered`),
    ``models`` every charger's memory by id, ``in_path`` each charger's circuit path.
    """
    budget: dict[tuple[str, int], float] = {}
    fresh: dict[str, bool | None] = {}
    notes: dict[str, dict[int, str]] = {}
    window = group.tuning.ev_response
    for c in group.circuits:
        top = c.max_current - c.margin
        head = f"{c.max_current:.1f} A fuse - {c.margin:.1f} A margin"
        notes[c.id] = {}
        if not c.has_meter:
            fresh[c.id] = None
            for p in group.phases:
                budget[c.id, p] = top
                notes[c.id][p] = f"{head}, no meter: bounded by the limits of the chargers under it"
            continue
        reading = meters.get(c.id)
        if reading is None or now - reading.taken_at > c.stale_after:
            fresh[c.id] = False
            memory.circuits.pop(c.id, None)
            why = NO_READING if reading is None else "meter stale"
            for p in group.phases:
                budget[c.id, p] = c.max_current_offline
                notes[c.id][p] = f"{why}: max_current_offline {c.max_current_offline:.1f} A"
            continue
        fresh[c.id] = True
        other = _other_load(c, group, reading, memory, steered, models, window, in_path)
        for p in group.phases:
            measured = reading.current.get(p)
            if measured is None:
                budget[c.id, p] = c.max_current_offline
                notes[c.id][p] = f"meter reports nothing for L{p}: max_current_offline {c.max_current_offline:.1f} A"
                continue
            value = min(top, top - other[p])
            if p in reading.saturated:
                value = min(value, 0.0)
            budget[c.id, p] = value
            notes[c.id][p] = f"{head} - {other[p]:.1f} A other load ({measured:.1f} A measured)"
    return budget, fresh, notes


def _other_load(c: CircuitSpec, group: GroupSpec, reading: MeterInput, memory: BalancerMemory,
                steered: Sequence[tuple[ChargerInput, Phases3, Phases3]], models: Mapping[str, ChargerMemory],
                window: float, in_path: Mapping[str, tuple[str, ...]]) -> dict[int, float]:
    """The circuit's other load per phase at its reading: the reading minus the least its followed sessions
    draw then, held while one of them moves (see :func:`csms.balancer.estimate.other_load`)."""
    mem = memory.circuits.get(c.id)
    if mem is None:
        mem = memory.circuits[c.id] = CircuitMemory()
    if mem.other_at != reading.taken_at:
        mem.held, mem.other_at = (dict(mem.other) if mem.other else None), reading.taken_at
    least, most, moving = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0, 0, 0]
    for ch, _, _ in steered:
        if c.id not in in_path.get(ch.spec.id, ()):
            continue
        cm = models[ch.spec.id]
        target = cm.target if pending_target(ch, cm) else None
        lo, hi, mv = cm.model.bounds(reading.taken_at, window, target)
        for i in range(3):
            least[i] += lo[i]
            most[i] += hi[i]
            if mv and hi[i] > lo[i]:
                moving[i] += 1
    other: dict[int, float] = {}
    for p in group.phases:
        measured = reading.current.get(p)
        if measured is None:
            continue
        i = p - 1
        held = mem.held.get(p) if mem.held else None
        other[p] = other_load(measured, least[i], most[i], moving[i] > 0, held)
    mem.other = other
    return {p: other.get(p, 0.0) for p in group.phases}


def circuit_loads(group: GroupSpec, limits: Mapping[str, ChargerLimit], in_path: Mapping[str, tuple[str, ...]],
                  budget: Mapping[tuple[str, int], float], fresh: Mapping[str, bool | None],
                  notes: Mapping[str, dict[int, str]]) -> dict[str, CircuitLoad]:
    """Each circuit's part of the decision: its budget and what the decision plans under it (limits of the
    sessions, and what the others are counted at)."""
    planned = {(c.id, p): 0.0 for c in group.circuits for p in group.phases}
    members: dict[str, list[str]] = {c.id: [] for c in group.circuits}
    for cid, lim in limits.items():
        path = in_path.get(cid, ())
        if not path:
            continue
        amps = lim.limit if lim.controlled and lim.counted <= lim.limit else max(lim.limit, lim.counted)
        for node in path:
            members[node].append(cid)
            for p in lim.phases:
                if (node, p) in planned:
                    planned[node, p] += amps
    return {c.id: CircuitLoad(c.id, c.parent, c.max_current, {p: budget[c.id, p] for p in group.phases},
                              {p: planned[c.id, p] + 0.0 for p in group.phases}, fresh[c.id], notes[c.id],
                              tuple(sorted(members[c.id])))
            for c in group.circuits}
