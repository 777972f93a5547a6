"""From a time series of mains readings to what one released charger did to each meter phase.

A step is read as *plateau minus baseline*: the median of the readings just before the release (every charger
held) and of those at the end of the release (the car has followed its limit). Medians, so that one reading
taken in the middle of an appliance switching does not decide the verdict. Time is an input.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from .model import MainsSample, Phases, Step, StepMeasure

#: Seconds of readings before a release that make its baseline, and at the end of a release its plateau.
BASELINE_WINDOW = 3.0
PLATEAU_WINDOW = 2.0
#: A change smaller than this (A) on every phase is no change: base-load flicker and the meter's class-1 error.
NOISE_A = 1.5
NOMINAL_VOLTS = 230.0


def _median(values: Sequence[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return statistics.median(real) if real else None


def phase_medians(samples: Sequence[MainsSample]) -> Phases:
    a, b, c = (_median([s.current[i] for s in samples]) for i in range(3))
    return (a, b, c)


def settled_peak(samples: Sequence[MainsSample]) -> float:
    """The highest current a baseline shows on a phase, by the phase's median: what the next release adds to
    (one reading of the previous car still ramping down must not leave "no room under the fuse")."""
    return max((abs(v) for v in phase_medians(samples) if v is not None), default=0.0)


def window(samples: Sequence[MainsSample], since: float, until: float) -> list[MainsSample]:
    """Readings taken in [since, until]."""
    return [s for s in samples if since <= s.at <= until]


def baseline(samples: Sequence[MainsSample], before: float, span: float = BASELINE_WINDOW) -> list[MainsSample]:
    """The readings of the ``span`` s before ``before`` (at least the last one before it, if any)."""
    picked = [s for s in samples if before - span <= s.at < before]
    if not picked:
        earlier = [s for s in samples if s.at < before]
        picked = earlier[-1:]
    return picked


def measure_step(samples: Sequence[MainsSample], step: Step, *, baseline_window: float = BASELINE_WINDOW,
                 plateau_window: float = PLATEAU_WINDOW) -> StepMeasure | None:
    """What ``step`` changed on each meter phase; None when there is no reading before or during it."""
    ordered = sorted(samples, key=lambda s: s.at)
    before = baseline(ordered, step.released_at, baseline_window)
    during = [s for s in window(ordered, step.held_at - plateau_window, step.held_at) if s.at > step.released_at]
    if not before or not during:
        return None
    base, top = phase_medians(before), phase_medians(during)
    delta = tuple(None if b is None or t is None else t - b for b, t in zip(base, top))
    p0, p1 = _median([s.power for s in before]), _median([s.power for s in during])
    volts = _median([v for s in during for v in s.voltage])
    return StepMeasure(
        charger_id=step.charger_id, delta=delta, delta_power=None if p0 is None or p1 is None else p1 - p0,
        volts=volts if volts is not None and volts > 50 else NOMINAL_VOLTS,
        latency=_latency(ordered, step, base, delta), drawn=step.drawn,
        baseline_readings=len(before), plateau_readings=len(during))


def _latency(samples: Sequence[MainsSample], step: Step, base: Phases, delta: Phases) -> float | None:
    """Seconds from the release to the first reading showing half of the biggest change."""
    moved = [(abs(d), i) for i, d in enumerate(delta) if d is not None and base[i] is not None]
    if not moved:
        return None
    size, i = max(moved)
    if size < NOISE_A:
        return None
    for s in samples:
        value = s.current[i]
        if step.released_at < s.at <= step.held_at and value is not None and \
                abs(value - base[i]) >= size / 2:  # type: ignore[operator]
            return s.at - step.released_at
    return None


def is_settled(samples: Sequence[MainsSample], since: float, now: float, *, quiet: float = 1.5,
               reference: Phases | None = None, moved: float = NOISE_A, tolerance: float = 0.5) -> bool:
    """Whether the mains have come to rest after ``since``: readings in the last ``quiet`` s (at least two) agree
    within ``tolerance`` A per phase, and, given a ``reference`` (the baseline), differ from it by ``moved`` A on
    some phase. The orchestrator stops waiting for a car once this holds (a car takes 1-5 s, IEC 61851)."""
    recent = [s for s in samples if max(since, now - quiet) <= s.at <= now]
    if len(recent) < 2 or now - since < quiet:
        return False
    for i in range(3):
        values = [s.current[i] for s in recent if s.current[i] is not None]
        if values and max(values) - min(values) > tolerance:
            return False
    if reference is None:
        return True
    last = recent[-1].current
    return any(r is not None and v is not None and abs(v - r) >= moved for r, v in zip(reference, last))
