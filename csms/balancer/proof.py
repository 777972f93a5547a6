"""The mains reading's proof that an accepted decrease is done, so that break-before-make need not wait out the
charger's ramp time (the delivery reads it from :attr:`csms.balancer.model.Decision.proven_down`).
"""

from __future__ import annotations

from collections.abc import Sequence

from .budget import clamp_saturated, phase_ceiling
from .estimate import Phases3
from .grid import EPS
from .model import ChargerInput, ControlState, GroupSpec, MeterInput

_CONTROLLED = ControlState.CONTROLLED


def proven_down(group: GroupSpec, steered: Sequence[tuple[ChargerInput, Phases3, Phases3]], meter: MeterInput,
                budget: dict[int, float]) -> dict[str, tuple[float, float]]:
    """Chargers whose accepted decrease this reading shows done: ``{id: (limit in force, reading time)}``.

    Break-before-make counts a charger that accepted a decrease at its old draw for ``ramp_time``, because
    its EV may still take it. The mains meter can prove sooner that the capacity is free. Let ``S`` be the
    chargers on phase p that accepted a limit before the reading and may still draw above it, ``B`` the
    other load the budget allows for (``ceiling - margin - budget``), and ``least`` what every other session
    the model follows draws at the very least at the reading. If ``reading - B - least <= sum of S's
    limits`` (plus half the margin, as :func:`~csms.balancer.budget.steady` allows a budget: the base load's
    jitter would otherwise fail the proof on every other reading), then the other load and S draw together no more than
    ``B`` plus S's limits; from now on S only come down (or rise to their limits), so counting them at their
    limits keeps the phase within the fuse with half the margin to spare, however the reading splits between
    them and the other load.

    ``least`` is the model's: a car that draws less than the model believes (one that draws nothing before a
    sample showed it drawing, see :mod:`csms.balancer.estimate`) weakens the proof by as much as it raises
    the budget, and both count it at its limit. A phase whose budget is set by ``max_current_online`` (a
    sub-board, not the fuse) or a saturated clamp proves nothing; a charger must be proven on every phase on
    which it may still draw above its limit.
    """
    at = meter.taken_at
    down = []
    for ch, least, most in steered:
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
        rest = sum(least[i] for _, least, _ in steered) - sum(least[i] for _, least in on)
        limits = sum(ch.limit_in_force for ch, _ in on)  # type: ignore[misc]
        if measured - other - rest > limits + group.margin / 2:
            failed.update(ch.spec.id for ch, _ in on)
    return {ch.spec.id: (ch.limit_in_force, at) for ch, _, _ in down  # type: ignore[misc]
            if ch.spec.id not in failed}
