"""What the allocation reads and what it decides: plain, immutable data with no I/O and no clock.

These types are the contract between the controller (which gathers inputs from the live station
state, the meter and the smart-charging delivery) and :func:`csms.balancer.allocation.allocate`
(which turns them into limits). They are deliberately independent of OCPP versions and of the
pydantic config models, so that the allocation can be tested, benchmarked and replayed from plain
values. Currents are in A per phase; phases are *building* phases 1..3 unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from csms.config import ChargerConfig, CircuitConfig, LoadBalancerConfig, SiteConfig, charger_phases
from meter_gateway.config import MeterConfig


@dataclass(frozen=True, slots=True)
class Tuning:
    """Knobs of the allocation that operators rarely touch; the defaults suit IEC 61851 AC charging.

    Trimming: a car that draws ``trim_slack`` A less than its limit for ``trim_after`` seconds is capped at
    its draw plus ``trim_headroom``, so the rest goes to others; every ``probe_every`` seconds the cap is
    lifted to see whether it wants more again. ``draw_max_age``: a charger's own sample older than this is
    ignored (neither trusted for trimming nor subtracted from the mains reading). ``resume_margin``: extra A
    per phase a recently paused session needs before it resumes, so a reading that hovers around the
    threshold does not pause and resume a car on every sample (cars give up after a few such cycles).
    """

    #: Seconds an EV may take to follow a changed limit (IEC 61851-1: 5 s); the estimator treats a charger as
    #: moving for this long after its limit changed (:mod:`csms.balancer.estimate`).
    ev_response: float = 5.0
    #: Seconds the budget remembers the highest other load seen: a building's load flickers (fridges, pumps)
    #: by about a volt-ampere's worth every second, and the budget follows its recent peak instead, so that a
    #: flicker neither lifts the import above the fuse nor changes every limit. A step up counts at once.
    peak_window: float = 10.0
    #: Readings in a row, all below every older one in the peak window by more than those flickered, that let a
    #: step down of the other load go before the window has passed (:func:`csms.balancer.other_load.peak`):
    #: a flicker does not fall below its own range three times in a row; a load that went off does.
    step_down_readings: int = 3
    #: Seconds a new session's first limit may be in flight before its fallback is counted: an EV takes a few
    #: seconds after the session starts to close its contactor and draw (IEC 61851 state B to C).
    first_limit_grace: float = 2.0
    trim_after: float = 60.0
    trim_slack: float = 2.0
    trim_headroom: float = 2.0
    probe_every: float = 300.0
    draw_max_age: float = 120.0
    resume_margin: float = 1.0


@dataclass(frozen=True, slots=True)
class CircuitSpec:
    """A sub-board inside a group's tree (:mod:`csms.balancer.circuits`): every phase of it holds ``max_current``.

    Without a meter nothing but the chargers under it is known to draw on it, so their limits must sum to no more
    than ``max_current - margin``; with one, its other load (the reading minus those chargers) is taken off too.
    """

    id: str
    #: The circuit it hangs under; None: directly under the group's main fuse.
    parent: str | None
    max_current: float
    margin: float = 0.25
    has_meter: bool = False
    #: What its chargers may draw together while its meter is stale (a metered circuit only).
    max_current_offline: float = 0.0
    stale_after: float = 10.0

    @classmethod
    def from_config(cls, circuit: CircuitConfig, meter: MeterConfig | None) -> CircuitSpec:
        return cls(circuit.id, circuit.parent, circuit.max_current, circuit.margin, meter is not None,
                   circuit.max_current_offline or 0.0, meter.stale_after if meter is not None else 10.0)


def circuits_of(site: SiteConfig, group: LoadBalancerConfig) -> tuple[CircuitSpec, ...]:
    """The circuits of the trees the group's chargers (or the group itself) hang under, parents first: the config
    checks keep one tree inside one group (:mod:`csms.config.circuits`)."""
    used: list[str] = []
    for cid in group.chargers:
        for node in reversed(site.circuit_path(site.circuit_of(cid))):
            if node not in used:
                used.append(node)
    for node in reversed(site.circuit_path(group.circuit)):
        if node not in used:
            used.append(node)
    out = []
    for node in used:
        c = site.circuit(node)
        if c is not None:
            out.append(CircuitSpec.from_config(c, site.meter(c.meter) if c.meter is not None else None))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A load-balancing group: the chargers behind one fuse (or one share of it) and its rules."""

    id: str
    #: Building phases the group's budget covers, in preference order.
    phases: tuple[int, ...]
    supply_max_current: float
    max_current_online: float
    max_current_offline: float
    min_current: float = 6.0
    margin: float = 2.0
    stale_after: float = 10.0
    rotation_period: float = 900.0
    chargers_in_measurement: bool = True
    active: bool = True
    has_meter: bool = True
    #: The meter clamp's range (100 A home, 400 A public); a reading at its top means "at least this".
    clamp_range_a: float | None = None
    tuning: Tuning = field(default_factory=Tuning)
    #: The circuits (sub-boards) of the group's tree, parents before children; empty: every charger is directly
    #: under the main fuse, and the allocation is exactly the flat one.
    circuits: tuple[CircuitSpec, ...] = ()

    @classmethod
    def from_config(cls, group: LoadBalancerConfig, meter: MeterConfig | None,
                    tuning: Tuning | None = None, circuits: tuple[CircuitSpec, ...] = ()) -> GroupSpec:
        return cls(
            id=group.id,
            phases=tuple(group.phases),
            supply_max_current=group.supply_max_current,
            max_current_online=group.max_current_online,
            max_current_offline=group.max_current_offline,
            min_current=group.min_current,
            margin=group.margin,
            stale_after=group.stale_after,
            rotation_period=group.rotation_period,
            chargers_in_measurement=group.chargers_in_measurement,
            active=group.active,
            has_meter=meter is not None,
            clamp_range_a=meter.range_a if meter is not None else None,
            tuning=tuning or Tuning(),
            circuits=circuits,
        )


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    id: str
    max_current: float
    #: Building phases the charger's L1, L2, L3 land on, in charger order (one entry for a 1-phase charger).
    phases_wired: tuple[int, ...]
    #: What its offline fallback profile allows, and on which building phase.
    offline_current: float = 6.0
    offline_phase: int = 1
    #: The circuit it is wired on (see :class:`CircuitSpec`); None: directly under the group's main fuse.
    circuit: str | None = None

    @classmethod
    def from_config(cls, charger: ChargerConfig, circuit: str | None = None) -> ChargerSpec:
        return cls(
            id=charger.id,
            max_current=charger.max_current,
            phases_wired=charger_phases(charger),
            offline_current=charger.offline_current,
            offline_phase=charger.offline_phase,
            circuit=circuit,
        )


