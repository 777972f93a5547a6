"""Which wiring explains what the mains did when each charger was released alone.

Each released charger draws on the building phases its rotation puts its car's phases on; the meter shows that
on its own terminals, through whatever is wrong with its clamps. The check tries every explanation - each clamp
the right way round or reversed, the clamps on their own phases or permuted, each charger on its configured
rotation or another - and keeps the simplest that fits every step (fewest faults, as an installer would reason):

* **sign first**: a clamp that shows a *fall* when a car starts is reversed (a car only ever adds current);
* **meter phases**: a permutation of the meter's phases that every charger agrees on is the meter's (clamps on
  other phases than their terminals), one that only one charger needs is that charger's rotation. When the meter
  gives its total power, a clamp 120° away from its voltage terminal shows as power factor -0.5 on its current,
  which tells a swapped clamp from swapped chargers even with balanced 3-phase cars;
* **rotation**: seen only on the phases a car draws unequally on (a 1-phase car shows where the charger's L1
  lands; a balanced 3-phase draw shows nothing about it), so unseen letters stay '?';
* **seen at all**: a charger that reports drawing while the mains do not move is not behind the clamps.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence

from .measure import NOISE_A
from .model import (ROTATIONS, ChargerResult, ChargerWiring, Finding, SiteWiring, StepMeasure, Untested,
                    Verdict)
from . import report as words

#: A phase counts as moved by a step when it moved at least this share of the step's biggest change.
RELATIVE = 0.3
#: How far a normalised observed pattern may be from the predicted one and still fit.
FIT_TOLERANCE = 0.35
#: A charger reporting at least this much (A) is drawing.
MIN_DRAW_A = 2.0
UNKNOWN_ROTATIONS = ("Unknown", "NotApplicable", "")

Perm = dict[int, int]  # meter phase -> building phase its clamp measures


def significant(delta: Sequence[float | None]) -> dict[int, float]:
    """Meter phases (1..3) a step moved, with their signed change; empty when nothing moved beyond noise."""
    vals = {m: d for m, d in enumerate(delta, 1) if d is not None}
    top = max((abs(d) for d in vals.values()), default=0.0)
    if top < NOISE_A:
        return {}
    return {m: d for m, d in vals.items() if abs(d) >= max(NOISE_A, RELATIVE * top)}


def car_patterns(ch: ChargerWiring, drawn: Sequence[float | None] | None) -> tuple[dict[int, float], ...]:
    """The charger phases (1..3) the car may have drawn on, relative to its biggest: from its own meter values
    when it sent any; else each way a car can draw (IEC 61851: a 1-phase car on the charger's L1, a 2-phase car
    on L1 and L2, a 3-phase car on all), since a charger that refuses TriggerMessage or answers late still has
    a car of one of these kinds."""
    if drawn is not None:
        vals = {i: a for i, a in enumerate(drawn, 1) if a is not None and i <= ch.phases}
        top = max(vals.values(), default=0.0)
        if top >= MIN_DRAW_A:
            return ({i: a / top for i, a in vals.items() if a >= RELATIVE * top},)
    return tuple({i: 1.0 for i in range(1, n + 1)} for n in range(ch.phases, 0, -1))


def step_fits(m: StepMeasure, ch: ChargerWiring, rotation: str, perm: Perm, signs: dict[int, int],
              measured: Sequence[int]) -> bool:
    """Whether some car the charger may have had, on ``rotation``, explains step ``m``."""
    return any(fits(m, pattern, rotation, perm, signs, measured) for pattern in car_patterns(ch, m.drawn))


def drew(m: StepMeasure) -> bool | None:
    """Whether the charger says its car drew (None: it sent no sample while released)."""
    if m.drawn is None:
        return None
    return max((a for a in m.drawn if a is not None), default=0.0) >= MIN_DRAW_A


def predicted(pattern: dict[int, float], rotation: str, perm: Perm, measured: Sequence[int]) -> dict[int, float]:
    """What each measured meter phase should show (relative) for a car ``pattern`` on ``rotation``."""
    building = {1: 0.0, 2: 0.0, 3: 0.0}
    for i, share in pattern.items():
        building["RST".index(rotation[i - 1]) + 1] += share
    return {m: building[perm[m]] for m in measured}


def fits(m: StepMeasure, pattern: dict[int, float], rotation: str, perm: Perm, signs: dict[int, int],
         measured: Sequence[int]) -> bool:
    observed = {p: max(0.0, signs[p] * (m.delta[p - 1] or 0.0)) for p in measured}
    top_o = max(observed.values(), default=0.0)
    pred = predicted(pattern, rotation, perm, measured)
    top_p = max(pred.values(), default=0.0)
    if top_o <= 0 or top_p <= 0:
        return False
    return all(abs(observed[p] / top_o - pred[p] / top_p) <= FIT_TOLERANCE for p in measured)


def power_fits(m: StepMeasure, perm: Perm, measured: Sequence[int]) -> bool:
    """Whether the meter's power change matches its current change with the clamps as ``perm`` puts them: a
    clamp on its own phase sees its current in phase with its voltage, one on another phase 120° off
    (power factor -0.5). A reversed clamp changes the sign of both, so it never shows here."""
    if m.delta_power is None:
        return True
    amps = {p: m.delta[p - 1] or 0.0 for p in measured}
    expected = m.volts * sum(a * (1.0 if perm[p] == p else -0.5) for p, a in amps.items())
    return abs(m.delta_power - expected) <= max(250.0, 0.2 * m.volts * sum(abs(a) for a in amps.values()))


def permutations(measured: Sequence[int]) -> list[Perm]:
    """Every way the measured clamps can sit on the measured phases, the right one first."""
    return [dict(zip(measured, p)) for p in itertools.permutations(measured)]


def moved(perm: Perm) -> int:
    """How many faults a permutation is: 0 right, 1 two clamps swapped, 2 all three rotated."""
    return max(0, sum(1 for m, b in perm.items() if m != b) - 1)


def _rotations_fitting(ch: ChargerWiring, steps: list[StepMeasure], perm: Perm, signs: dict[int, int],
                       measured: Sequence[int]) -> list[str]:
    return [r for r in ROTATIONS
            if all(step_fits(m, ch, r, perm, signs, measured) for m in steps)]


def _cost(wiring: SiteWiring, seen: dict[str, list[StepMeasure]], perm: Perm, signs: dict[int, int],
          measured: Sequence[int]) -> int:
    cost = moved(perm)
    for cid, steps in seen.items():
        ch = wiring.charger(cid)
        fitting = _rotations_fitting(ch, steps, perm, signs, measured)
        cost += 0 if ch.rotation in fitting else (1 if fitting else 2)
        cost += sum(1 for m in steps if not power_fits(m, perm, measured))
    return cost


def _observed_rotation(fitting: list[str], ch: ChargerWiring, steps: list[StepMeasure]) -> str | None:
    if not fitting:
        return None
    letters = []
    for i in range(3):
        options = {r[i] for r in fitting}
        letters.append(options.pop() if len(options) == 1 and i < ch.phases else "?")
    return "".join(letters)


def _best_rotation(fitting: list[str], ch: ChargerWiring) -> str:
    """The rotation to configure: the charger's own report if it fits, else the one closest to the config."""
    if ch.reported_rotation in fitting:
        return ch.reported_rotation  # type: ignore[return-value]
    return max(fitting, key=lambda r: (sum(a == b for a, b in zip(r, ch.rotation)), r == ch.rotation))


