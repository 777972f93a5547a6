"""Closed-loop control-quality harness: the real balancer and delivery against simulated site physics.

Used by ``bench/bench_control_quality.py`` (the matrix, the baseline run and the report) and by the smoke
test. One :func:`run_condition` call is one simulated site, run on a virtual clock (``aiotools.VirtualClock``
patches the event loop: every sleep and timeout returns as soon as nothing else is ready, and the loop's
time jumps to the next timer), so minutes of site time take about a second of wall time and a run is
exactly reproducible for a seed.

What is real: :class:`csms.domain.state.SiteState`, :class:`csms.balancer.controller.BalancerController` (which calls
``csms.balancer.allocation.allocate``) and :class:`csms.smart_charging.delivery.Delivery`, built from a
:class:`csms.config.SiteConfig` with the shipped defaults and wired the way ``csms/runtime/app.py`` wires them
(controller -> ``delivery.apply``, the delivery's reports -> ``controller.on_control``, mains readings ->
``controller.on_reading``). What is simulated: the OCPP path. Each charger has a :class:`FakeLink` (the
``csms.domain.link.StationLink`` protocol) that answers after a round-trip delay and installs the profiles in the
charger's :class:`simulators.profile_store.ProfileStore`; the charger's events reach ``SiteState`` through the same
methods the OCPP adapters call (``connected``, ``booted``, ``status``, ``transaction_started``, ``sampled``),
after an uplink delay. The physics are ``simulators.ev.EVModel`` and ``simulators.site`` (loads, noise,
phase rotation, what the fuse carries).

Every figure is computed from what the simulated site carries (the recorded phase currents, the cars'
draws and the limits the chargers apply), never from the central system's view of itself.

This module must run unchanged against older ``csms`` trees (the baseline), so its use of ``csms`` is kept
narrow: the constructors above, ``SiteState``'s adapter-facing methods, ``Capabilities``/``CompositeLimit``/
``Outcome``, ``PhaseSample``/``Transaction``/``BootInfo``/``Version``, ``parse_config``, and
``controller.start/stop/on_reading/on_meter_state/on_control``, ``delivery.attach/stop``, and
``DecisionOutbox`` where the tree has it (:func:`_wire`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from csms.balancer.controller import BalancerController
from csms.config import parse_config
from csms.domain.link import Capabilities, CompositeLimit, Outcome
from csms.domain.state import BootInfo, PhaseSample, SiteState, Transaction, Version
from csms.smart_charging.delivery import Delivery
import csms.balancer.controller as controller_module
from simulators.ev import EVModel
from simulators.profile_store import ProfileStore
from simulators.profiles import Kind, Period, Profile, Schedule
from simulators.profiles import Purpose as SimPurpose
from simulators.site import Constant, Noise, Site, Steps, to_building

EPOCH = 1_795_000_000.0  # simulated POSIX time of t = 0
METER = "AG0000001G"
PASSWORD = "0123456789abcdef"
GROUP = "site"
VOLTAGE = 230.0
#: Clamp range of the simulated Amp Guard (home variant) and where the gateway flags saturation.
CLAMP_RANGE = 100.0
#: Measurands a charger supports (what the delivery asks for).
MEASURANDS = "Current.Import,Current.Offered,Voltage,Energy.Active.Import.Register"
_SIM_PURPOSE = {"tx": SimPurpose.TX, "tx_default": SimPurpose.TX_DEFAULT, "station_max": SimPurpose.STATION_MAX}


# ---- what a condition is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Car:
    charger_id: str
    ev_phases: int = 3           # the car's on-board charger: 1 or 3 phases
    max_current: float = 16.0    # the car's own cap, A per phase
    rotation: str = "RST"        # how the (3-phase) charger's L1..L3 land on building phases
    plug_at: float = 3.0         # s after the start
    #: Cars with the same key are "equal" (the EV spread is taken among them); None = not compared.
    equal: str | None = "equal"


@dataclass(frozen=True)
class Condition:
    name: str
    site: str
    fuse: float
    base: float                        # A per phase of other load
    cars: tuple[Car, ...]
    max_current_online: float
    mv_interval: int                   # s: the charger's own MeterValues interval (it refuses faster ones)
    ev_response: float                 # s: ramp_delay + ramp_time of every EV (split half and half)
    duration: float                    # s of simulated time in all
    warmup: float                      # s before the settled window starts
    step_at: float | None = None       # s: when the base load steps (site D)
    step_amps: float = 0.0             # A per phase added at ``step_at``
    noise: float = 0.3                 # ± A of base-load noise, redrawn every second
    transient: float = 60.0            # s after the step left out of the steady-state figures
    #: Window (s, s) over which each car's charging share is taken (site C); None = not reported.
    share_window: tuple[float, float] | None = None
    trigger: bool = False              # chargers answer TriggerMessage(MeterValues)
    instant_decrease: bool = False     # EVs obey a lowered limit at once (EVModel's own code) instead of ramping
    rtt: float = 0.3                   # s: a command's round trip (applied at the charger half way)
    uplink: float = 0.2                # s: charger message -> SiteState (network + store before publishing)
    meter_period: float = 1.0          # s between mains readings
    meter_latency: float = 0.1         # s: reading taken -> balancer
    record_every: float = 0.1          # s: physics resolution of the recorded figures
    seed: int = 1
    #: Record a decimated phase-current trace for plotting.
    trace: bool = False


# ---- the simulated charger and its link -------------------------------------------------------------


class LaggingEV(EVModel):
    """``simulators.ev.EVModel`` whose draw also *falls* along a ramp of ``ramp_time`` after a lowered offer.

    ``EVModel``'s docstring says a changed offer is followed linearly within ``ramp_time``, but its code starts
    a decrease from the new offer, so a lowered limit (or a pause) is obeyed instantly. Real EVs take time
    (IEC 61851-1 allows up to 5 s), and that time is what a fast safety feedback has to live with, so here a
    decrease ramps from the present draw. ``instant_decrease=True`` keeps ``EVModel``'s own behaviour.
    """

    instant_decrease: bool = False

    def update(self, t: float, offered: float, voltage: float = 230.0, phases: int = 3) -> float:
        before = self.current_at(t)
        out = super().update(t, offered, voltage, phases)
        if (not self.instant_decrease and getattr(self, "_since", None) == t and self._to < before
                and self._from < before):
            self._from = before  # the decrease that just began ramps down from where the draw was
            out = self.current_at(t)
        return out


class SimulatedCharger:
    """One 3-phase charger with one connector: a profile store, a car, a meter-values schedule."""

    def __init__(self, car: Car, cond: Condition, state: SiteState, clock: Callable[[], float],
                 record: Callable[[str, float, float, float], None]):
        self.car, self.cond, self.state, self.clock = car, cond, state, clock
        self.id = car.charger_id
        self.phase_rotation = car.rotation
        self.max_current = 32.0  # the charger's own maximum (config default)
        self.store = ProfileStore(version="ocpp1.6", connectors=1, phases=3)
        self.mv_interval = cond.mv_interval  # configured interval (never below the charger's own)
        self.ev: EVModel | None = None
        self.tx_id: str | None = None
        self.offered = 0.0
        self.current = (0.0, 0.0, 0.0)
        self.energy_wh = 0.0
        self.status = "Available"
        self._last_step: float | None = None
        self._record = record  # (charger id, t, old offer, new offer) on every change of the applied limit

    # physics

    def draw(self) -> tuple[float, float, float]:
        return self.current

    def offer_at(self, t: float) -> tuple[float, int]:
        if self.tx_id is None:
            return 0.0, 3
        lim = self.store.limit_at(1, t)
        amps = self.max_current if lim.amps is None else min(self.max_current, lim.amps)
        return amps, lim.number_phases

    def step(self, t: float) -> None:
        if self._last_step is not None and t < self._last_step:
            return
        dt = 0.0 if self._last_step is None else t - self._last_step
        self._last_step = t
        before = sum(self.current)
        offer, phases = self.offer_at(t)
        if abs(offer - self.offered) > 1e-6:
            self._record(self.id, t, self.offered, offer)
            self.offered = offer
        per_phase = self.ev.update(t, offer, VOLTAGE, phases) if self.ev is not None else 0.0
        n = min(phases, self.ev.phases) if self.ev is not None else 0
        self.current = (per_phase, 0.0, 0.0) if n == 1 else tuple(per_phase if i < n else 0.0 for i in range(3))
        self.energy_wh += (before + sum(self.current)) / 2 * VOLTAGE * dt / 3600.0
        self._refresh_status(t)

    def _refresh_status(self, t: float) -> None:
        if self.ev is None:
            status = "Available"
        elif self.tx_id is None:
            status = "Preparing"
        elif self.offered < self.ev.min_current:
            status = "SuspendedEVSE"
        elif self.ev.full:
            status = "SuspendedEV"
        else:
            status = "Charging"
        if status != self.status:
            self.status = status
            self.uplink(lambda at=t, s=status: self.state.status(self.id, 1, s, None, at))

    # messages to the central system

    def uplink(self, fn: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(self.cond.uplink, fn)

    def sample(self, t: float) -> None:
        """One MeterValues sample of the connector, taken at ``t`` (values to 0.1 A as chargers send them)."""
        self.step(t)
        cur = tuple(round(a, 1) for a in self.current)
        sample = PhaseSample(t, cur, (VOLTAGE, VOLTAGE, VOLTAGE), round(self.energy_wh), round(self.offered, 1))
        self.uplink(lambda: self.state.sampled(self.id, 1, sample))

    def plug_in(self, t: float, ev: EVModel, tx_number: int) -> None:
        self.ev = ev
        self.step(t)  # Preparing
        self.tx_id = str(tx_number)
        self.store.transaction_started(1, self.tx_id, t)
        tx = Transaction(self.tx_id, 1, "CQTAG", t, round(self.energy_wh))
        self.uplink(lambda: self.state.transaction_started(self.id, tx))
        self.step(t)

    async def sampler(self) -> None:
        """Periodic MeterValues from the transaction's start, at the configured interval."""
        while self.tx_id is None:
            await asyncio.sleep(0.5)
        next_at = self.clock() + self.mv_interval
        while True:
            await asyncio.sleep(max(0.0, next_at - self.clock()))
            self.sample(self.clock())
            next_at += self.mv_interval