class ControlState(StrEnum):
    """How far the balancer can trust a charger to stay under the limit it was given."""

    #: Its latest limit was accepted and is in force.
    CONTROLLED = "controlled"
    #: A limit was sent and is not accepted yet: it may draw the old or the new one.
    PENDING = "pending"
    #: It rejected the limit or did not answer: the balancer cannot limit it.
    UNCONTROLLED = "uncontrolled"
    #: Disconnected, and its offline fallback profile is known to be installed.
    FALLBACK = "fallback"
    #: Disconnected, and whether a fallback is installed is not known.
    DISCONNECTED_UNKNOWN = "disconnected_unknown"
    #: It draws more than its limit.
    NOT_OBEYING = "not_obeying"


@dataclass(frozen=True, slots=True)
class ChargerInput:
    spec: ChargerSpec
    connected: bool = True
    #: A transaction is running and the EV may want current.
    session_active: bool = False
    control: ControlState = ControlState.CONTROLLED
    #: The limit (A per phase) the charger has accepted and applies now, if known.
    limit_in_force: float | None = None
    #: Its own measured draw, A per *building* phase (already mapped through its rotation); empty if unknown.
    #: A new sample is a new dict: the allocation recognises a sample it has already judged by identity.
    draw: dict[int, float] = field(default_factory=dict)
    #: When that draw was sampled.
    draw_at: float | None = None
    #: Building phases the EV really draws on, learned from the charger's per-phase samples; None = unknown.
    phases_in_use: tuple[int, ...] | None = None
    #: When ``limit_in_force`` took effect (the charger accepted it); None: not known (the run's time is used).
    limit_since: float | None = None
    #: How long the charger has recently taken to accept a limit (the slowest of its last few answers, in s);
    #: None: not known yet.
    answer_time: float | None = None
    #: The operator's cap on this charger's limit (A per phase), an upper bound inside what the fuse allows
    #: (:mod:`csms.balancer.operator_cap`); None: none. It lowers the limit the balancer plans, never what an
    #: uncontrolled charger is counted at.
    operator_cap: float | None = None
    #: When the operator's cap lapses (our clock); None: when the operator clears it.
    operator_cap_until: float | None = None
    #: The building phases its offline fallback binds on, as the delivery installed it; None: not reported
    #: (its ``offline_phase``).
    fallback_phases: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class MeterInput:
    """One valid mains reading, mapped to building phases."""

    taken_at: float
    #: A per building phase, + import, - export (solar); a phase the meter did not report is absent.
    current: dict[int, float]
    #: Building phases whose clamp is at the top of its range.
    saturated: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class ChargerLimit:
    """What the balancer decided for one charger, and why. Chargers with the same outcome share one object.

    ``controlled=True``: ``limit`` is the limit to install (A per phase, 0 = paused, which IEC 61851 allows;
    anything else is at least the group's ``min_current``). ``controlled=False``: the balancer cannot set this
    charger's limit right now (disconnected, group inactive); ``limit`` is what it is assumed to draw and the
    delivery must not send it. ``counted`` is what the charger is reserved at on each of ``phases``: more
    than ``limit`` while a change is pending or the charger does not obey; less for a trimmed car, which is
    counted at its draw and lends the rest of its headroom to others (at most ``Tuning.trim_headroom`` per
    phase in all).
    """

    limit: float
    #: Building phases it will draw on.
    phases: tuple[int, ...]
    reason: str
    controlled: bool = True
    counted: float = 0.0


