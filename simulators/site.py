"""Site physics: what the building's main fuse sees, phase by phase.

Building phase current = the other loads of the building (each a :class:`Load` over time) + the draw of
every simulated charger behind the meter, mapped from the charger's own L1..L3 to building phases
through its phase rotation (R=L1, S=L2, T=L3, as ``csms.config.charger_phases``). A :class:`Site`
records what it computes so a test can assert "never above the fuse" and integrate overloads in A·s.

Loads are pure functions of clock time; noise comes from the clock's seeded generator, so a scenario
run twice gives the same currents.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from simulators.clock import SimClock

Phases = tuple[float, float, float]


class Load(Protocol):
    def current(self, t: float) -> Phases:
        """A per building phase at clock time ``t`` (negative = export)."""


class DrawSource(Protocol):
    """Anything with a per-phase draw and a phase rotation: a SimCharger, or a stand-in in tests."""

    phase_rotation: str

    def draw(self) -> Phases: ...


@dataclass(frozen=True)
class Constant:
    amps: Phases

    def current(self, t: float) -> Phases:
        return self.amps


@dataclass(frozen=True)
class Steps:
    """Piecewise-constant load: ``steps`` are (clock time, amps) sorted by time; before the first, ``before``."""

    steps: tuple[tuple[float, Phases], ...]
    before: Phases = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        times = [t for t, _ in self.steps]
        if times != sorted(times):
            raise ValueError("Steps: times must be in increasing order")

    def current(self, t: float) -> Phases:
        i = bisect.bisect_right([s for s, _ in self.steps], t)
        return self.before if i == 0 else self.steps[i - 1][1]


@dataclass(frozen=True)
class DailyCurve:
    """A load that follows the time of day (UTC + ``utc_offset_h``): (hour, amps) points, linearly
    interpolated and wrapping around midnight."""

    points: tuple[tuple[float, Phases], ...]
    utc_offset_h: float = 0.0

    def current(self, t: float) -> Phases:
        hour = ((t / 3600.0) + self.utc_offset_h) % 24.0
        pts = sorted(self.points)
        hours = [h for h, _ in pts]
        i = bisect.bisect_right(hours, hour)
        (h0, a0), (h1, a1) = pts[i - 1], pts[i % len(pts)]
        span = (h1 - h0) % 24.0 or 24.0
        f = ((hour - h0) % 24.0) / span
        return tuple(x + (y - x) * f for x, y in zip(a0, a1))  # type: ignore[return-value]


@dataclass(frozen=True)
class Solar:
    """PV export: a half-sine between sunrise and sunset (hours, local), ``peak`` A per phase at noon,
    on ``phases`` (building phases 1..3), negative because it flows out to the grid."""

    peak: float
    sunrise: float = 7.0
    sunset: float = 19.0
    phases: tuple[int, ...] = (1, 2, 3)
    utc_offset_h: float = 0.0
    #: A cloud factor 0..1 over time (None = clear sky).
    clouds: Load | None = None

    def current(self, t: float) -> Phases:
        hour = ((t / 3600.0) + self.utc_offset_h) % 24.0
        if not self.sunrise < hour < self.sunset:
            return (0.0, 0.0, 0.0)
        a = self.peak * math.sin(math.pi * (hour - self.sunrise) / (self.sunset - self.sunrise))
        if self.clouds is not None:
            a *= 1.0 - self.clouds.current(t)[0]
        return tuple(-a if p + 1 in self.phases else 0.0 for p in range(3))  # type: ignore[return-value]


@dataclass
class Noise:
    """Adds seeded random jitter (uniform ±``amplitude`` A) to another load, redrawn every ``every`` s."""

    load: Load
    amplitude: float
    clock: SimClock
    every: float = 1.0
    _cache: dict[int, Phases] = field(default_factory=dict)

    def current(self, t: float) -> Phases:
        slot = int(t // self.every)
        if slot not in self._cache:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[slot] = tuple(self.clock.rng.uniform(-self.amplitude, self.amplitude) for _ in range(3))
        base = self.load.current(t)
        return tuple(b + n for b, n in zip(base, self._cache[slot]))  # type: ignore[return-value]


def to_building(draw: Phases, rotation: str) -> Phases:
    """Charger phases L1..L3 onto building phases through ``rotation`` (e.g. 'STR': L1 on S=2, L2 on T=3...)."""
    out = [0.0, 0.0, 0.0]
    for i, letter in enumerate(rotation):
        out["RST".index(letter)] += draw[i]
    return (out[0], out[1], out[2])


@dataclass(frozen=True)
class Record:
    t: float
    phases: Phases


@dataclass
class Site:
    """The building: loads plus chargers behind the meter, sampled on the shared clock.

    ``chargers_behind_meter`` False models a site whose chargers are wired before the meter's clamps
    (the meter then sees only the other loads), matching ``chargers_in_measurement`` in the config.
    """

    clock: SimClock
    loads: list[Load] = field(default_factory=list)
    chargers: list[DrawSource] = field(default_factory=list)
    fuse: float = 63.0
    voltage: Phases = (230.0, 230.0, 230.0)
    chargers_behind_meter: bool = True
    history: list[Record] = field(default_factory=list)
    max_history: int = 1_000_000

    def other_loads(self, t: float) -> Phases:
        total = [0.0, 0.0, 0.0]
        for load in self.loads:
            for i, a in enumerate(load.current(t)):
                total[i] += a
        return (total[0], total[1], total[2])

    def charger_currents(self) -> Phases:
        total = [0.0, 0.0, 0.0]
        for c in self.chargers:
            for i, a in enumerate(to_building(c.draw(), c.phase_rotation)):
                total[i] += a
        return (total[0], total[1], total[2])

    def phase_currents(self, now: float | None = None) -> Phases:
        """What flows through the main fuse now (A per building phase)."""
        now = self.clock.now() if now is None else now
        base, evs = self.other_loads(now), self.charger_currents()
        return (base[0] + evs[0], base[1] + evs[1], base[2] + evs[2])

    def metered_currents(self, now: float | None = None) -> Phases:
        """What the mains meter's clamps measure (excludes chargers wired before the meter)."""
        now = self.clock.now() if now is None else now
        return self.phase_currents(now) if self.chargers_behind_meter else self.other_loads(now)

    def record(self, now: float | None = None) -> Record:
        now = self.clock.now() if now is None else now
        rec = Record(now, self.phase_currents(now))
        if len(self.history) >= self.max_history:
            del self.history[: self.max_history // 10]
        self.history.append(rec)
        return rec

    # ---- what tests assert on the recording ------------------------------------------------------

    def peak(self) -> Phases:
        if not self.history:
            return (0.0, 0.0, 0.0)
        return tuple(max(r.phases[i] for r in self.history) for i in range(3))  # type: ignore[return-value]

    def overload_integral(self, limit: float | None = None) -> Phases:
        """A·s above ``limit`` (default the fuse) per phase, trapezoid rule over the recorded samples."""
        limit = self.fuse if limit is None else limit
        out = [0.0, 0.0, 0.0]
        for a, b in zip(self.history, self.history[1:]):
            dt = b.t - a.t
            for i in range(3):
                out[i] += (max(0.0, a.phases[i] - limit) + max(0.0, b.phases[i] - limit)) / 2 * dt
        return (out[0], out[1], out[2])

    def never_above(self, limit: float | None = None) -> bool:
        limit = self.fuse if limit is None else limit
        return all(max(r.phases) <= limit + 1e-9 for r in self.history)


def power(currents: Sequence[float], voltages: Sequence[float]) -> float:
    """Total active power (W) at unity power factor; signs follow the currents."""
    return sum(i * v for i, v in zip(currents, voltages))
