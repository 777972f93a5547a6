"""The passive correlator against a simulated site running normally: cars start and stop on their own, chargers
report every few seconds, the meter delivers late, other loads switch. A correctly wired site never warns; a
planted fault is concluded once enough clear events show it; noise that does not line up with a car's step
never makes a warning."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from hypothesis import given, settings, strategies as st

from csms.commissioning.model import ChargerWiring, MainsSample, SiteWiring
from csms.commissioning.passive import MIN_EVENTS, WiringCorrelator

from .test_inference import Truth  # how the site is really wired: one definition for both suites

V = 230.0
SITE = {"CP1": "RST", "CP2": "STR", "CP3": "TRS"}
SPACING = 60.0  # s between two car steps: every step is alone between its charger's samples


@dataclass
class Step:
    at: float
    charger: str
    draw: tuple[float, float, float]  # the car's draw from ``at`` on, per charger phase
    session: bool | None = None  # True: its session starts here, False: ends here


def wiring(in_measurement: bool = True) -> SiteWiring:
    return SiteWiring("garage", 0, "AG1G", in_measurement,
                      tuple(ChargerWiring(cid, i, 3, rot) for i, (cid, rot) in enumerate(SITE.items())))


def draw_at(steps: list[Step], cid: str, t: float) -> tuple[float, float, float]:
    out = (0.0, 0.0, 0.0)
    for s in steps:
        if s.charger == cid and s.at <= t:
            out = s.draw
    return out


def mains_at(truth: Truth, steps: list[Step], noise: list[tuple[float, tuple[float, float, float]]],
             t: float) -> MainsSample:
    building = [10.0, 8.0, 9.0]
    for at, amps in noise:
        if at <= t:
            building = [b + a for b, a in zip(building, amps)]
    cars = [0.0, 0.0, 0.0]
    for cid, rot in truth.rotations.items():
        for i, a in enumerate(draw_at(steps, cid, t)):
            cars["RST".index(rot[i])] += a
    if truth.seen:
        building = [b + c for b, c in zip(building, cars)]
    current, power = [], 0.0
    for m in (1, 2, 3):
        a = building[truth.perm[m] - 1]
        a = -a if m in truth.reversed else a
        current.append(round(a, 2))
        power += V * a * (1.0 if truth.perm[m] == m else -0.5)
    return MainsSample(t, (current[0], current[1], current[2]), power, (V, V, V))


def run(truth: Truth, steps: list[Step], *, noise=(), intervals=None, lag: float = 1.0, end: float | None = None,
        in_measurement: bool = True, fixed_at: float | None = None):
    """Feeds everything to a correlator in the order it arrives; returns it and every conclusion it reached."""
    end = end if end is not None else max(s.at for s in steps) + SPACING
    intervals = intervals or {cid: 10.0 for cid in SITE}
    queue: list[tuple[float, int, str, object]] = []
    n = 0
    for k in range(int(end)):  # mains readings once a second, delivered ``lag`` s later
        now = truth if fixed_at is None or k < fixed_at else Truth(dict(SITE))  # the fault repaired
        queue.append((k + lag, n, "mains", mains_at(now, steps, list(noise), float(k)))); n += 1
    for i, (cid, every) in enumerate(intervals.items()):  # charger samples, each on its own phase of the clock
        t = 0.7 * i + 0.3
        while t < end:
            queue.append((t, n, "sample", (cid, t, draw_at(steps, cid, t)))); n += 1
            t += every
    for s in steps:
        if s.session is not None:
            queue.append((s.at, n, "session", (s.charger, s.at, s.session))); n += 1
    heapq.heapify(queue)
    corr, w, seen = WiringCorrelator(), wiring(in_measurement), []
    while queue:
        _, _, kind, item = heapq.heappop(queue)
        if kind == "mains":
            if corr.mains(item):
                found = corr.conclude(w)
                seen.append(sorted((f.finding.kind, f.finding.subject) for f in found))
        elif kind == "sample":
            corr.charger_sample(*item)
        else:
            corr.session(*item)
    return corr, seen


def sessions(order: list[str], cars: dict[str, tuple[float, float, float]], start: float = 20.0) -> list[Step]:
    """Each charger in ``order`` in turn: its car starts, and SPACING later stops, one at a time."""
    steps, t = [], start
    for cid in order:
        steps.append(Step(t, cid, (0.0, 0.0, 0.0), True))
        steps.append(Step(t + 1.5, cid, cars[cid]))  # the car draws 1.5 s after its session starts
        t += SPACING
        steps.append(Step(t, cid, (0.0, 0.0, 0.0), False))
        t += SPACING
    return steps


amps = st.one_of(st.just(0.0), st.floats(6, 32))
car = st.one_of(st.tuples(st.floats(6, 32), st.just(0.0), st.just(0.0)),  # 1-phase
                st.floats(6, 32).map(lambda a: (a, a, a)),  # balanced 3-phase
                st.tuples(st.floats(6, 32), amps, amps))  # anything else a car may draw
orders = st.lists(st.sampled_from(sorted(SITE)), min_size=1, max_size=8)


@settings(max_examples=60, deadline=None)
@given(orders, st.fixed_dictionaries({cid: car for cid in SITE}),
       st.fixed_dictionaries({cid: st.sampled_from([5.0, 10.0, 15.0]) for cid in SITE}), st.floats(0.0, 2.5))
def test_a_correct_site_never_warns_whatever_the_cars_draw(order, cars, intervals, lag):
    _, seen = run(Truth(dict(SITE)), sessions(order, cars), intervals=intervals, lag=lag)
    assert all(found == [] for found in seen), seen


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(5, 600), st.sampled_from(sorted(SITE)), car | st.just((0.0, 0.0, 0.0))),
                min_size=1, max_size=25),
       st.floats(0.0, 2.5))
def test_a_correct_site_never_warns_whatever_the_cars_do_and_whenever(changes, lag):
    """Draws change at any moment, several chargers at once, limits up and down: still never a warning."""
    steps = [Step(at, cid, draw) for at, cid, draw in sorted(changes)]
    _, seen = run(Truth(dict(SITE)), steps, lag=lag)
    assert all(found == [] for found in seen), seen


def test_a_correct_site_with_overlapping_sessions_and_limit_changes_never_warns():
    steps = [Step(20, "CP1", (0, 0, 0), True), Step(21, "CP1", (16, 16, 16)),
             Step(40, "CP2", (0, 0, 0), True), Step(42, "CP2", (16, 0, 0)), Step(42.5, "CP1", (10, 10, 10)),
             Step(90, "CP3", (0, 0, 0), True), Step(91, "CP3", (8, 8, 8)), Step(150, "CP1", (0, 0, 0), False),
             Step(151, "CP2", (20, 0, 0)), Step(210, "CP2", (0, 0, 0), False), Step(260, "CP3", (0, 0, 0), False)]
    corr, seen = run(Truth(dict(SITE)), steps)
    assert corr.events() and all(found == [] for found in seen), seen


ONE_PHASE = {cid: (16.0, 0.0, 0.0) for cid in SITE}
FAULTS = [
    (Truth(dict(SITE), reversed=frozenset({2})), ("reversed_clamp", "AG1G L2")),
    (Truth(dict(SITE), perm={1: 3, 2: 2, 3: 1}), ("meter_phases_swapped", "AG1G")),
    (Truth({**SITE, "CP2": "TRS"}), ("phase_rotation", "CP2")),
    (Truth(dict(SITE), seen=False), ("chargers_not_measured", "garage")),
]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(range(len(FAULTS))), st.randoms(use_true_random=False), st.floats(0.0, 2.5),
       st.lists(st.tuples(st.floats(-6, 6), st.floats(-6, 6), st.floats(-6, 6)), max_size=12))
def test_a_planted_fault_is_found_after_enough_events_and_noise_apart_from_steps_changes_nothing(
        which, rnd, lag, noise_steps):
    truth, expected = FAULTS[which]
    order = sorted(SITE) * 2  # every charger twice: four events each (start and stop)
    rnd.shuffle(order)
    steps = sessions(order, ONE_PHASE)
    # Other loads switch only half-way between two car steps, never inside a step's samples or windows.
    noise = [(20.0 + SPACING * k + SPACING / 2 + rnd.uniform(-6, 6), amps) for k, amps in enumerate(noise_steps)]
    corr, seen = run(truth, steps, noise=noise, lag=lag)
    assert len(corr.events()) >= MIN_EVENTS
    concluded = [found for found in seen if found]
    assert concluded and concluded[-1] == [expected], seen
    # Never anything else on the way, and never before MIN_EVENTS events.
    assert all(found in ([], [expected]) for found in seen), seen
    assert seen[:MIN_EVENTS - 1] == [[]] * (MIN_EVENTS - 1)


@settings(max_examples=40, deadline=None)
@given(orders, st.fixed_dictionaries({cid: car for cid in SITE}),
       st.lists(st.tuples(st.floats(-8, 8), st.floats(-8, 8), st.floats(-8, 8)), max_size=16),
       st.randoms(use_true_random=False))
def test_noise_that_does_not_line_up_with_car_steps_never_warns(order, cars, noise_steps, rnd):
    steps = sessions(order, cars)
    noise = [(20.0 + SPACING * k + SPACING / 2 + rnd.uniform(-6, 6), amps) for k, amps in enumerate(noise_steps)]
    _, seen = run(Truth(dict(SITE)), steps, noise=noise)
    assert all(found == [] for found in seen), seen


def test_a_fault_clears_when_the_evidence_no_longer_shows_it():
    steps = sessions(["CP1", "CP2", "CP3", "CP1"], ONE_PHASE)
    corr, seen = run(Truth(dict(SITE), reversed=frozenset({1})), steps)
    assert seen[-1] == [("reversed_clamp", "AG1G L1")]
    found = corr.conclude(wiring())[0]
    assert found.events >= MIN_EVENTS and found.finding.fix.startswith("turn the clamp on L1")
    assert any("started drawing" in e for e in found.finding.evidence)
    # The clamp is turned round after these sessions: the next event contradicts the old ones, so nothing is
    # concluded any more, and once the old events have aged out, still nothing.
    fixed = steps[-1].at + SPACING / 2
    more = steps + sessions(["CP1"] * 4, ONE_PHASE, start=steps[-1].at + SPACING)
    _, seen = run(Truth(dict(SITE), reversed=frozenset({1})), more, fixed_at=fixed)
    flips = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
    assert len(flips) == 2, seen  # concluded once, cleared once, never back
    assert seen[flips[0]] == [("reversed_clamp", "AG1G L1")] and seen[flips[1]] == [] == seen[-1], seen
