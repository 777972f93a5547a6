"""Named scenarios: what happens on a simulated site over time (loads, cars coming and going, meter faults).

A scenario is a ``setup`` (loads and the event plan, made with the clock's seeded generator so a run is
reproducible) and a list of timed events in seconds after the start. :func:`run_scenario` plays it
against a started :class:`~simulators.simulation.Simulation` until the duration ends or ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from simulators.ev import EVModel
from simulators.meter import AmpGuardSim, MeterFaults
from simulators.simulation import Simulation
from simulators.site import Constant, Noise, Solar, Steps

log = logging.getLogger(__name__)

Action = Callable[[Simulation], None]


@dataclass
class Plan:
    """Timed events, seconds after the start, in any order."""

    events: list[tuple[float, str, Action]] = field(default_factory=list)

    def at(self, t: float, what: str, action: Action) -> None:
        self.events.append((t, what, action))


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    setup: Callable[[Simulation, float], Plan]


def _car(sim: Simulation, charger_phases: int, name: str) -> EVModel:
    rng = sim.clock.rng
    phases = 3 if charger_phases == 3 and rng.random() < 0.7 else 1
    return EVModel(max_current=rng.choice([16.0, 16.0, 32.0]), phases=phases, capacity_kwh=rng.choice([40, 60, 77]),
                   soc_start=round(rng.uniform(0.1, 0.6), 2), ramp_delay=rng.uniform(1.0, 3.0),
                   ramp_time=rng.uniform(1.0, 2.0), name=name)


def _arrive(charger_id: str) -> Action:
    def act(sim: Simulation) -> None:
        charger = sim.fleet[charger_id]
        if charger.connectors[1].ev is None:
            charger.plug_in(_car(sim, charger.config.phases, f"car@{charger_id}"))
    return act


def _depart(charger_id: str) -> Action:
    return lambda sim: sim.fleet[charger_id].unplug()


def _base_load(sim: Simulation, amps: tuple[float, float, float], noise: float = 1.0) -> None:
    for site in sim.sites.values():
        site.loads.append(Noise(Constant(amps), noise, sim.clock))


def steady(sim: Simulation, t0: float) -> Plan:
    _base_load(sim, (10.0, 8.0, 12.0))
    plan = Plan()
    for i, c in enumerate(sim.fleet):
        plan.at(1.0 + 0.5 * i, f"car arrives at {c.id}", _arrive(c.id))
    return plan


def evening_peak(sim: Simulation, t0: float) -> Plan:
    rng = sim.clock.rng
    for site in sim.sites.values():
        steps = Steps(((t0 + 30, (25.0, 22.0, 28.0)), (t0 + 120, (15.0, 14.0, 16.0))), before=(8.0, 7.0, 9.0))
        site.loads.append(Noise(steps, 1.5, sim.clock))
    plan = Plan()
    chargers = list(sim.fleet)
    for i, c in enumerate(chargers):
        plan.at(5.0 + i * 8.0 + rng.uniform(0, 4), f"car arrives at {c.id}", _arrive(c.id))
    if chargers:
        plan.at(150.0, f"car leaves {chargers[0].id}", _depart(chargers[0].id))
        plan.at(170.0, f"car returns to {chargers[0].id}", _arrive(chargers[0].id))
    return plan


def meter_dropout(sim: Simulation, t0: float) -> Plan:
    plan = steady(sim, t0)
    for serial, meter in sim.meters.items():
        plan.at(20.0, f"meter {serial} goes offline", lambda s, m=meter: m.go_offline())
        plan.at(50.0, f"meter {serial} back online", lambda s, m=meter: m.go_online())
    return plan


def solar(sim: Simulation, t0: float) -> Plan:
    """PV export peaking at the moment the scenario starts (whatever the wall-clock hour)."""
    hour = datetime.fromtimestamp(t0, timezone.utc)
    offset = 13.0 - (hour.hour + hour.minute / 60)
    for site in sim.sites.values():
        site.loads.append(Noise(Constant((6.0, 5.0, 7.0)), 0.5, sim.clock))
        site.loads.append(Solar(peak=25.0, utc_offset_h=offset))
    plan = Plan()
    for i, c in enumerate(sim.fleet):
        plan.at(3.0 + 5 * i, f"car arrives at {c.id}", _arrive(c.id))
    return plan


def faulty_clamp(sim: Simulation, t0: float) -> Plan:
    """Installation mistakes the central system should notice: a reversed clamp, then swapped clamps."""
    plan = steady(sim, t0)
    for serial, meter in sim.meters.items():
        plan.at(20.0, f"meter {serial}: clamp L2 reversed", lambda s, m=meter: _faults(m, reversed_clamps={2}))
        plan.at(60.0, f"meter {serial}: clamps L1 and L3 swapped", lambda s, m=meter: _faults(m, swapped=(1, 3)))
        plan.at(100.0, f"meter {serial}: clamps fixed", lambda s, m=meter: _faults(m))
    return plan


def _faults(meter: AmpGuardSim, reversed_clamps: set[int] = frozenset(), swapped: tuple[int, int] | None = None) -> None:
    meter.faults = MeterFaults(reversed_clamps=frozenset(reversed_clamps), swapped=swapped)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("steady", "constant base load; every charger gets a car in the first seconds", steady),
    Scenario("evening-peak", "cars arrive one after another while the base load steps up (cooking) and back",
             evening_peak),
    Scenario("meter-dropout", "steady, then every meter goes silent from 20 s to 50 s", meter_dropout),
    Scenario("solar", "PV export on every phase peaking now, cars arriving", solar),
    Scenario("faulty-clamp", "steady; clamp L2 reversed at 20 s, L1/L3 swapped at 60 s, fixed at 100 s",
             faulty_clamp),
]}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}") from None


class ScenarioPlayer:
    """Fires a scenario's events when their time has come and records the sites; :meth:`tick` does one step
    (call it as often as you like - from :func:`run_scenario`, or from a test stepping a ManualClock)."""

    def __init__(self, sim: Simulation, scenario: Scenario) -> None:
        self.sim, self.scenario = sim, scenario
        self.t0 = sim.clock.now()
        self.pending = sorted(scenario.setup(sim, self.t0).events, key=lambda e: e[0])

    def tick(self) -> float:
        """Fires due events, records every site; returns the seconds elapsed since the start."""
        elapsed = self.sim.clock.now() - self.t0
        while self.pending and self.pending[0][0] <= elapsed:
            _, what, action = self.pending.pop(0)
            log.info("scenario %s: %s", self.scenario.name, what)
            action(self.sim)
        self.sim.record()
        return elapsed


async def run_scenario(sim: Simulation, scenario: Scenario, duration: float | None = None,
                       stop: asyncio.Event | None = None, step: float = 0.5,
                       on_step: Callable[[Simulation], None] | None = None) -> None:
    """Plays ``scenario`` on a started simulation: fires its events on time and records the sites every
    ``step`` s of clock time, until ``duration`` s have passed or ``stop`` is set."""
    stop = stop or asyncio.Event()
    player = ScenarioPlayer(sim, scenario)
    while not stop.is_set():
        elapsed = player.tick()
        if on_step is not None:
            on_step(sim)
        if duration is not None and elapsed >= duration:
            return
        try:
            async with asyncio.timeout(step / sim.clock.speed):
                await stop.wait()
        except TimeoutError:
            pass