class FakeLink:
    """The ``csms.domain.link.StationLink`` of one simulated 1.6 charger, without websockets or OCPP frames."""

    version = "ocpp1.6"

    def __init__(self, charger: SimulatedCharger, stats: dict[str, int]):
        self.charger = charger
        self.id = charger.id
        self.stats = stats
        # The station link protocol after f9e1bf1: set up once booted (the fake is booted from the start), and
        # the commands it answered "not implemented" (none).
        self.ready = asyncio.Event()
        self.ready.set()
        self.unsupported: set[str] = set()

    async def _half_trip(self) -> None:
        await asyncio.sleep(self.charger.cond.rtt / 2)

    async def read_capabilities(self, connector: int) -> Capabilities:
        await self._half_trip()
        ch = self.charger
        raw = {"ChargeProfileMaxStackLevel": "8", "ChargingScheduleAllowedChargingRateUnit": "Current,Power",
               "ChargingScheduleMaxPeriods": "24", "MaxChargingProfilesInstalled": "16",
               "ConnectorPhaseRotation": f"{connector}.{ch.phase_rotation}",
               "MeterValuesSampledData": MEASURANDS, "MeterValueSampleInterval": str(ch.mv_interval)}
        caps = _build(Capabilities, max_stack_level=8, rate_units=("A", "W"), max_periods=24, max_profiles=16,
                      phase_rotation=ch.phase_rotation, phase_switching=False, meter_interval=ch.mv_interval,
                      measurands=MEASURANDS, raw=raw)
        await self._half_trip()
        return caps

    async def configure_metering(self, interval: int, measurands: list[str]) -> Outcome:
        """A charger that refuses an interval faster than its own keeps its own."""
        await self._half_trip()
        ch = self.charger
        ok = interval >= ch.cond.mv_interval
        if ok:
            ch.mv_interval = int(interval)
        self.stats["metering_" + ("accepted" if ok else "refused")] += 1
        await self._half_trip()
        return Outcome.ACCEPTED if ok else Outcome.REJECTED

    async def set_measurands(self, measurands: list[str]) -> Outcome:
        await self._half_trip()
        await self._half_trip()
        return Outcome.ACCEPTED

    async def set_meter_interval(self, interval: int) -> Outcome:
        """A charger that refuses an interval faster than its own keeps its own (the protocol after f9e1bf1)."""
        await self._half_trip()
        ch = self.charger
        ok = interval >= ch.cond.mv_interval
        if ok:
            ch.mv_interval = int(interval)
        self.stats["metering_" + ("accepted" if ok else "refused")] += 1
        await self._half_trip()
        return Outcome.ACCEPTED if ok else Outcome.REJECTED

    async def set_profile(self, spec) -> Outcome:
        await self._half_trip()
        ch = self.charger
        now = ch.clock()
        ch.step(now)  # the physics up to the moment the profile lands
        purpose = _SIM_PURPOSE[str(getattr(spec.purpose, "value", spec.purpose))]
        start = getattr(spec, "start_schedule", None)
        period = Period(0.0, float(spec.limit), getattr(spec, "number_phases", None), getattr(spec, "phase_to_use", None))
        profile = Profile(id=spec.profile_id, stack_level=spec.stack_level, purpose=purpose,
                          kind=Kind.ABSOLUTE if start is not None else Kind.RELATIVE,
                          schedule=Schedule((period,), getattr(spec, "unit", "A"), start, getattr(spec, "duration", None)),
                          connector=spec.connector, valid_to=getattr(spec, "valid_to", None),
                          transaction_id=getattr(spec, "transaction_id", None))
        result = ch.store.set(profile)
        self.stats["profiles_" + ("accepted" if result.accepted else "rejected")] += 1
        ch.step(now)
        await self._half_trip()
        return Outcome.ACCEPTED if result.accepted else Outcome.REJECTED

    async def clear_profile(self, profile_id=None, purpose=None, stack_level=None, connector=None) -> Outcome:
        await self._half_trip()
        sim_purpose = _SIM_PURPOSE[str(getattr(purpose, "value", purpose))] if purpose is not None else None
        gone = self.charger.store.clear(profile_id, connector, sim_purpose, stack_level)
        self.charger.step(self.charger.clock())
        await self._half_trip()
        return Outcome.ACCEPTED if gone else Outcome.UNKNOWN

    async def get_composite(self, connector: int, duration: int, unit: str):
        await self._half_trip()
        ch = self.charger
        comp = ch.store.composite_schedule(connector, ch.clock(), duration, unit, cap=ch.max_current)
        await self._half_trip()
        if not comp.periods:
            return CompositeLimit(None, unit, None)
        first = comp.periods[0]
        return CompositeLimit(first.limit, comp.unit, first.number_phases)

    async def set_availability(self, connector: int, operative: bool) -> Outcome:
        await self._half_trip()
        await self._half_trip()
        return Outcome.ACCEPTED

    # TriggerMessage: not in csms.domain.link's protocol at the baseline; answered only when the condition says so.

    async def trigger_message(self, message: str = "MeterValues", connector: int | None = None, *_, **__) -> Outcome:
        await self._half_trip()
        ch = self.charger
        name = str(getattr(message, "value", message))
        ok = ch.cond.trigger and name in ("MeterValues", "TransactionEvent") and ch.tx_id is not None
        self.stats["triggers_" + ("accepted" if ok else "refused")] += 1
        if ok:
            ch.sample(ch.clock())
        await self._half_trip()
        return Outcome.ACCEPTED if ok else Outcome.REJECTED

    async def trigger_meter_values(self, connector: int | None = None, *_, **__) -> Outcome:
        return await self.trigger_message("MeterValues", connector)


