"""Table-driven tests, one or a few per rule of the allocation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from csms.balancer import (
    BalancerMemory,
    ChargerInput,
    ControlState,
    GroupSpec,
    MeterInput,
    Tuning,
    allocate,
)
from csms.config import parse_config

from .helpers import T0, group, limits, meter, run, session, spec

# -- budget per phase -------------------------------------------------------------------------------

BUDGETS = [
    # (case, group kwargs, meter, chargers, expected budget per phase)
    ("fresh, chargers measured: their own draw is not other load",
     {}, meter(20, 10, 5), [session("A", draw={1: 12.0, 2: 12.0, 3: 0.0}, draw_at=T0, limit_in_force=16)],
     {1: 35 - 2 - 8, 2: 35 - 2 - (-2), 3: 35 - 2 - 5}),
    ("fresh, chargers not measured: the whole reading is other load",
     {"chargers_in_measurement": False}, meter(20, 10, 5), [session("A", draw={1: 12.0}, draw_at=T0)],
     {1: 13, 2: 23, 3: 28}),
    ("max_current_online caps the budget",
     {"max_current_online": 25}, meter(0), [], {1: 25, 2: 25, 3: 25}),
    ("solar export raises the budget, never above max_current_online",
     {"max_current_online": 30}, meter(-10, -1, 4), [], {1: 30, 2: 30, 3: 29}),
    ("a controlled charger's draw counts at most its limit (the sample may predate a decrease)",
     {}, meter(30), [session("A", draw={1: 16.0, 2: 16.0, 3: 16.0}, draw_at=T0, limit_in_force=6)],
     {1: 9, 2: 9, 3: 9}),
    ("a draw sample older than draw_max_age is not subtracted",
     {}, meter(30), [session("A", draw={1: 16.0, 2: 16.0, 3: 16.0}, draw_at=T0 - 500, limit_in_force=16)],
     {1: 3, 2: 3, 3: 3}),
    ("saturated clamp: at least that much, so overload (budget at most 0)",
     {}, meter(100, 10, 10, saturated=frozenset({1})), [], {1: -67, 2: 23, 3: 23}),
    ("a reading at the top of the clamp range is saturated even without the flag; a fuse above the clamps' "
     "range is used only up to where they measure (99.5 A)",
     {"supply_max_current": 200, "max_current_online": 200}, meter(99.8, 10, 10), [], {1: -2.3, 2: 87.5, 3: 87.5}),
    ("clamps that see only the other load do not bound what the chargers may draw: a fuse above their range "
     "is used whole",
     {"supply_max_current": 200, "max_current_online": 200, "chargers_in_measurement": False}, meter(50, 10, 10), [],
     {1: 148, 2: 188, 3: 188}),
    ("saturated export only means more export: the reading is a safe lower bound",
     {"max_current_online": 35}, meter(-100, 0, 0, saturated=frozenset({1})), [], {1: 35, 2: 33, 3: 33}),
    ("stale meter: max_current_offline", {}, meter(0, at=T0 - 11), [], {1: 16, 2: 16, 3: 16}),
    ("no reading yet: max_current_offline", {}, None, [], {1: 16, 2: 16, 3: 16}),
    ("static group without a meter: always max_current_offline",
     {"has_meter": False}, meter(0), [], {1: 16, 2: 16, 3: 16}),
    ("a phase the meter did not report: max_current_offline on it",
     {}, MeterInput(T0, {1: 10.0, 2: 10.0}), [], {1: 23, 2: 23, 3: 16}),
    ("one-phase group", {"phases": (1,)}, meter(10), [], {1: 23}),
]


@pytest.mark.parametrize("case,gkw,m,chargers,expected", BUDGETS, ids=[b[0] for b in BUDGETS])
def test_phase_budget(case, gkw, m, chargers, expected):
    g = group(**gkw)
    d = run(g, m, chargers)
    assert d.budget == pytest.approx(expected)
    assert d.meter_fresh == (g.has_meter and m is not None and T0 - m.taken_at <= g.stale_after)
    assert set(d.budget_notes) == set(g.phases) and all(d.budget_notes.values())


def test_stale_after_is_configurable():
    assert run(group(stale_after=30), meter(0, at=T0 - 20), []).meter_fresh
    assert not run(group(stale_after=10), meter(0, at=T0 - 20), []).meter_fresh


def test_saturation_pauses_sessions_on_that_phase_only():
    d = run(group(), meter(100, 0, 0, saturated=frozenset({1})),
            [session("A"), session("B", wired=(2,)), session("C", wired=(1,))])
    assert limits(d) == {"A": 0, "B": 32, "C": 0}
    assert "overload" in d.budget_notes[1]


# -- phase awareness --------------------------------------------------------------------------------

def test_one_phase_ev_on_rotated_three_phase_charger_leaves_other_phases_to_others():
    g = group(supply_max_current=22, max_current_online=22, margin=0)
    # A is wired L1->building 2 (rotation STR), its EV uses only its L1: building phase 2.
    a = session("A", wired=(2, 3, 1), phases_in_use=(2,))
    b = session("B")
    d = run(g, meter(0), [a, b])
    assert d.limits["A"].phases == (2,)
    assert limits(d) == {"A": 11, "B": 11}  # phase 2 is shared
    c = session("C", wired=(1,))
    d = run(g, meter(0), [a, b, c])
    # Phase 1 and 2 each carry two sessions: 11 each; C's phase 1 is not limited by A.
    assert limits(d) == {"A": 11, "B": 11, "C": 11}


def test_unknown_phases_assume_every_wired_phase():
    g = group(supply_max_current=20, max_current_online=20, margin=0)
    d = run(g, meter(0), [session("A", wired=(2, 3, 1)), session("B", wired=(3,))])
    assert d.limits["A"].phases == (2, 3, 1)
    assert limits(d) == {"A": 10, "B": 10}


def test_phases_outside_a_one_phase_group_are_not_budgeted():
    g = group(phases=(1,), supply_max_current=25, max_current_online=25, margin=0)
    d = run(g, meter(0), [session("A"), session("B", wired=(1,))])
    assert d.limits["A"].phases == (1,)
    assert limits(d) == {"A": 12.5, "B": 12.5}


# -- fairness and caps ------------------------------------------------------------------------------

def test_max_min_fairness_with_caps_and_coupled_phases():
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    chargers = [session("small", max_current=8), session("A"), session("B"), session("one", wired=(1,))]
    d = run(g, meter(0), chargers)
    # small is capped at 8; phase 1 carries A, B and one: (40 - 8) / 3; phases 2, 3 have room to spare.
    assert limits(d) == {"small": 8, "A": 10.6, "B": 10.6, "one": 10.6}
    assert "max_current" in d.limits["small"].reason
    assert "L1 is full" in d.limits["A"].reason


def test_limits_are_rounded_down_to_a_tenth():
    g = group(supply_max_current=20, max_current_online=20, margin=0)
    d = run(g, meter(0), [session("A"), session("B"), session("C")])
    assert limits(d) == {"A": 6.6, "B": 6.6, "C": 6.6}


def test_no_session_gets_zero():
    d = run(group(), meter(0), [ChargerInput(spec("A"), connected=True, session_active=False)])
    assert d.limits["A"].limit == 0 and "no session" in d.limits["A"].reason


# -- minimum current, pausing and rotation ------------------------------------------------------------

def test_pauses_as_few_as_possible():
    g = group(supply_max_current=20, max_current_online=20, margin=0)
    d = run(g, meter(0), [session(c) for c in "ABCD"])
    got = limits(d)
    assert sorted(got.values()) == [0, 6.6, 6.6, 6.6]
    paused = [c for c, v in got.items() if v == 0]
    assert "paused" in d.limits[paused[0]].reason and "min_current" in d.limits[paused[0]].reason


def test_rotation_gives_everyone_a_turn():
    g = group(supply_max_current=20, max_current_online=20, margin=0, rotation_period=600)
    chargers = [session(c) for c in "ABCDE"]
    memory = BalancerMemory()
    ran: dict[str, float] = dict.fromkeys("ABCDE", 0.0)
    paused_sets = set()
    for minute in range(60):
        now = T0 + minute * 60
        d = run(g, meter(0, at=now), chargers, now, memory)
        paused = frozenset(c for c, v in limits(d).items() if v == 0)
        assert len(paused) == 2
        paused_sets.add(paused)
        for c in "ABCDE":
            if c not in paused:
                ran[c] += 60
    assert len(paused_sets) >= 3
    # 60 minutes, 3 of 5 charge at a time: 36 charger-minutes each on average; nobody starves.
    assert min(ran.values()) >= 20 * 60, ran


def test_a_running_session_keeps_its_turn_when_a_new_one_arrives():
    g = group(supply_max_current=14, max_current_online=14, margin=0)
    memory = BalancerMemory()
    run(g, meter(0), [session("A"), session("B")], T0, memory)
    d = run(g, meter(0, at=T0 + 1), [session("A"), session("B"), session("C")], T0 + 1, memory)
    assert limits(d) == {"A": 7, "B": 7, "C": 0}


def test_resume_needs_a_margin_so_a_hovering_reading_does_not_flap():
    # The meter is upstream of the chargers here, so that each reading is the other load as written.
    g = group(supply_max_current=100, max_current_online=100, margin=0, tuning=Tuning(resume_margin=1.0),
              chargers_in_measurement=False, clamp_range_a=400.0)
    memory = BalancerMemory()
    chargers = [session("A"), session("B")]
    d = run(g, meter(89), chargers, T0, memory)  # 11 A: one session
    assert sorted(limits(d).values()) == [0, 11]
    paused = next(c for c, v in limits(d).items() if v == 0)
    # (readings a peak_window apart: a falling other load is used once its peak has passed)
    d = run(g, meter(88, at=T0 + 20), chargers, T0 + 20, memory)  # 12 A: fits two at 6, not with the margin
    assert limits(d)[paused] == 0
    d = run(g, meter(87, at=T0 + 40), chargers, T0 + 40, memory)  # 13 A: fits with the margin
    assert limits(d) == {"A": 6.5, "B": 6.5}


# -- the other load's peak window -------------------------------------------------------------------

def _budgets(g, readings, memory, start=T0):
    """The L1 budget after each reading, one a second."""
    return [run(g, meter(r, at=start + i), [], start + i, memory).budget[1] for i, r in enumerate(readings)]


def test_a_flicker_is_held_for_the_peak_window():
    g = group(supply_max_current=100, max_current_online=100, margin=0, chargers_in_measurement=False,
              clamp_range_a=400.0)
    flicker = [40, 41, 39, 40, 41, 39, 40, 39.5, 39, 39.5, 39, 39.2]
    budgets = _budgets(g, flicker, BalancerMemory())
    assert budgets[-1] == 59  # 41 A, seen within the last 10 s, is still allowed for


def test_a_step_down_is_let_go_after_three_readings_with_the_flicker_it_showed():
    """Holding a gone load for the whole peak window idled the demo's fuse by 11 A for 10 s."""
    g = group(supply_max_current=100, max_current_online=100, margin=0, chargers_in_measurement=False,
              clamp_range_a=400.0)
    before = [40, 41, 39, 40, 41, 39, 40]
    budgets = _budgets(g, before + [20, 20.5, 20.2, 20.4], BalancerMemory())
    assert budgets[7:9] == [59, 59]        # one or two low readings: could still be a flicker
    assert budgets[9] == pytest.approx(78)  # 20 A at the lowest + the 2 A the old level flickered
    assert budgets[10] == pytest.approx(78)


