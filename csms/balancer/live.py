"""The balancer's live view of its groups and chargers, and how it is built from the site config.

Kept apart from the controller's event handling so that the controller can build a group the same way at
start and when a reloaded config adds or changes one (:meth:`BalancerController.apply_config`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from csms.config import LoadBalancerConfig, SiteConfig
from csms.runtime.aio import Wake

from .memory import BalancerMemory
from .model import ChargerInput, ChargerSpec, ControlState, Decision, GroupSpec, MeterInput, Tuning, circuits_of

#: How many of a charger's latest answer times count (the slowest of them is taken).
ANSWERS_KEPT = 5

@dataclass(slots=True)
class LiveCharger:
    """The balancer's live view of one charger."""

    spec: ChargerSpec
    connected: bool = False
    session_active: bool = False
    #: Nothing is known to be installed until the delivery says so: the charger may draw its maximum.
    control: ControlState = ControlState.UNCONTROLLED
    limit_in_force: float | None = None
    #: When the delivery reported ``limit_in_force`` as in force (our clock).
    limit_since: float | None = None
    draw: dict[int, float] = field(default_factory=dict)
    draw_at: float | None = None
    phases_in_use: tuple[int, ...] | None = None
    #: Since when a limit of ours (which allows every wired phase) has been in force in this session; None
    #: while its offline fallback (often one phase) or nothing we know is.
    ours_since: float | None = None
    #: How long it took to answer its last few (at most ``ANSWERS_KEPT``) SetChargingProfile requests (s).
    answers: list[float] = field(default_factory=list)
    answer_time: float | None = None
    #: The operator's cap (A per phase) and when it lapses (see :mod:`csms.balancer.operator_cap`).
    operator_cap: float | None = None
    operator_cap_until: float | None = None
    fallback_phases: tuple[int, ...] | None = None

    #: The last input built from the above; rebuilt only after a change (10,000 a run would cost ~10 ms).
    cached: ChargerInput | None = None

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name != "cached":
            object.__setattr__(self, "cached", None)

    def as_input(self) -> ChargerInput:
        if self.cached is None:
            self.cached = ChargerInput(self.spec, self.connected, self.session_active, self.control,
                                       self.limit_in_force, self.draw, self.draw_at, self.phases_in_use,
                                       self.limit_since, self.answer_time, self.operator_cap,
                                       self.operator_cap_until, self.fallback_phases)
        return self.cached

    def forget_draw(self) -> None:
        self.draw, self.draw_at = {}, None


@dataclass
class LiveGroup:
    spec: GroupSpec
    meter_serial: str | None
    chargers: dict[str, LiveCharger]
    meter: MeterInput | None = None
    memory: BalancerMemory = field(default_factory=BalancerMemory)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    decision: Decision | None = None
    #: Set by the next run and then replaced: what :meth:`BalancerController.next_decision` waits on.
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    #: When each operator cap with an end lapses, by charger: the task runs then (not a tick later).
    cap_until: dict[str, float] = field(default_factory=dict)
    #: Metered circuits' meters (serial -> circuit ids) and each one's latest reading, by circuit id.
    circuit_serials: dict[str, list[str]] = field(default_factory=dict)
    circuit_meters: dict[str, MeterInput] = field(default_factory=dict)
    #: A meter reading woke the task: run at once, without the debounce (see :meth:`BalancerController._run`);
    #: ``hurry`` cuts short a debounce already under way.
    urgent: bool = False
    hurry: Wake = field(default_factory=Wake)


def group_spec(site: SiteConfig, cfg: LoadBalancerConfig) -> GroupSpec:
    """The allocation's view of group ``cfg`` of ``site``."""
    meter = site.meter(cfg.meter) if cfg.meter is not None else None
    return GroupSpec.from_config(cfg, meter, Tuning(ev_response=site.smart_charging.ramp_time),
                                 circuits_of(site, cfg))


def circuit_serials(site: SiteConfig, spec: GroupSpec) -> dict[str, list[str]]:
    """The meters of the group's metered circuits: serial -> the circuits it measures."""
    serials: dict[str, list[str]] = {}
    for c in spec.circuits:
        circuit = site.circuit(c.id)
        if circuit is not None and circuit.meter is not None:
            serials.setdefault(circuit.meter, []).append(c.id)
    return serials
