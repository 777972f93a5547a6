"""How long one allocation takes, for one big group and for many small ones.

Run: ``python bench/bench_allocation.py``. Prints the median and worst time of ``allocate`` for one group
of 10, 100, 1,000 and 10,000 chargers (target: 10,000 in under 20 ms), in two situations: plenty of
capacity (everyone charges, no sorting needed) and congestion (some sessions must be paused, so the
rotation order is sorted). For the water-fill at its heart it compares, on the same sessions, the
class-based fill the allocation uses (:func:`csms.balancer.waterfill.fill`) with a baseline: the
textbook progressive filling one charger at a time (a sort plus a pass per charger). Then it prints
allocations per second for 1,000 groups of 10 chargers.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csms.balancer import (  # noqa: E402
    BalancerMemory,
    ChargerInput,
    ChargerSpec,
    ControlState,
    GroupSpec,
    MeterInput,
    allocate,
)
from csms.balancer import waterfill  # noqa: E402
from csms.balancer.grid import floor_step  # noqa: E402

ROTATIONS = [(1, 2, 3), (2, 3, 1), (3, 1, 2)]
#: Epoch-like start time; every charger's own sample is taken then, and runs follow one a second.
T0 = 1.7e9


def make_group(n: int, per_charger_a: float, seed: int = 1) -> tuple[GroupSpec, MeterInput, list[ChargerInput]]:
    """A group of n chargers: 80 % in session, a quarter 1-phase, some 1-phase EVs, a few not controlled."""
    rnd = random.Random(seed)
    supply = max(40.0, n * per_charger_a)
    group = GroupSpec("bench", (1, 2, 3), supply, supply, supply / 2, clamp_range_a=None)
    chargers = []
    for i in range(n):
        wired = ROTATIONS[i % 3] if i % 4 else (ROTATIONS[i % 3][0],)
        spec = ChargerSpec(f"CP{i:05d}", rnd.choice([16.0, 32.0]), wired, 6.0, wired[0])
        session = rnd.random() < 0.8
        control = ControlState.CONTROLLED if rnd.random() < 0.97 else rnd.choice(list(ControlState))
        in_use = (wired[0],) if len(wired) == 3 and rnd.random() < 0.2 else None
        # Cars draw up to what a fair share would be, so that the mains reading stays plausible.
        draw = {p: rnd.uniform(0, min(16.0, per_charger_a)) for p in (in_use or wired)} if session else {}
        chargers.append(ChargerInput(spec, control is not ControlState.DISCONNECTED_UNKNOWN, session, control,
                                     16.0, draw, T0, in_use))
    # The mains meter sees the other load (30-40 % of the supply) plus the chargers' own draw.
    own = {1: 0.0, 2: 0.0, 3: 0.0}
    for c in chargers:
        for p, a in c.draw.items():
            own[p] += a
    meter = MeterInput(T0, {p: supply * f + own[p] for p, f in ((1, 0.4), (2, 0.35), (3, 0.3))})
    return group, meter, chargers


def time_runs(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, max(times) * 1e3


def baseline_fill(available: dict[int, float], sessions: list[tuple[tuple[int, ...], float]]) -> list[float]:
    """Progressive filling charger by charger: the per-charger O(n log n) version without classes."""
    order = sorted(range(len(sessions)), key=lambda i: sessions[i][1])
    load = dict.fromkeys(available, 0.0)
    rising = dict.fromkeys(available, 0)
    for phases, _ in sessions:
        for p in phases:
            rising[p] += 1
    out = [0.0] * len(sessions)
    frozen = [False] * len(sessions)
    k = 0
    while k < len(order):
        i = order[k]
        if frozen[i]:
            k += 1
            continue
        full_p, full_lvl = None, float("inf")
        for p, n in rising.items():
            if n and (lvl := (available[p] - load[p]) / n) < full_lvl:
                full_p, full_lvl = p, lvl
        phases, cap = sessions[i]
        if cap <= full_lvl:
            out[i], frozen[i] = cap, True
            for p in phases:
                load[p] += cap
                rising[p] -= 1
            k += 1
        else:
            for j, (ph, _) in enumerate(sessions):
                if not frozen[j] and full_p in ph:
                    out[j], frozen[j] = floor_step(full_lvl), True
                    for p in ph:
                        load[p] += full_lvl
                        rising[p] -= 1
    return out


def class_fill(available: dict[int, float], sessions: list[tuple[tuple[int, ...], float]]) -> list[float]:
    """The allocation's way: count sessions per (phase set, cap), fill the classes, read each one's share."""
    classes: dict[tuple[int, ...], dict[float, int]] = {}
    for phases, cap in sessions:
        counts = classes.setdefault(phases, {})
        counts[cap] = counts.get(cap, 0) + 1
    levels = waterfill.fill(available, classes)
    return [floor_step(min(cap, levels[phases][0])) for phases, cap in sessions]


def main() -> None:
    print(f"python {sys.version.split()[0]}; times in ms, median / worst of repeated runs")
    print(f"{'chargers':>9} {'situation':>10} {'paused':>7} | {'allocate':>15} | {'fill: classes':>15} "
          f"{'per charger (baseline)':>24}")
    for n in (10, 100, 1_000, 10_000):
        repeat = 100 if n <= 1000 else 30
        for situation, per_charger in (("plenty", 40.0), ("congested", 4.0)):
            group, meter, chargers = make_group(n, per_charger)
            memory = BalancerMemory()
            now = [T0]

            def run():
                # A fresh reading every second; the chargers' own samples are those of make_group.
                now[0] += 1.0
                allocate(group, MeterInput(now[0], meter.current), chargers, now[0], memory)

            med, worst = time_runs(run, repeat)
            last = allocate(group, MeterInput(now[0], meter.current), chargers, now[0], memory)
            paused = sum(lim.reason.startswith("paused") for lim in last.limits.values())
            sessions = [(c.phases_in_use or c.spec.phases_wired, floor_step(c.spec.max_current))
                        for c in chargers if c.session_active]
            avail = dict.fromkeys((1, 2, 3), group.supply_max_current / 2)
            assert max(abs(a - b) for a, b in zip(class_fill(avail, sessions), baseline_fill(avail, sessions))) < 0.11
            cmed, cworst = time_runs(lambda: class_fill(avail, sessions), repeat)
            bmed, bworst = time_runs(lambda: baseline_fill(avail, sessions), max(3, repeat // 10))
            flag = ("  < 20 ms target: met" if med < 20 else "  < 20 ms target: MISSED") if n == 10_000 else ""
            print(f"{n:>9} {situation:>10} {paused:>7} | {med:>6.2f} / {worst:>6.2f} | {cmed:>6.2f} / {cworst:>6.2f} "
                  f"{bmed:>13.2f} / {bworst:>6.2f}{flag}")
    groups = [make_group(10, 8.0, seed=s) for s in range(1000)]
    memories = [BalancerMemory() for _ in groups]
    t0 = time.perf_counter()
    rounds = 5
    for r in range(rounds):
        for (group, meter, chargers), memory in zip(groups, memories):
            allocate(group, MeterInput(T0 + r, meter.current), chargers, T0 + r, memory)
    elapsed = time.perf_counter() - t0
    print(f"1,000 groups of 10 chargers: {rounds * len(groups) / elapsed:,.0f} allocations/s "
          f"({elapsed / rounds * 1e3:.1f} ms per pass over all groups)")


if __name__ == "__main__":
    main()