def test_a_drop_smaller_than_the_flicker_waits_out_the_window():
    g = group(supply_max_current=100, max_current_online=100, margin=0, chargers_in_measurement=False,
              clamp_range_a=400.0)
    budgets = _budgets(g, [40, 42, 38, 40, 42, 38, 40, 37, 37.5, 37.2, 37.4], BalancerMemory())
    assert budgets[-1] == 58


def test_a_reading_taken_before_a_session_ended_still_counts_its_car():
    """The demo: a car left, and the next run still had the reading from a second before, when it drew 7 A.
    Subtracting the chargers without it made the other load 7 A too large for a whole peak window."""
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    memory = BalancerMemory()
    a = session("A", limit_in_force=10, limit_since=T0 - 60, draw={1: 10.0, 2: 10.0, 3: 10.0}, draw_at=T0 - 1)
    b = session("B", limit_in_force=10, limit_since=T0 - 60, draw={1: 10.0, 2: 10.0, 3: 10.0}, draw_at=T0 - 1)
    before = run(g, meter(30), [a, b], T0, memory)  # 10 A of other load, two cars at 10 A
    assert before.budget[1] == pytest.approx(30)
    # Its last sample, sent with the end of the transaction, shows 0 A: taken after the reading.
    a_ended = replace(a, session_active=False, draw={1: 0.0, 2: 0.0, 3: 0.0}, draw_at=T0 + 0.8)
    b_now = replace(b, limit_in_force=10)
    after = run(g, meter(30, at=T0 + 0.5), [a_ended, b_now], T0 + 1, memory)  # A's car still in this reading
    assert after.budget[1] == pytest.approx(30)
    later = run(g, meter(20, at=T0 + 7), [a_ended, b_now], T0 + 7, memory)  # A gone from the readings too
    assert later.budget[1] == pytest.approx(30)