@dataclass(frozen=True, slots=True)
class CircuitLoad:
    """One circuit in a decision: its limit, what its chargers may draw together, and what the decision plans."""

    id: str
    parent: str | None
    max_current: float
    #: Per group phase: what the chargers under it may draw together (its fuse less margin and other load).
    budget: dict[int, float]
    #: Per group phase: what the chargers under it are planned or counted at, all together.
    planned: dict[int, float]
    #: Whether its meter's reading was fresh (None: it has no meter).
    meter_fresh: bool | None
    notes: dict[int, str]
    #: Every charger under it, its child circuits' included.
    chargers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    group_id: str
    at: float
    #: What the group's chargers may draw per building phase, all of them together (may be negative on overload).
    budget: dict[int, float]
    meter_fresh: bool
    limits: dict[str, ChargerLimit]
    #: What was left per phase for the chargers the balancer controls, after the others were reserved.
    available: dict[int, float] = field(default_factory=dict)
    #: How each phase's budget came about, e.g. "35.0 A fuse - 2.0 A margin - 8.3 A other load".
    budget_notes: dict[int, str] = field(default_factory=dict)
    #: Chargers whose accepted decrease the mains reading shows done, so that break-before-make need not wait out
    #: their ramp time: ``{charger id: (the limit it is at, the reading's time)}``
    #: (:func:`csms.balancer.proof.proven_down`).
    proven_down: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: The group's circuits (sub-boards) by id, parents first; empty for a group without circuits.
    circuits: dict[str, CircuitLoad] = field(default_factory=dict)

    def explain(self, charger_id: str) -> str:
        """One paragraph an operator can read: the limit, the phases, and why, with the budget of each
        phase the charger draws on."""
        lim = self.limits.get(charger_id)
        if lim is None:
            return f"{charger_id}: not in group {self.group_id}'s latest decision"
        where = "+".join(f"L{p}" for p in lim.phases) or "no phase of the group"
        head = f"{charger_id}: {lim.limit:.1f} A on {where}"
        if not lim.controlled:
            head += " (not controlled by the balancer)"
        elif lim.counted > lim.limit:
            head += f" (counted at {lim.counted:.1f} A until it is in force)"
        elif 0 < lim.counted < lim.limit:
            head += f" (counted at its draw, {lim.counted:.1f} A: the rest of its headroom is lent to others)"
        source = "meter fresh" if self.meter_fresh else "no fresh meter reading"
        budgets = "; ".join(
            f"L{p} budget {self.budget[p]:.1f} A ({self.budget_notes.get(p, '')}), "
            f"{self.available.get(p, self.budget[p]):.1f} A of it for controlled sessions"
            for p in (lim.phases or tuple(self.budget)) if p in self.budget)
        return f"{head}: {lim.reason}. Group {self.group_id}, {source}. {budgets}."
