"""The other load per phase at a reading (what the building draws besides the group's chargers), and the peak of
it that the budget holds.

The reading minus what the chargers draw at its time (:mod:`csms.balancer.drawn`, bounded per charger by
:mod:`csms.balancer.estimate`) is the other load; a reading can also teach a charger's model what it draws
(:func:`learn_from_reading`). The budget (:mod:`csms.balancer.budget`) follows the recent peak of the other load
(:func:`peak`), so that a building's flicker neither lifts the import above the fuse nor changes every limit.
"""

from __future__ import annotations

from collections import deque

from .budget import clamp_saturated
from .drawn import DrawSums
from .estimate import CAP_TOLERANCE, INF, other_load
from .memory import BalancerMemory
from .model import GroupSpec, MeterInput, Tuning


def other_load_at_reading(group: GroupSpec, memory: BalancerMemory, drawn: DrawSums,
                          meter: MeterInput) -> dict[int, float]:
    """The other load per group phase at the reading (:func:`csms.balancer.estimate.other_load`).

    Runs between two readings (a charger's answer, a sample) see the same reading again: they compare
    with the estimate of the reading before it, so that every run on one reading agrees.
    """
    if memory.other_at != meter.taken_at:
        memory.held, memory.other_at = (dict(memory.other) if memory.other else memory.other), meter.taken_at
    held = memory.held
    relearned = drawn.relearned
    if held and any(relearned):
        for p in held:
            if 1 <= p <= 3 and relearned[p - 1] > 0:
                held[p] += relearned[p - 1]
    learn_from_reading(drawn, meter, held)
    other: dict[int, float] = {}
    guessed: set[int] = set()  # phases whose other load is held, not measured, at this reading
    for p in group.phases:
        measured = meter.current.get(p)
        if measured is None:
            continue
        i = p - 1
        if clamp_saturated(group, meter, p, measured):
            # "At least this much": the most other load the reading allows, never a held lower value (or
            # the next reading, back in range while the cars stop, resumes them into saturation again).
            other[p] = measured - drawn.least[i]
            continue
        moving = drawn.moving[i] > 0
        other[p] = other_load(measured, drawn.least[i], drawn.most[i], moving, held.get(p) if held else None)
        if moving:
            guessed.add(p)
    memory.other = other
    return peak(memory, group.tuning, meter.taken_at, other, guessed)


def peak(memory: BalancerMemory, tuning: Tuning, at: float, other: dict[int, float],
         guessed: set[int] | frozenset[int] = frozenset()) -> dict[int, float]:
    """The highest other load per phase over the last ``peak_window`` seconds, this reading included.

    A step down is let go sooner: once the newest ``step_down_readings`` are all below every older reading
    in the window by more than the older ones flickered, those belong to a level that has gone (a cooker
    switched off). Holding them for the rest of the window idled the fuse by the whole step (the demo: 11 A
    for 10 s). The flicker they showed is still allowed for until the window has seen as much at the new
    level. Only measured values count as evidence: while a charger moves, the other load of a phase is held
    (``guessed``), and three runs on one held value are not three readings of a lower load.
    """
    oldest = at - tuning.peak_window
    n = tuning.step_down_readings
    peak: dict[int, float] = {}
    for p, a in other.items():
        window = memory.recent.get(p)
        if window is None:
            window = memory.recent[p] = deque()
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
                memory.flicker[p] = (spread, at + tuning.peak_window)
                for _ in older:
                    window.popleft()
                values = values[-n:]
        top, low = max(values), min(values)
        amplitude, until = memory.flicker.get(p, (0.0, -INF))
        if at < until and low + amplitude > top:
            top = low + amplitude
        peak[p] = top
    return peak


def learn_from_reading(drawn: DrawSums, meter: MeterInput, held: dict[int, float] | None) -> None:
    """A charger that just finished moving, alone on a phase where nothing else moves: the reading minus
    the held other load minus everyone else is what it draws there (its cap, or a phase it does not use)."""
    settled = drawn.settled
    if not held or not settled:
        return
    alone = [0, 0, 0]
    for mem, _ in settled:
        for p in mem.model.phases:
            alone[p - 1] += 1
    slack = CAP_TOLERANCE
    for mem, least in settled:
        model = mem.model
        model.learned_from_mains = True
        for p in model.phases:
            i = p - 1
            measured = meter.current.get(p)
            if alone[i] != 1 or drawn.moving[i] or measured is None or p not in held:
                continue
            own = measured - held[p] - (drawn.least[i] - least[i])
            model.learn_from_reading(p, own, slack)
        model.in_use = model.phases_in_use(model.phases)
        now = model.expected()
        for i in range(3):
            drawn.least[i] += now[i] - least[i]
            drawn.most[i] += now[i] - least[i]