def _build(cls, **kwargs):
    """``cls(**kwargs)`` with only the fields ``cls`` has (older and newer trees differ)."""
    names = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else \
        set(inspect.signature(cls).parameters)
    return cls(**{k: v for k, v in kwargs.items() if k in names})


class _DecisionLog:
    """The controller's DecisionStore: keeps (time, budget per phase) of every decision."""

    def __init__(self) -> None:
        self.budgets: list[tuple[float, dict]] = []

    def record_decision(self, decision) -> None:
        self.budgets.append((getattr(decision, "at", 0.0), dict(getattr(decision, "budget", {}) or {})))


class _SiteClock:
    """What ``simulators.site`` wants of a clock: ``now()`` and a seeded ``rng``."""

    def __init__(self, now: Callable[[], float], seed: int):
        self.now, self.rng = now, random.Random(seed)


def site_config(cond: Condition):
    """The operator config of a condition: shipped defaults everywhere but the site's own facts."""
    ids = [c.charger_id for c in cond.cars]
    return parse_config({
        "organisations": [{"id": "org", "name": "Org"}],
        "meters": [{"serial": METER, "pin": "12345678", "organisation": "org"}],
        "chargers": [{"id": c.charger_id, "password": PASSWORD, "organisation": "org", "phases": 3,
                      "phase_rotation": c.rotation} for c in cond.cars],
        "load_balancers": [{"id": GROUP, "name": "Site", "organisation": "org", "meter": METER, "chargers": ids,
                            "supply_max_current": cond.fuse, "max_current_online": cond.max_current_online,
                            # required, no default; used only while the meter is stale (never, here)
                            "max_current_offline": min(cond.max_current_online, 6.0 * len(ids))}],
    })