def infer(wiring: SiteWiring, measures: Sequence[StepMeasure], untested: Sequence[Untested] = (),
          reading_delay: float | None = None) -> Verdict:
    """The findings that the steps' ``measures`` prove against ``wiring``."""
    measured = tuple(p for p in wiring.meter_phases if p in (1, 2, 3))
    results: dict[str, ChargerResult] = {u.charger_id: ChargerResult(u.charger_id, False, u.reason)
                                         for u in untested}
    findings: list[Finding] = []
    seen: dict[str, list[StepMeasure]] = {}
    unseen: list[StepMeasure] = []
    for m in measures:
        if significant(m.delta):
            seen.setdefault(m.charger_id, []).append(m)
        elif drew(m):
            unseen.append(m)
        else:
            reason = ("its car drew nothing when released (the charger reports under "
                      f"{MIN_DRAW_A:g} A) and the mains did not move" if m.drawn is not None else
                      "the mains did not move when it was released and it sent no meter values to tell whether "
                      "its car drew: check that a car is plugged in and charging")
            results[m.charger_id] = ChargerResult(m.charger_id, False, reason, m.delta, m.drawn)
    findings += words.measurement_findings(wiring, seen, unseen)
    for m in unseen:
        results[m.charger_id] = ChargerResult(
            m.charger_id, True, "", m.delta, m.drawn, None, (), wiring.charger(m.charger_id).rotation,
            wiring.charger(m.charger_id).reported_rotation, None)

    # Signs: a car only ever adds current, so a clamp that mostly shows falls is reversed.
    signs = {p: 1 for p in (1, 2, 3)}
    votes: dict[int, list[tuple[str, float]]] = {p: [] for p in measured}
    for cid, steps in seen.items():
        for m in steps:
            for p, d in significant(m.delta).items():
                if p in votes:
                    votes[p].append((f"{cid} {m.what}", d))
    for p, vs in votes.items():
        if vs and sum(1 for _, d in vs if d < 0) > len(vs) / 2:
            signs[p] = -1
            findings.append(words.reversed_clamp(wiring, p, vs))

    # Meter permutation and rotations: the simplest explanation of every seen step.
    perms = permutations(measured)
    costs = [(_cost(wiring, seen, perm, signs, measured), moved(perm), i) for i, perm in enumerate(perms)]
    best_cost = min(costs)[0] if costs else 0
    best = [perms[i] for c, _, i in sorted(costs) if c == best_cost]
    perm = best[0] if best else {p: p for p in measured}
    if moved(perm) and all(moved(b) for b in best):
        findings.append(words.meter_swapped(wiring, best, seen, signs))
    for cid, steps in seen.items():
        ch = wiring.charger(cid)
        fitting = _rotations_fitting(ch, steps, perm, signs, measured)
        observed = _observed_rotation(fitting, ch, steps)
        phases_seen = tuple(sorted({p for m in steps for p in significant(m.delta)}))
        latency = [m.latency for m in steps if m.latency is not None]
        results[cid] = ChargerResult(cid, True, "", steps[-1].delta, steps[-1].drawn,
                                     min(latency) if latency else None, phases_seen, ch.rotation,
                                     ch.reported_rotation, observed)
        if not fitting:
            findings.append(words.unexplained(ch, steps, signs))
        elif ch.rotation not in fitting:
            findings.append(words.wrong_rotation(ch, steps, _best_rotation(fitting, ch), observed or "???"))
        elif ch.phases == 3 and ch.reported_rotation not in (None, *UNKNOWN_ROTATIONS) \
                and ch.reported_rotation != ch.rotation:
            findings.append(words.reported_rotation(ch, observed or "???",
                                                    contradicted=ch.reported_rotation not in fitting))
    latencies = [m.latency for steps in seen.values() for m in steps if m.latency is not None]
    median = statistics.median(latencies) if latencies else None
    slowest = max(latencies) if latencies else None
    if slowest is not None and slowest > wiring.expected_response:
        findings.append(words.slow_meter(wiring, latencies))
    order = {c.id: i for i, c in enumerate(wiring.chargers)}
    chargers = tuple(sorted(results.values(), key=lambda r: order.get(r.id, len(order))))
    return Verdict(tuple(findings), chargers, median, slowest, reading_delay, signs, perm)
