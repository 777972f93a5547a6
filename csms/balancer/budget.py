"""The budget per building phase: what the group's chargers may draw together, from the mains reading.

Step 1 of :func:`~csms.balancer.allocation.allocate`: with a fresh reading, the fuse (or the top of the clamps'
range) minus the margin minus the other load (:mod:`csms.balancer.other_load`), at most
``max_current_online``; without one, ``max_current_offline``. :func:`steady` then keeps the previous budget
through a small fall, so that noise on the reading does not change every limit.
"""

from __future__ import annotations

from meter_gateway.reading import SATURATION_MARGIN

from .model import GroupSpec, MeterInput


def meter_fresh(group: GroupSpec, meter: MeterInput | None, now: float) -> bool:
    return group.has_meter and meter is not None and now - meter.taken_at <= group.stale_after


def phase_ceiling(group: GroupSpec) -> tuple[float, str]:
    """The most a phase may carry in all, and what sets it: the fuse, or the top of the clamps' range when the
    fuse is rated above it and the clamps see the chargers. The group must not take a phase to where the meter
    only says "at least this much": the reading would saturate, the sessions be paused, the reading drop back
    into range, and they would resume and saturate it again, every few seconds. Clamps that see only the other
    load (``chargers_in_measurement = false``) are not driven by the chargers: the fuse is the ceiling."""
    clamp = group.clamp_range_a
    if (group.chargers_in_measurement and clamp is not None
            and clamp * (1 - SATURATION_MARGIN) < group.supply_max_current):
        return clamp * (1 - SATURATION_MARGIN), "clamp range top"
    return group.supply_max_current, "fuse"


def clamp_saturated(group: GroupSpec, meter: MeterInput, phase: int, measured: float) -> bool:
    """Whether a phase's reading only says "at least this much": flagged by the gateway, or at the top of the
    clamps' range."""
    clamp = group.clamp_range_a
    return phase in meter.saturated or (clamp is not None and measured >= clamp * (1 - SATURATION_MARGIN))


#: Why a group (or circuit) has no reading to balance on: the balancer is told no more when a meter goes offline.
NO_READING = "no valid meter reading (none yet, or the meter is offline)"


def phase_budget(
    group: GroupSpec, meter: MeterInput | None, other: dict[int, float] | None, now: float
) -> tuple[dict[int, float], bool, dict[int, str]]:
    """Per group phase, what the group's chargers may draw together; whether the meter is fresh; why.

    ``other`` is the estimated other load per phase (:mod:`csms.balancer.estimate`) when the meter sees the
    chargers (``chargers_in_measurement``); None: the whole reading is other load.
    """
    offline = group.max_current_offline
    if not group.has_meter:
        note = f"static group without a meter: max_current_offline {offline:.1f} A"
        return {p: offline for p in group.phases}, False, {p: note for p in group.phases}
    if meter is None or now - meter.taken_at > group.stale_after:
        why = NO_READING if meter is None else (
            f"no valid meter reading for {now - meter.taken_at:.0f} s (stale_after {group.stale_after:g} s)")
        note = f"{why}: max_current_offline {offline:.1f} A"
        return {p: offline for p in group.phases}, False, {p: note for p in group.phases}
    budget: dict[int, float] = {}
    notes: dict[int, str] = {}
    margin, online = group.margin, group.max_current_online
    limit, limit_name = phase_ceiling(group)
    for p in group.phases:
        measured = meter.current.get(p)
        if measured is None:
            budget[p] = offline
            notes[p] = f"meter reports nothing for L{p}: max_current_offline {offline:.1f} A"
            continue
        saturated = clamp_saturated(group, meter, p, measured)
        other_p = measured if other is None else other.get(p, measured)
        value = limit - margin - other_p
        if saturated and measured >= 0:
            budget[p] = min(online, value, 0.0)
            notes[p] = f"meter clamp saturated at {measured:.1f} A (at least that much): treated as overload"
            continue
        budget[p] = min(online, value)
        drawn = (f" ({measured:.1f} A measured - {measured - other_p:.1f} A chargers)"
                 if group.chargers_in_measurement else "")
        notes[p] = (f"{limit:.1f} A {limit_name} - {margin:.1f} A margin - {other_p:.1f} A other load{drawn}"
                    + (f", capped at max_current_online {online:.1f} A" if online < value else ""))
    return budget, True, notes


def steady(group: GroupSpec, old: dict[int, float] | None, budget: dict[int, float],
           notes: dict[int, str]) -> dict[int, float]:
    """Keeps the previous budget of a phase through a small fall that still leaves the import within the
    fuse with half the margin to spare: noise on the reading would otherwise lower every limit a little
    on every dip (a decrease is always sent at once), and chargers would see a change every few seconds.
    A larger fall, or one that would eat more than half the margin, passes at once."""
    if not old:
        return budget
    half = group.margin / 2
    out = dict(budget)
    for p, b in budget.items():
        prev = old.get(p)
        if prev is None or not 0 < prev - b <= half or b <= 0 or prev > group.max_current_online:
            continue
        out[p] = prev
        notes[p] += f"; kept at {prev:.1f} A (a fall of {prev - b:.1f} A is within half the margin)"
    return out