# ---- one run ------------------------------------------------------------------------------------------


@dataclass
class Recording:
    t: list[float] = field(default_factory=list)                  # s since start
    phases: list[tuple[float, float, float]] = field(default_factory=list)  # A through the fuse
    draw: dict[str, list[float]] = field(default_factory=dict)    # A per phase each car draws
    offer: dict[str, list[float]] = field(default_factory=dict)   # A per phase each charger applies
    changes: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)  # (t, old, new)


def _outbox_type() -> type | None:
    """The tree's ``DecisionOutbox``: in ``csms.balancer.ports``, in ``csms.balancer.controller`` in older trees,
    or none (the baseline)."""
    try:
        from csms.balancer.ports import DecisionOutbox
    except ImportError:
        return getattr(controller_module, "DecisionOutbox", None)
    return DecisionOutbox


def _wire(cfg, state: SiteState, decisions: "_DecisionLog", clock: Callable[[], float]):
    """The controller and the delivery, wired as ``csms/runtime/app.py`` wires them: the controller's decisions through a
    ``DecisionOutbox`` the delivery opens, the delivery's reports to the controller, both passed in constructors.
    An older tree (the baseline) has no outbox: its delivery is the controller's sink and reports through the
    ``on_control`` attribute."""
    outbox_type = _outbox_type()
    if outbox_type is None:
        delivery = Delivery(cfg, state, clock=clock)
        controller = BalancerController(cfg, state, delivery, decisions, clock)
        delivery.on_control = controller.on_control
        return controller, delivery
    outbox = outbox_type()
    controller = BalancerController(cfg, state, outbox, decisions, clock)
    return controller, Delivery(cfg, state, outbox, controller, clock=clock)