# -- reserves for what the balancer does not control ----------------------------------------------

RESERVES = [
    # (case, the other charger, reserved A per phase (1, 2, 3), controlled?)
    ("disconnected with its fallback in force: offline current on its offline phase",
     ChargerInput(spec("X", offline=8, offline_phase=2), connected=False, control=ControlState.FALLBACK),
     (0, 8, 0), False),
    ("disconnected with a fallback the charger could only install on three phases: on each",
     ChargerInput(spec("X", offline=8, offline_phase=2), connected=False, control=ControlState.FALLBACK,
                  fallback_phases=(1, 2, 3)), (8, 8, 8), False),
    ("disconnected, fallback unknown: max_current on every wired phase",
     ChargerInput(spec("X", max_current=16), connected=False, control=ControlState.DISCONNECTED_UNKNOWN),
     (16, 16, 16), False),
    ("disconnected, whatever the delivery said last: unknown",
     ChargerInput(spec("X", max_current=16), connected=False, control=ControlState.CONTROLLED, limit_in_force=6),
     (16, 16, 16), False),
    ("rejected, nothing known in force: max_current",
     ChargerInput(spec("X", max_current=16), session_active=True, control=ControlState.UNCONTROLLED),
     (16, 16, 16), True),
    ("not obeying: max_current",
     ChargerInput(spec("X", max_current=20), session_active=True, control=ControlState.NOT_OBEYING, limit_in_force=6),
     (20, 20, 20), True),
    ("not obeying with a 1-phase EV: only on the phase it uses",
     ChargerInput(spec("X", max_current=20), session_active=True, control=ControlState.NOT_OBEYING,
                  phases_in_use=(3,)), (0, 0, 20), True),
]


