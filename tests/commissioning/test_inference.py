"""The commissioning inference against simulated mains responses: a correct site gives no finding, and each
planted fault (alone or two at once) is named exactly, with the config change that fixes it."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import assume, given, settings, strategies as st

from csms.commissioning.inference import infer
from csms.commissioning.measure import measure_step
from csms.commissioning.model import (ROTATIONS, ChargerWiring, MainsSample, SiteWiring, Step, StepMeasure,
                                      Untested)
from csms.commissioning.report import render, as_json

V = 230.0


@dataclass
class Truth:
    """How the site is really wired."""

    rotations: dict[str, str]
    reversed: frozenset[int] = frozenset()
    #: meter phase -> building phase its clamp carries
    perm: dict[int, int] = field(default_factory=lambda: {1: 1, 2: 2, 3: 3})
    seen: bool = True


def wiring(rotations: dict[str, str], phases: dict[str, int] | None = None, in_measurement: bool = True,
           reported: dict[str, str] | None = None) -> SiteWiring:
    chargers = tuple(ChargerWiring(cid, i, (phases or {}).get(cid, 3), rot, (reported or {}).get(cid))
                     for i, (cid, rot) in enumerate(rotations.items()))
    return SiteWiring("garage", 0, "AG1G", in_measurement, chargers)


def respond(truth: Truth, cid: str, car: tuple[float, float, float], noise: tuple[float, float, float] = (0, 0, 0),
            report: bool = True) -> StepMeasure:
    """What the meter shows when ``cid``'s car draws ``car`` A on charger phases L1..L3."""
    building = [0.0, 0.0, 0.0]
    for i, a in enumerate(car):
        building["RST".index(truth.rotations[cid][i])] += a
    delta, power = [], 0.0
    for m in (1, 2, 3):
        amps = building[truth.perm[m] - 1] if truth.seen else 0.0
        amps = (-amps if m in truth.reversed else amps) + noise[m - 1]
        delta.append(amps)
        power += V * amps * (1.0 if truth.perm[m] == m else -0.5)
    return StepMeasure(cid, tuple(delta), power, V, 2.5, car if report else None, 3, 2)


ONE_PHASE = (10.0, 0.0, 0.0)
THREE_PHASE = (10.0, 10.0, 10.0)
SWAPS = [{1: 2, 2: 1, 3: 3}, {1: 3, 2: 2, 3: 1}, {1: 1, 2: 3, 3: 2}]


def run(truth: Truth, config: dict[str, str], cars: dict[str, tuple[float, float, float]], **kw):
    w = wiring(config, **kw)
    return infer(w, [respond(truth, cid, cars[cid]) for cid in config])


def kinds(verdict) -> list[tuple[str, str]]:
    return sorted((f.kind, f.subject) for f in verdict.findings)


SITE = {"CP1": "RST", "CP2": "STR", "CP3": "TRS"}
ONE_PHASE_CARS = {cid: ONE_PHASE for cid in SITE}


def test_a_correct_site_passes():
    v = run(Truth(dict(SITE)), SITE, ONE_PHASE_CARS)
    assert v.findings == () and v.ok
    assert [c.observed_rotation for c in v.chargers] == ["R??", "S??", "T??"]


def test_a_charger_that_sends_no_meter_values_is_judged_by_the_cars_it_could_have():
    """A charger that refuses TriggerMessage (or answers late) says nothing of its car: a 1-phase car on a
    3-phase charger is still a car on the charger's L1, not an unexplained step."""
    truth = Truth(dict(SITE), perm={1: 3, 2: 2, 3: 1})
    v = infer(wiring(SITE), [respond(truth, cid, ONE_PHASE, report=False) for cid in SITE])
    assert kinds(v) == [("meter_phases_swapped", "AG1G")]
    assert [c.observed_rotation for c in v.chargers] == ["R??", "S??", "T??"]


def test_balanced_cars_show_no_rotation_but_pass():
    v = run(Truth(dict(SITE)), SITE, {cid: THREE_PHASE for cid in SITE})
    assert v.ok and all(c.observed_rotation == "???" for c in v.chargers)