async def _simulate(cond: Condition) -> tuple[Recording, dict]:
    loop = asyncio.get_running_loop()
    clock = lambda: EPOCH + loop.time()  # noqa: E731 - the virtual loop time, as POSIX seconds
    rel = lambda: loop.time()  # noqa: E731
    cfg = site_config(cond)
    state = SiteState()
    decisions = _DecisionLog()
    controller, delivery = _wire(cfg, state, decisions, clock)

    rec = Recording()
    stats: dict[str, int] = dict.fromkeys(
        ["profiles_accepted", "profiles_rejected", "metering_accepted", "metering_refused", "triggers_accepted",
         "triggers_refused", "readings"], 0)

    def on_change(cid: str, t: float, old: float, new: float) -> None:
        rec.changes[cid].append((t - EPOCH, old, new))

    site_clock = _SiteClock(clock, cond.seed)
    base: object = Constant((cond.base,) * 3)
    if cond.step_at is not None:
        base = Steps(((EPOCH + cond.step_at, (cond.base + cond.step_amps,) * 3),), before=(cond.base,) * 3)
    loads = [Noise(base, cond.noise, site_clock) if cond.noise else base]
    chargers = [SimulatedCharger(car, cond, state, clock, on_change) for car in cond.cars]
    site = Site(site_clock, loads, chargers, fuse=cond.fuse, max_history=10)
    for ch in chargers:
        rec.draw[ch.id], rec.offer[ch.id], rec.changes[ch.id] = [], [], []

    def step_all(t: float) -> None:
        for ch in chargers:
            ch.step(t)

    async def meter() -> None:
        k = 1
        while True:
            await asyncio.sleep(max(0.0, k * cond.meter_period - rel()))
            k += 1
            t = clock()
            step_all(t)
            current = tuple(max(-CLAMP_RANGE, min(CLAMP_RANGE, a)) for a in site.metered_currents(t))
            saturated = frozenset(p for p, a in zip((1, 2, 3), current) if abs(a) >= CLAMP_RANGE * 0.995)
            reading = tuple(round(a, 2) for a in current)
            stats["readings"] += 1
            loop.call_later(cond.meter_latency, controller.on_reading, METER, reading, saturated, t)

    async def recorder() -> None:
        k = 0
        while True:
            await asyncio.sleep(max(0.0, k * cond.record_every - rel()))
            t = clock()
            step_all(t)
            rec.t.append(t - EPOCH)
            rec.phases.append(site.phase_currents(t))
            for ch in chargers:
                rec.draw[ch.id].append(max(ch.current))
                rec.offer[ch.id].append(ch.offered if ch.tx_id is not None else float("nan"))
            k += 1

    async def station(ch: SimulatedCharger, i: int, car: Car) -> None:
        await asyncio.sleep(0.5 + 0.1 * i)
        t = clock()
        state.connected(ch.id, Version.V16, t)
        delivery.attach(FakeLink(ch, stats))
        ch.uplink(lambda: state.booted(ch.id, BootInfo("Sim", "ControlQuality", ch.id, "1.0"), t))
        ch.uplink(lambda: state.status(ch.id, 0, "Available", None, t))
        ch.uplink(lambda: state.status(ch.id, 1, "Available", None, t))
        await asyncio.sleep(max(0.0, car.plug_at - rel()))
        half = cond.ev_response / 2
        ev = LaggingEV(max_current=car.max_current, phases=car.ev_phases, ramp_delay=half, ramp_time=half,
                       name=f"EV{i + 1}")
        ev.instant_decrease = cond.instant_decrease
        ch.plug_in(clock(), ev, 1001 + i)
        await ch.sampler()

    await controller.start()
    if hasattr(controller, "on_meter_state"):
        controller.on_meter_state(METER, True)
    tasks = [asyncio.create_task(meter()), asyncio.create_task(recorder())]
    tasks += [asyncio.create_task(station(ch, i, car)) for i, (ch, car) in enumerate(zip(chargers, cond.cars))]
    try:
        await asyncio.sleep(cond.duration + 1e-6)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await controller.stop()
        await delivery.stop()
    stats["decisions"] = len(decisions.budgets)
    stats["mv_interval_effective"] = max(ch.mv_interval for ch in chargers)
    return rec, stats