@pytest.mark.parametrize("case,other,reserved,controlled", RESERVES, ids=[r[0] for r in RESERVES])
def test_reserves(case, other, reserved, controlled):
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    d = run(g, meter(0), [other, session("A")])
    assert d.available == pytest.approx({p: 40 - r for p, r in zip((1, 2, 3), reserved)})
    assert d.limits["A"].limit == min(32, 40 - max(reserved))
    assert d.limits["X"].controlled is controlled
    assert d.limits["X"].counted == pytest.approx(max(reserved))


def test_a_fallback_in_force_is_reserved_on_every_phase_it_was_installed_on():
    """Found by a user test: a three-phase 1.6 charger whose offline_phase is not its L1 can only take its
    fallback on three phases; the balancer reserved it on the offline phase alone, and gave the other two away."""
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    for on, reserved in (((1, 2, 3), (8, 8, 8)), (None, (6, 8, 6))):
        x = ChargerInput(spec("X", offline=8, offline_phase=2), session_active=True, control=ControlState.FALLBACK,
                         fallback_phases=on)
        d = run(g, meter(0), [x, session("A")])
        assert d.available == pytest.approx({p: 40 - r for p, r in zip((1, 2, 3), reserved)}), on


def test_a_change_in_flight_is_planned_like_a_settled_one():
    """The allocation plans where every limit goes; the delivery moves there safely (break before make). A
    decrease in flight must not pause the session that the capacity is freed for."""
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    memory = BalancerMemory()
    d = run(g, meter(0), [session("X", limit_in_force=32), session("A", limit_in_force=0)], T0, memory)
    assert limits(d) == {"X": 20, "A": 20}
    # X was told 20 and has not accepted it yet (32 still in force): A keeps its 20, not a pause.
    pending = session("X", control=ControlState.PENDING, limit_in_force=32)
    d = run(g, meter(0, at=T0 + 1), [pending, session("A", limit_in_force=0)], T0 + 1, memory)
    assert limits(d) == {"X": 20, "A": 20}


