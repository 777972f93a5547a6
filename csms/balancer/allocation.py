"""Deciding every charger's current limit in a load-balancing group.

:func:`allocate` is pure and deterministic: it reads a :class:`~csms.balancer.model.GroupSpec`, the
latest mains reading, the chargers' states and the time, and returns a
:class:`~csms.balancer.model.Decision`. It has no clock and does no I/O. Its one mutable input is the
:class:`~csms.balancer.memory.BalancerMemory`, which carries what must persist from one run to the next (who is
paused and since when, who is trimmed) and which ``allocate`` updates in place.

The algorithm, per run:

1. **Budget per building phase** (:func:`~csms.balancer.budget.phase_budget`). With a fresh reading:
   ``min(max_current_online, supply_max_current - margin - other_load[p])``, where the other load is the
   measured current minus the chargers' own fresh draw when the meter sees them
   (``chargers_in_measurement``), the measured current otherwise. Solar export makes it negative and so
   raises the budget, never above ``max_current_online``. A clamp at the top of its range only says "at
   least this much": that phase's budget is at most 0 (overload). A stale or missing reading, or a group
   without a meter, gives ``max_current_offline``.
2. **Reserve what the balancer does not control.** A disconnected charger is counted at its offline
   current on its offline phase when its fallback is known to be in force, at ``max_current`` on every
   wired phase otherwise. A connected charger whose limit is pending, rejected or ignored is counted at the
   most it may draw (the old or the new limit, or ``max_current``). What is left per phase is ``available``.
3. **Who charges.** Every controlled session needs at least ``min_current`` on each phase it draws on
   (IEC 61851 cannot go lower), or 0. If ``available`` fits them all, all charge. Otherwise sessions are
   admitted greedily in rotation order (those running in their turn, then those that waited longest; a
   session that ran for ``rotation_period`` goes to the back), and one is paused only when ``min_current``
   no longer fits on one of its phases. When a multi-phase session would take the room of several 1-phase
   ones, the sessions not owed a turn are also tried smallest footprint first, and whichever order pauses
   fewer wins. A session paused less than a rotation period ago also needs ``resume_margin``, so a
   hovering reading does not pause and resume it on every sample.
4. **How much.** The admitted sessions share ``available`` max-min fairly by progressive filling
   (:mod:`csms.balancer.waterfill`), each up to its cap: ``max_current``, or for a car that drew clearly
   less than its limit for a while, its draw plus headroom (lifted every ``probe_every`` seconds to see
   whether it wants more), or the operator's cap when lower (:mod:`csms.balancer.operator_cap`; one below
   ``min_current`` pauses the session before admission). Such a trimmed car is counted at its draw: the headroom it does not use is lent
   to the others, at most ``trim_headroom`` per phase in all. A session draws only on the phases its EV
   really uses once they are learned, so a 1-phase EV on a 3-phase charger leaves the other two phases to
   others.
5. Limits are rounded **down** to 0.1 A (OCPP 1.6 ``multipleOf``), never below ``min_current``.

Safety argument. For every group phase p: the reserved chargers are counted at the most they can draw;
admission keeps ``sum(min_current)`` of the admitted sessions on p within ``available[p]``; progressive
filling never lets a phase's sum exceed its available current (a phase that is full stops every set on
it); rounding only lowers limits. So the worst case of everything the group's chargers can draw on p is
within the budget, which itself keeps ``margin`` below the fuse after the other load, or is the operator's
offline figure when the load cannot be measured; except for the headroom trimmed cars lend (at most
``trim_headroom`` per phase), which a car uses only by rising above the draw it was measured at: for the
fuse that is a step of the load like an appliance switching on, which the next reading shows and the
budget takes back from the others. The one exception is the reserved chargers alone
exceeding the budget (for instance several disconnected chargers of unknown state): then every controlled
session on that phase is paused, which is the most the balancer can do. A limit takes a round trip to be
in force: the allocation plans where every limit goes, and the delivery moves there safely (a decrease at
once, an increase only once the capacity it needs is free: break before make). A decision also names the
chargers whose accepted decrease its reading shows done (:func:`~csms.balancer.proof.proven_down`), so that the
delivery need not wait out their ramp time. A new session whose first limit is slow to be confirmed is
reserved at its fallback (``first_limit_grace``).

Where each part lives. One run's working state is a :class:`~csms.balancer.run_state.RunState` that the steps
pass between them; what persists between runs is in :mod:`csms.balancer.memory`.

- :mod:`csms.balancer.classify`: step 2's sorting of the chargers into controlled sessions and the rest, with
  :mod:`csms.balancer.reserve` (what the rest are counted at) and :mod:`csms.balancer.trim` (each session's cap).
- :mod:`csms.balancer.drawn`: what the chargers draw at the reading, summed in the same pass
  (:mod:`csms.balancer.estimate` models one charger); :mod:`csms.balancer.other_load`: the reading minus that,
  learning from readings, and the peak the budget holds.
- :mod:`csms.balancer.budget`: step 1 (the budget per phase, and keeping it through a small fall).
- :mod:`csms.balancer.admission` (step 3) and :mod:`csms.balancer.fill` (steps 4 and 5, lending included).
- :mod:`csms.balancer.proof`: decreases the reading shows done; :mod:`csms.balancer.grid`: the 0.1 A grid.
- :mod:`csms.balancer.circuits`: nested limits. A group with circuits (sub-boards) adds each circuit's phases as
  resources of steps 2-4 (reserves, admission, the fill), so that no node on a charger's path to the main fuse
  is over its limit and the sharing is max-min fair across the whole tree; without circuits nothing changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .budget import meter_fresh, phase_budget, steady
from .circuits import circuit_budgets, circuit_loads
from .classify import classify
from .fill import admit_and_fill
from .memory import BalancerMemory
from .model import ChargerInput, ChargerLimit, Decision, GroupSpec, MeterInput
from .other_load import other_load_at_reading, peak
from .proof import proven_down
from .reserve import fallback_phases
from .run_state import RunState


def allocate(
    group: GroupSpec,
    meter: MeterInput | None,
    chargers: Sequence[ChargerInput],
    now: float,
    memory: BalancerMemory,
    circuit_meters: Mapping[str, MeterInput] | None = None,
) -> Decision:
    """Decide every charger's limit for this run; see the module docstring. Updates ``memory``.

    ``circuit_meters``: the latest reading of each metered circuit of ``group.circuits``, by circuit id."""
    if not group.active:
        return _inactive(group, chargers, now, memory)
    run = RunState.start(group, now, memory)
    measured = group.chargers_in_measurement and meter_fresh(group, meter, now)
    limits = classify(run, chargers, meter.taken_at if measured else None)  # type: ignore[union-attr]
    if measured:
        other = other_load_at_reading(group, memory, run.drawn, meter)  # type: ignore[arg-type]
    elif meter_fresh(group, meter, now):  # the meter does not see the chargers: the reading is the other load
        other = peak(memory, group.tuning, meter.taken_at, dict(meter.current))  # type: ignore[union-attr]
    else:
        other = None
    budget, fresh, notes = phase_budget(group, meter, other, now)
    if fresh:
        budget = steady(group, memory.budget, budget, notes)
    memory.budget = budget if fresh else None
    run.available = {p: budget[p] - run.reserved[p] for p in group.phases}
    if group.circuits:
        return _with_circuits(run, chargers, circuit_meters or {}, limits, budget, fresh, notes,
                              measured, meter)
    admit_and_fill(run, limits)
    memory.chargers = run.new_memory
    proven = (proven_down(group, run.drawn.steered, meter, budget)  # type: ignore[arg-type]
              if measured and fresh else {})
    return Decision(group.id, now, budget, fresh, limits, run.available, notes, proven)


def _with_circuits(run: RunState, chargers: Sequence[ChargerInput], meters: Mapping[str, MeterInput],
                   limits: dict[str, ChargerLimit], budget: dict[int, float], fresh: bool, notes: dict[int, str],
                   measured: bool, meter: MeterInput | None) -> Decision:
    """Steps 3-5 for a group with circuits (:mod:`csms.balancer.circuits`): each (circuit, phase) is one more
    resource of the admission and the fill, with what is left of the circuit's budget after its reserves.

    The mains reading's proof of a decrease (:mod:`csms.balancer.proof`) speaks of the main fuse only, so a
    charger under a circuit is never proven down: its old draw is counted for its whole ramp time."""
    group = run.group
    in_path = {ch.spec.id: run.paths.get(ch.spec.circuit, ()) for ch in chargers if ch.spec.circuit is not None}
    cbudget, cfresh, cnotes = circuit_budgets(group, meters, run.memory, run.drawn.steered,
                                              run.new_memory, run.now, in_path)
    for key, amps in cbudget.items():
        run.available[key] = amps - run.reserved[key]  # type: ignore[index]
    admit_and_fill(run, limits)
    run.memory.chargers = run.new_memory
    proven = (proven_down(group, run.drawn.steered, meter, budget)  # type: ignore[arg-type]
              if measured and fresh else {})
    proven = {cid: v for cid, v in proven.items() if cid not in in_path}
    available = {p: run.available[p] for p in group.phases}
    return Decision(group.id, run.now, budget, fresh, limits, available, notes, proven,
                    circuit_loads(group, limits, in_path, cbudget, cfresh, cnotes))


def _inactive(group: GroupSpec, chargers: Sequence[ChargerInput], now: float, memory: BalancerMemory) -> Decision:
    memory.chargers = {}
    limits = {}
    for ch in chargers:
        s = ch.spec
        limits[s.id] = ChargerLimit(s.offline_current, fallback_phases(ch),
                                    "group inactive: the charger keeps its offline limit", False, s.offline_current)
    budget = dict.fromkeys(group.phases, group.max_current_offline)
    note = "group inactive (active = false): chargers keep their offline limits"
    return Decision(group.id, now, budget, False, limits, dict(budget), dict.fromkeys(group.phases, note))