def test_a_reversed_clamp_is_named():
    v = run(Truth(dict(SITE), reversed=frozenset({2})), SITE, {cid: THREE_PHASE for cid in SITE})
    assert kinds(v) == [("reversed_clamp", "AG1G L2")]
    assert v.findings[0].config == {}
    assert "turn the clamp on L2" in v.findings[0].fix


def test_swapped_meter_phases_with_one_phase_cars():
    v = run(Truth(dict(SITE), perm={1: 2, 2: 1, 3: 3}), SITE, ONE_PHASE_CARS)
    assert kinds(v) == [("meter_phases_swapped", "AG1G")]
    f = v.findings[0]
    assert "meter L1 carries building phase S" in f.message and "meter L2 carries building phase R" in f.message
    # the config alternative: each charger's rotation as the meter sees it
    assert f.config == {"chargers.0.phase_rotation": "SRT", "chargers.1.phase_rotation": "RTS",
                        "chargers.2.phase_rotation": "TSR"}


def test_swapped_meter_phases_with_balanced_cars_show_in_the_power():
    v = run(Truth(dict(SITE), perm={1: 2, 2: 1, 3: 3}), SITE, {cid: THREE_PHASE for cid in SITE})
    assert kinds(v) == [("meter_phases_swapped", "AG1G")]
    assert "cannot show which" in v.findings[0].message


def test_a_charger_wired_in_another_rotation():
    truth = Truth({**SITE, "CP2": "TRS"})
    v = run(truth, SITE, ONE_PHASE_CARS)
    assert kinds(v) == [("phase_rotation", "CP2")]
    f = v.findings[0]
    assert f.config == {"chargers.1.phase_rotation": "TRS"} or list(f.config) == ["chargers.1.phase_rotation"]
    assert f.config["chargers.1.phase_rotation"][0] == "T"


def test_the_charger_report_decides_the_unseen_letters():
    truth = Truth({**SITE, "CP2": "TSR"})
    v = infer(wiring(SITE, reported={"CP2": "TSR"}), [respond(truth, c, ONE_PHASE) for c in SITE])
    assert [f.config for f in v.findings] == [{"chargers.1.phase_rotation": "TSR"}]


def test_a_meter_that_does_not_see_the_chargers():
    v = run(Truth(dict(SITE), seen=False), SITE, ONE_PHASE_CARS)
    assert kinds(v) == [("chargers_not_measured", "garage")]
    assert v.findings[0].config == {"load_balancers.0.chargers_in_measurement": False}


def test_a_meter_that_sees_chargers_configured_as_unseen():
    v = run(Truth(dict(SITE)), SITE, ONE_PHASE_CARS, in_measurement=False)
    assert kinds(v) == [("chargers_measured", "garage")]


def test_a_charger_whose_car_drew_nothing_is_untested():
    truth = Truth(dict(SITE))
    ms = [respond(truth, "CP1", ONE_PHASE), respond(truth, "CP2", (0.0, 0.0, 0.0)), respond(truth, "CP3", ONE_PHASE)]
    v = infer(wiring(SITE), ms, [Untested("CP4", "not connected")])
    assert v.findings == () and not v.ok
    assert {c.id: c.tested for c in v.chargers} == {"CP1": True, "CP2": False, "CP3": True, "CP4": False}
    assert "drew nothing" in next(c.reason for c in v.chargers if c.id == "CP2")


def test_reversed_and_swapped_at_once():
    v = run(Truth(dict(SITE), reversed=frozenset({3}), perm={1: 2, 2: 1, 3: 3}), SITE, ONE_PHASE_CARS)
    assert kinds(v) == [("meter_phases_swapped", "AG1G"), ("reversed_clamp", "AG1G L3")]


def test_reversed_and_rotation_at_once():
    # CP1's car lands on S, as CP2's does: L1 carries no car, so the reversed clamp must be one that does
    v = run(Truth({**SITE, "CP1": "SRT"}, reversed=frozenset({2})), SITE, ONE_PHASE_CARS)
    assert kinds(v) == [("phase_rotation", "CP1"), ("reversed_clamp", "AG1G L2")]


def test_swapped_and_rotation_at_once():
    site = {"CP1": "RST", "CP2": "STR", "CP3": "TRS", "CP4": "RST"}
    truth = Truth({**site, "CP4": "STR"}, perm={1: 1, 2: 3, 3: 2})
    v = infer(wiring(site), [respond(truth, c, ONE_PHASE) for c in site])
    assert kinds(v) == [("meter_phases_swapped", "AG1G"), ("phase_rotation", "CP4")]