def test_a_new_session_slow_to_confirm_its_first_limit_is_reserved_at_its_fallback():
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    memory = BalancerMemory()
    idle = ChargerInput(spec("X", offline=6), connected=True, session_active=False)
    run(g, meter(0), [idle, session("A")], T0, memory)
    new = session("X", control=ControlState.PENDING, limit_in_force=6)  # its fallback until the first limit
    d = run(g, meter(0, at=T0 + 1), [new, session("A")], T0 + 1, memory)
    assert d.limits["X"].counted <= d.limits["X"].limit  # planned: its EV has not started yet
    grace = g.tuning.first_limit_grace
    d = run(g, meter(0, at=T0 + 1 + grace), [new, session("A")], T0 + 1 + grace, memory)
    assert d.limits["X"].counted >= 6 and d.limits["A"].limit <= 40 - 6


def test_a_new_session_on_a_charger_slower_than_the_grace_is_reserved_at_once():
    """A charger that takes 3 s to answer a profile cannot confirm the first limit before its car starts
    drawing the fallback: the fallback is counted from the session's start (found by the interop test)."""
    g = group(supply_max_current=40, max_current_online=40, margin=0)
    memory = BalancerMemory()
    idle = ChargerInput(spec("X", offline=6), connected=True, session_active=False)
    run(g, meter(0), [idle, session("A")], T0, memory)
    slow = replace(session("X", control=ControlState.PENDING, limit_in_force=6),
                   answer_time=g.tuning.first_limit_grace + 1)
    d = run(g, meter(0, at=T0 + 1), [slow, session("A")], T0 + 1, memory)
    assert d.limits["X"].counted >= 6 and d.limits["A"].limit <= 40 - 6


@pytest.mark.parametrize("control", [ControlState.UNCONTROLLED, ControlState.NOT_OBEYING, ControlState.CONTROLLED])
@pytest.mark.parametrize("reported", [16000.0, 60.0, 1e9])
def test_a_charger_reporting_more_than_it_can_draw_cannot_lift_the_budget(control, reported):
    """Issue 12 item 7.1: a charger reporting 16000 A (mA sent as A), 60 A from a 16 A charger or 1e9 was
    subtracted from the reading: the other load came out at -15960 A, and another charger was sent 32 A, 72 A on
    a 63 A fuse. Its draw counts for at most its max_current, on its wired phases."""
    g = group(supply_max_current=63, max_current_online=50, margin=2)
    liar = ChargerInput(spec("X", max_current=16, wired=(1,)), connected=True, session_active=True,
                        control=control, limit_in_force=16 if control is ControlState.CONTROLLED else None,
                        draw={1: reported, 2: reported, 3: reported}, draw_at=T0)
    d = run(g, meter(40, at=T0), [liar, session("A")], T0)
    # 40 A measured, of which X draws at most 16 A: the other load is at least 24 A on L1, 40 A on L2 and L3.
    assert d.budget[1] <= 63 - 2 - 24 + 1e-9
    assert d.budget[2] <= 63 - 2 - 40 + 1e-9 and d.budget[3] <= 63 - 2 - 40 + 1e-9
    assert 16 + d.limits["A"].limit + 24 <= 63 + 1e-9  # the worst case on L1 still fits the fuse


