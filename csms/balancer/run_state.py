"""The working state of one :func:`~csms.balancer.allocation.allocate` call, which its steps pass between them.

Each step is a plain function of this state (:mod:`csms.balancer.classify`, :mod:`csms.balancer.reserve`,
:mod:`csms.balancer.admission`, :mod:`csms.balancer.fill`); what the chargers draw at the reading has its own
class (:class:`~csms.balancer.drawn.DrawSums`). Nothing here outlives the run: what must persist is in
:class:`~csms.balancer.memory.BalancerMemory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .circuits import paths
from .drawn import DrawSums
from .grid import ceil_step
from .memory import BalancerMemory, ChargerMemory
from .model import GroupSpec

#: A controlled session: (charger id, phase set, cap, memory, cap reason or None).
Candidate = tuple[str, tuple[int, ...], float, ChargerMemory, str | None]


@dataclass(slots=True, eq=False)
class RunState:
    """The working state of one :func:`~csms.balancer.allocation.allocate` call."""

    group: GroupSpec
    now: float
    memory: BalancerMemory
    #: The group's ``min_current`` on the 0.1 A grid.
    min: float
    gset: frozenset[int]
    #: The chargers' memories from the last run, and those of this run's chargers (the others are forgotten).
    old_memory: dict[str, ChargerMemory]
    new_memory: dict[str, ChargerMemory]
    #: Per group phase: what the chargers the balancer cannot steer are counted at, and what is left.
    reserved: dict[int, float]
    available: dict[int, float]
    drawn: DrawSums
    #: Controlled sessions per phase set and cap, and how many per phase set were paused recently.
    classes: dict[tuple[int, ...], dict[float, int]] = field(default_factory=dict)
    resuming: dict[tuple[int, ...], int] = field(default_factory=dict)
    #: Controlled sessions: (charger id, phase set, cap, memory, cap reason or None).
    candidates: list[Candidate] = field(default_factory=list)
    #: Each phase set seen, restricted to the group's phases (see :meth:`phase_set`).
    phase_sets: dict[tuple, tuple[int, ...]] = field(default_factory=dict)
    #: Per trimmed session: the A of its headroom lent to others (see :func:`csms.balancer.fill.lend`).
    lends: dict[str, float] = field(default_factory=dict)
    #: Each circuit's path to the main fuse (:mod:`csms.balancer.circuits`); empty for a group without circuits.
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The group phases of each footprint that holds circuit resources (see :meth:`key`).
    real: dict[tuple, tuple[int, ...]] = field(default_factory=dict)
    _keys: dict[tuple, tuple] = field(default_factory=dict)

    @classmethod
    def start(cls, group: GroupSpec, now: float, memory: BalancerMemory) -> RunState:
        run = cls(group, now, memory, ceil_step(group.min_current), frozenset(group.phases), memory.chargers, {},
                  dict.fromkeys(group.phases, 0.0), {}, DrawSums(now, group.tuning))
        if group.circuits:
            run.paths = paths(group)
            for c in group.circuits:
                for p in group.phases:
                    run.reserved[c.id, p] = 0.0  # type: ignore[index]
        return run

    def key(self, phases: tuple[int, ...], circuit: str) -> tuple:
        """A session's footprint in the fill: its phases, then ``(circuit, phase)`` for every circuit on its path
        to the main fuse. :attr:`real` maps it back to the phases."""
        k = self._keys.get((phases, circuit))
        if k is None:
            k = phases + tuple((c, p) for c in self.paths.get(circuit, ()) for p in phases)
            self._keys[phases, circuit] = k
            self.real[k] = phases
        return k

    def phases_of(self, footprint: tuple) -> tuple[int, ...]:
        """The group phases of a footprint (itself, for a session directly under the main fuse)."""
        return self.real.get(footprint, footprint)

    def reserve_on_path(self, circuit: str, before: dict[int, float]) -> None:
        """Adds what was just reserved on the group phases (the increase since ``before``) to every circuit on
        ``circuit``'s path as well: a charger the balancer cannot steer counts against each fuse above it."""
        reserved = self.reserved
        for p in self.group.phases:
            added = reserved[p] - before[p]
            if added:
                for c in self.paths.get(circuit, ()):
                    reserved[c, p] += added  # type: ignore[index]

    def phase_set(self, phases: tuple[int, ...]) -> tuple[int, ...]:
        s = self.phase_sets.get(phases)
        if s is None:
            s = self.phase_sets[phases] = tuple(p for p in phases if p in self.gset)
        return s
