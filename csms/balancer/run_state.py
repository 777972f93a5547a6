"""The working state of one :func:`~csms.balancer.allocation.allocate` call, which its steps pass between them.

Each step is a plain function of this state (:mod:`csms.balancer.classify`, :mod:`csms.balancer.reserve`,
:mod:`csms.balancer.admission`, :mod:`csms.balancer.fill`); what the chargers draw at the reading has its own
class (:class:`~csms.balancer.drawn.DrawSums`). Nothing here outlives the run: what must persist is in
:class:`~csms.balancer.memory.BalancerMemory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    @classmethod
    def start(cls, group: GroupSpec, now: float, memory: BalancerMemory) -> RunState:
        return cls(group, now, memory, ceil_step(group.min_current), frozenset(group.phases), memory.chargers, {},
                   dict.fromkeys(group.phases, 0.0), {}, DrawSums(now, group.tuning))

    def phase_set(self, phases: tuple[int, ...]) -> tuple[int, ...]:
        s = self.phase_sets.get(phases)
        if s is None:
            s = self.phase_sets[phases] = tuple(p for p in phases if p in self.gset)
        return s