def test_reserves_beyond_the_budget_pause_every_session_on_the_phase():
    g = group(supply_max_current=30, max_current_online=30, margin=0)
    lost = [ChargerInput(spec(f"X{i}", max_current=16), connected=False) for i in range(2)]
    d = run(g, meter(0), [*lost, session("A"), session("B", wired=(2,))])
    assert d.available[1] == -2
    assert limits(d)["A"] == 0 and limits(d)["B"] == 0


# -- trimming a car that takes less than offered -----------------------------------------------------

def _two_cars_on_32_a():
    """A run per call ``step(t, a_draw, a_limit, b_limit)``: A's car draws ``a_draw``, B's its limit, on a 32 A
    group with trimming after 60 s, 2 A headroom and a probe every 300 s."""
    g = group(supply_max_current=32, max_current_online=32, margin=0,
              tuning=Tuning(trim_after=60, probe_every=300, trim_headroom=2, trim_slack=2))
    memory = BalancerMemory()

    def step(t: float, a_draw: float, a_limit: float, b_limit: float):
        a = session("A", limit_in_force=a_limit, draw={1: a_draw, 2: a_draw, 3: a_draw}, draw_at=T0 + t)
        b = session("B", limit_in_force=b_limit, draw={1: b_limit, 2: b_limit, 3: b_limit}, draw_at=T0 + t)
        return run(g, meter(a_draw + b_limit, at=T0 + t), [a, b], T0 + t, memory)

    return step


def test_trimming_gives_unused_share_to_others_and_probes_back():
    step = _two_cars_on_32_a()

    d = step(0, 16, 16, 16)
    assert limits(d) == {"A": 16, "B": 16}
    d = step(30, 8, 16, 16)  # A's car takes 8 of 16: not for long enough yet
    assert limits(d) == {"A": 16, "B": 16}
    d = step(95, 8, 16, 16)
    # A is offered its draw + 2 A headroom, and counted at its draw: the 2 A it does not take go to B.
    assert limits(d) == {"A": 10, "B": 24}
    assert "draws clearly less" in d.limits["A"].reason and d.limits["A"].counted == 8
    d = step(200, 8, 10, 24)
    assert limits(d) == {"A": 10, "B": 24}
    d = step(400, 8, 10, 24)  # probe: A is offered its fair share again
    assert limits(d) == {"A": 16, "B": 16}
    # A sample taken at the change says nothing (its EV could not follow yet); the first one taken once it
    # could, showing it took no more than before, trims it again at once: a probe costs one sample interval.
    d = step(420, 8, 16, 16)
    assert limits(d) == {"A": 16, "B": 16}
    d = step(425, 8, 16, 16)
    assert limits(d) == {"A": 10, "B": 24}


def test_a_probe_the_car_answers_by_taking_more_is_not_trimmed_again_at_once():
    step = _two_cars_on_32_a()

    for t in (0, 30, 95):
        d = step(t, 8, 16, 16)
    assert limits(d) == {"A": 10, "B": 24}
    d = step(400, 8, 10, 24)  # probe
    d = step(420, 8, 16, 16)
    d = step(425, 11, 16, 16)  # offered more, it took 3 A more: it still draws less than 16, but is not capped
    assert limits(d) == {"A": 16, "B": 16}
    d = step(480, 11, 16, 16)  # until it has drawn clearly less for trim_after again
    assert limits(d) == {"A": 16, "B": 16}
    d = step(486, 11, 16, 16)
    assert limits(d) == {"A": 13, "B": 21}


def test_a_lower_limit_above_the_draw_does_not_restart_the_trim_wait():
    g = group(supply_max_current=48, max_current_online=48, margin=0, tuning=Tuning(trim_after=60))
    memory = BalancerMemory()
    for t in (0, 10):  # the sample at 10 s (its EV could follow the limit by then) shows it takes 8 of 16
        a = session("A", limit_in_force=16, draw={1: 8.0, 2: 8.0, 3: 8.0}, draw_at=T0 + t)
        run(g, meter(8, at=T0 + t), [a, session("B")], T0 + t, memory)
    # Another car's arrival lowers A's limit to 14 (still well above its 8 A): its car still draws clearly less,
    # and it is trimmed trim_after after the sample that first showed it, not after the change.
    a = session("A", limit_in_force=14, draw={1: 8.0, 2: 8.0, 3: 8.0}, draw_at=T0 + 40)
    run(g, meter(8, at=T0 + 40), [a, session("B")], T0 + 40, memory)
    d = run(g, meter(8, at=T0 + 70), [a, session("B")], T0 + 70, memory)
    assert "draws clearly less" in d.limits["A"].reason and limits(d)["A"] == 10