def simulate(cond: Condition) -> tuple[Recording, dict]:
    """Runs one condition on a virtual-clock event loop; returns what the site carried and some counters."""
    from aiotools import VirtualClock

    async def main() -> tuple[Recording, dict]:
        with VirtualClock().patch_loop():
            return await _simulate(cond)

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(main())


# ---- figures ------------------------------------------------------------------------------------------


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def figures(cond: Condition, rec: Recording) -> dict:
    """Every figure of the report, from the recorded site physics."""
    ref = min(cond.fuse, cond.max_current_online)
    end = cond.duration
    excluded = (cond.step_at, cond.step_at + cond.transient) if cond.step_at is not None else None

    def steady(t: float) -> bool:
        return t >= cond.warmup and not (excluded and excluded[0] <= t < excluded[1])

    idx = [i for i, t in enumerate(rec.t) if steady(t)]
    # Utilisation: the most loaded phase, and (for sites whose phases each carry their own cars) the least.
    util = _mean([max(rec.phases[i]) / ref * 100 for i in idx])
    util_phase = [_mean([rec.phases[i][p] / ref * 100 for i in idx]) for p in range(3)]
    # EV spread among equal cars that are charging (a paused car is rotation's business, not the share's),
    # averaged over the settled window (and its worst moment).
    groups: dict[str, list[str]] = {}
    for car in cond.cars:
        if car.equal is not None:
            groups.setdefault(car.equal, []).append(car.charger_id)
    spreads = []
    for i in idx:
        worst = 0.0
        for ids in groups.values():
            if len(ids) > 1:
                vals = [rec.draw[c][i] for c in ids if rec.draw[c][i] >= 1.0]
                if len(vals) > 1:
                    worst = max(worst, max(vals) - min(vals))
        spreads.append(worst)
    # Limit changes per charger-minute and pauses (limit falls below the EV minimum while a session runs).
    window_min = len(idx) * cond.record_every / 60.0
    fit_until = cond.step_at if cond.step_at is not None else math.inf  # site D: all fit only before the step
    changes = pauses = pauses_fit = pauses_total = 0
    for cid, evs in rec.changes.items():
        for t, old, new in evs:
            paused = old >= 6.0 > new
            if steady(t):
                changes += 1
                pauses += paused
                pauses_fit += paused and t < fit_until
            pauses_total += paused
    n_sessions = len(cond.cars)
    # A·s above the fuse (all phases added), trapezoid over the 0.1 s recording.
    def overload(i: int) -> float:
        return sum(max(0.0, a - cond.fuse) for a in rec.phases[i])

    as_total = as_steady = 0.0
    for i in range(1, len(rec.t)):
        dt = rec.t[i] - rec.t[i - 1]
        area = (overload(i - 1) + overload(i)) / 2 * dt
        as_total += area
        if steady(rec.t[i - 1]) and steady(rec.t[i]):
            as_steady += area
    out = {
        "util_pct": util,
        "util_phase_pct": util_phase,
        "util_min_phase_pct": min(util_phase) if idx else float("nan"),
        "spread_a": _mean(spreads),
        "spread_max_a": max(spreads, default=float("nan")),
        "changes_per_charger_min": changes / (n_sessions * window_min) if window_min else float("nan"),
        "pauses": pauses,
        "pauses_while_fit": pauses_fit,
        "pauses_total": pauses_total,
        "overload_as_steady": as_steady,
        "overload_as_total": as_total,
        "peak_phase_a": max((max(p) for p in rec.phases), default=float("nan")),
        "settled_window_s": [cond.warmup, end],
    }
    if cond.share_window is not None:
        a, b = cond.share_window
        sidx = [i for i, t in enumerate(rec.t) if a <= t < b]
        out["charging_share_pct"] = {c: 100.0 * sum(1 for i in sidx if rec.draw[c][i] >= 1.0) / max(1, len(sidx))
                                     for c in rec.draw}
    if cond.step_at is not None:
        t0, t1 = cond.step_at, cond.step_at + cond.transient
        above = [t for t, p in zip(rec.t, rec.phases) if t0 <= t < t1 and max(p) > cond.fuse + 1e-9]
        out["back_under_s"] = (above[-1] + cond.record_every - t0) if above else 0.0
        out["back_under_capped"] = bool(above) and above[-1] >= t1 - 2 * cond.record_every
        out["overload_as_step"] = sum(
            (overload(i - 1) + overload(i)) / 2 * (rec.t[i] - rec.t[i - 1])
            for i in range(1, len(rec.t)) if t0 <= rec.t[i - 1] and rec.t[i] <= t1)
    return out


def trace(rec: Recording, every: float = 0.5) -> dict:
    """The phase currents decimated to one point every ``every`` s, for plotting."""
    step = max(1, round(every / (rec.t[1] - rec.t[0]))) if len(rec.t) > 1 else 1
    return {"t": rec.t[::step], "phases": [list(p) for p in rec.phases[::step]]}


def run_condition(cond: Condition) -> dict:
    rec, stats = simulate(cond)
    out = figures(cond, rec)
    out["stats"] = stats
    if cond.trace:
        out["trace"] = trace(rec)
    out["_recording"] = rec
    return out


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