def test_the_report_reads_and_round_trips():
    truth = Truth(dict(SITE), reversed=frozenset({2}))
    w = wiring(SITE)
    v = infer(w, [respond(truth, c, THREE_PHASE) for c in SITE])
    text = render(as_json(v, w, 1_800_000_000.0, 1_800_000_030.0))
    assert "FINDING 1 [reversed_clamp]" in text and "fix: turn the clamp on L2" in text


def test_a_step_measured_from_readings():
    samples = [MainsSample(float(t), (10.0, 8.0, 12.0) if t <= 100 else (10.0 + min(9.6, (t - 100) * 4), 8.0, 12.0))
               for t in range(90, 111)]
    m = measure_step(samples, Step("CP1", 100.0, 110.0, 10.0, (9.6, 0.0, 0.0)))
    assert m is not None and abs(m.delta[0] - 9.6) < 1e-9 and m.delta[1] == 0.0
    assert m.latency == 2.0  # 8 A at +2 s is the first reading past half of 9.6 A


# ---- properties ---------------------------------------------------------------------------------

rotations = st.sampled_from(ROTATIONS)
site_strategy = st.dictionaries(st.sampled_from(["CP1", "CP2", "CP3", "CP4"]), rotations, min_size=3, max_size=4)
noise = st.tuples(*[st.floats(-0.4, 0.4)] * 3)


@settings(max_examples=150, deadline=None)
@given(site_strategy, st.sampled_from([ONE_PHASE, THREE_PHASE, (16.0, 16.0, 0.0)]), noise, st.booleans())
def test_property_a_correct_site_has_no_finding(site, car, jitter, report):
    truth = Truth(dict(site))
    v = infer(wiring(site), [respond(truth, c, car, jitter, report) for c in site])
    assert v.findings == ()


@settings(max_examples=150, deadline=None)
@given(site_strategy, st.sets(st.sampled_from([1, 2, 3]), min_size=1, max_size=2), noise)
def test_property_any_reversed_clamp_is_found_exactly(site, reversed_, jitter):
    truth = Truth(dict(site), reversed=frozenset(reversed_))
    v = infer(wiring(site), [respond(truth, c, THREE_PHASE, jitter) for c in site])
    assert kinds(v) == sorted(("reversed_clamp", f"AG1G L{p}") for p in reversed_)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(SWAPS), noise, st.booleans())
def test_property_any_swapped_pair_is_found_exactly(swap, jitter, report):
    truth = Truth(dict(SITE), perm=swap)
    v = infer(wiring(SITE), [respond(truth, c, ONE_PHASE, jitter, report) for c in SITE])
    assert kinds(v) == [("meter_phases_swapped", "AG1G")]
    moved = sorted(m for m, b in swap.items() if m != b)
    assert all(f"meter L{m} carries" in v.findings[0].message for m in moved)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(list(SITE)), rotations, noise, st.booleans())
def test_property_a_charger_in_another_rotation_is_found(cid, real, jitter, report):
    assume(real[0] != SITE[cid][0])  # a 1-phase car shows where the charger's L1 lands, nothing more
    truth = Truth({**SITE, cid: real})
    v = infer(wiring(SITE), [respond(truth, c, ONE_PHASE, jitter, report) for c in SITE])
    assert kinds(v) == [("phase_rotation", cid)]
    assert v.findings[0].config[f"chargers.{list(SITE).index(cid)}.phase_rotation"][0] == real[0]


def test_the_room_for_a_release_is_read_from_the_settled_baseline():
    """Found by a user test: on a one-phase 25 A site the previous car's ramp-down (19.6 A) was still in the
    baseline window, its single reading taken as the base load, and the next charger skipped as "no room under
    the fuse" (the site carried 10 A)."""
    from csms.commissioning.measure import settled_peak

    base = [MainsSample(0.0, (19.6, None, None)), MainsSample(1.0, (10.2, None, None)),
            MainsSample(2.0, (10.0, None, None))]
    assert settled_peak(base) == 10.2
    assert settled_peak([MainsSample(0.0, (-3.0, 12.0, 4.0))]) == 12.0
    assert settled_peak([]) == 0.0