def test_headroom_lent_to_others_is_one_cars_worth_per_phase():
    g = group(supply_max_current=40, max_current_online=40, margin=0, tuning=Tuning(trim_after=10))
    memory = BalancerMemory()
    for t in (0, 10, 21):
        a = session("A", limit_in_force=13, draw={1: 5.0, 2: 5.0, 3: 5.0}, draw_at=T0 + t)
        b = session("B", limit_in_force=13, draw={1: 5.0, 2: 5.0, 3: 5.0}, draw_at=T0 + t)
        d = run(g, meter(10, at=T0 + t), [a, b, session("C")], T0 + t, memory)
    # A and B are offered 7 A and draw 5: only one of them lends its 2 A, so C gets 40 - 7 - 7 + 2.
    assert limits(d) == {"A": 7, "B": 7, "C": 28}
    assert sorted(d.limits[c].counted for c in "AB") == [5, 7]


def test_a_trimmed_car_that_wants_more_gets_it_at_once():
    g = group(supply_max_current=32, max_current_online=32, margin=0, tuning=Tuning(trim_after=10))
    memory = BalancerMemory()
    for t, draw, lim in ((0, 5, 16), (20, 5, 16), (30, 5, 16)):
        a = session("A", limit_in_force=lim, draw={1: draw, 2: draw, 3: draw}, draw_at=T0 + t)
        d = run(g, meter(0, at=T0 + t), [a, session("B")], T0 + t, memory)
    assert limits(d)["A"] == 7
    a = session("A", limit_in_force=7, draw={1: 6.8, 2: 6.8, 3: 6.8}, draw_at=T0 + 40)
    d = run(g, meter(0, at=T0 + 40), [a, session("B")], T0 + 40, memory)
    assert limits(d) == {"A": 16, "B": 16}


def test_suspended_ev_is_trimmed_to_min_current_not_paused():
    g = group(supply_max_current=32, max_current_online=32, margin=0, tuning=Tuning(trim_after=10))
    memory = BalancerMemory()
    for t in (0, 5, 15):
        a = session("A", limit_in_force=16, draw={1: 0.0, 2: 0.0, 3: 0.0}, draw_at=T0 + t)
        d = run(g, meter(0, at=T0 + t), [a, session("B")], T0 + t, memory)
    # Not drawing at all, it is counted at its limit by the estimator (it may resume at any moment), so it lends
    # nothing: lending its headroom too once put a 40 A fuse 1.6 A over for as long as the car stayed suspended.
    assert limits(d) == {"A": 6, "B": 26}
    assert d.limits["A"].counted == 6


# -- groups -----------------------------------------------------------------------------------------

def test_inactive_group_keeps_offline_limits():
    g = group(active=False)
    d = run(g, meter(0), [session("A"), ChargerInput(spec("B", offline=8, offline_phase=3), connected=False)])
    assert d.limits["A"].limit == 6 and not d.limits["A"].controlled and d.limits["A"].phases == (1,)
    assert d.limits["B"].limit == 8 and d.limits["B"].phases == (3,)
    assert "inactive" in d.limits["A"].reason


def test_static_group_shares_max_current_offline():
    d = run(group(has_meter=False, max_current_offline=24), None, [session("A"), session("B")])
    assert limits(d) == {"A": 12, "B": 12} and not d.meter_fresh


def test_specs_from_config():
    cfg = parse_config({
        "server": {"security_profile": 0},
        "organisations": [{"id": "org", "name": "Org"}],
        "meters": [{"serial": "AG1234567G", "pin": "12345678", "organisation": "org", "variant": "public"}],
        "chargers": [{"id": "CP1", "organisation": "org", "phases": 1, "phase_rotation": "TRS", "max_current": 20,
                      "offline_current": 8, "offline_phase": 3}],
        "load_balancers": [{"id": "g", "name": "G", "organisation": "org", "meter": "AG1234567G", "chargers": ["CP1"],
                            "supply_max_current": 63, "max_current_online": 50, "max_current_offline": 16,
                            "phases": [3, 1, 2], "stale_after": 5, "rotation_period": 60}],
    })
    g = GroupSpec.from_config(cfg.load_balancers[0], cfg.meters[0])
    assert (g.phases, g.clamp_range_a, g.stale_after, g.rotation_period, g.has_meter) == ((3, 1, 2), 400, 5, 60, True)
    assert not GroupSpec.from_config(cfg.load_balancers[0], None).has_meter
    c = type(spec("x")).from_config(cfg.chargers[0])
    assert (c.phases_wired, c.max_current, c.offline_current, c.offline_phase) == ((3,), 20, 8, 3)


# -- explanations -------------------------------------------------------------------------------------

def test_explain_names_limit_phases_and_binding_phase():
    g = group(supply_max_current=20, max_current_online=20, margin=0)
    d = run(g, meter(4, 0, 0), [session("CP0003"), session("CP0004")])
    text = d.explain("CP0003")
    assert text.startswith("CP0003: 8.0 A on L1+L2+L3: fair share: phase L1 is full")
    assert "L1 budget 16.0 A" in text and "4.0 A other load" in text
    assert "not in group" in d.explain("nope")


def test_allocate_is_deterministic():
    g = group(supply_max_current=30, max_current_online=30)
    chargers = [session(f"C{i}", wired=((1, 2, 3), (2,), (3, 1, 2))[i % 3], draw={1: 3.0}, draw_at=T0)
                for i in range(12)]
    a = allocate(g, meter(5), chargers, T0, BalancerMemory())
    b = allocate(g, meter(5), chargers, T0, BalancerMemory())
    assert a == b


def test_a_three_phase_session_does_not_pause_three_one_phase_ones():
    # L1 has room for two sessions, L2 and L3 for one each. Admitting the 3-phase session would
    # leave room for only one more; pausing it lets four run.
    g = group(supply_max_current=12, max_current_online=12, margin=0)
    chargers = [session("three"), session("a", wired=(1,)), session("b", wired=(1,)), session("c", wired=(2,)),
                session("d", wired=(3,))]
    d = run(g, meter(0, 6, 6), chargers)
    assert limits(d) == {"three": 0, "a": 6, "b": 6, "c": 6, "d": 6}
    # It is owed a turn after a rotation period, ahead of those that ran.
    memory = BalancerMemory()
    run(g, meter(0, 6, 6), chargers, T0, memory)
    d = run(g, meter(0, 6, 6, at=T0 + 900), chargers, T0 + 900, memory)
    assert limits(d)["three"] == 6


def test_a_suspended_car_lends_nothing_and_the_fuse_holds():
    """Closed loop: B's EV is suspended (draws nothing) and gets trimmed to min_current; the reading is what the
    site carries. The import must stay within the fuse once everything has settled."""
    g = group(supply_max_current=40, max_current_online=40, margin=0.4, tuning=Tuning(trim_after=60))
    memory = BalancerMemory()
    la, lb = 14.8, 14.8
    for k in range(12):
        t = T0 + 10 * k
        since = T0 - 100 if k == 0 else t - 9
        a = session("A", limit_in_force=la, limit_since=since, draw={1: la, 2: la, 3: la}, draw_at=t - 1)
        b = session("B", limit_in_force=lb, limit_since=since, draw={1: 0.0, 2: 0.0, 3: 0.0}, draw_at=t - 1)
        d = run(g, meter(10 + la, at=t), [a, b], t, memory)
        la, lb = d.limits["A"].limit, d.limits["B"].limit
        if k >= 9:
            assert 10 + la <= 40 - 0.4 + 1e-6, (k, la, lb)
    assert lb == 6 and "draws clearly less" in d.limits["B"].reason
