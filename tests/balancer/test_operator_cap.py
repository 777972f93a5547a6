"""The operator's cap: an upper bound on one charger's limit inside what the fuse allows (rules and properties)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.balancer import BalancerMemory, ControlState
from csms.balancer.grid import STEP

from .helpers import T0, check_safe, group, limits, meter, run, session
from .test_properties import chargers, groups, meters

TENTH = 0.1 + 1e-6


# -- rules -----------------------------------------------------------------------------------------------------


def test_a_cap_lowers_the_charger_and_its_room_goes_to_the_others():
    g = group(supply_max_current=35, max_current_online=35, margin=2)
    free = run(g, meter(0), [session("A"), session("B")])
    assert limits(free) == {"A": 16.5, "B": 16.5}
    d = run(g, meter(0), [session("A", operator_cap=8.0), session("B")])
    assert limits(d) == {"A": 8.0, "B": 25.0}
    assert d.limits["A"].reason == "operator cap 8.0 A"
    assert "operator cap" not in d.limits["B"].reason


def test_a_cap_above_the_fair_share_does_not_limit():
    g = group(supply_max_current=35, max_current_online=35, margin=2)
    d = run(g, meter(0), [session("A", operator_cap=20.0), session("B")])
    assert limits(d) == {"A": 16.5, "B": 16.5}
    assert "fair share" in d.limits["A"].reason


def test_a_cap_never_lifts_past_the_fuse_or_max_current():
    g = group(supply_max_current=20, max_current_online=20, margin=2)
    d = run(g, meter(0), [session("A", max_current=16, operator_cap=32.0)])
    assert limits(d) == {"A": 16.0}
    d = run(group(supply_max_current=12, max_current_online=12, margin=2), meter(0),
            [session("A", operator_cap=32.0)])
    assert limits(d) == {"A": 10.0}


def test_a_cap_below_min_current_pauses_with_a_reason():
    g = group(supply_max_current=35, max_current_online=35, margin=2, min_current=6.0)
    d = run(g, meter(0), [session("A", operator_cap=4.0), session("B")])
    assert limits(d) == {"A": 0.0, "B": 32.0}
    assert d.limits["A"].reason == "operator cap 4.0 A is below the group's min_current 6.0 A: paused"
    d = run(g, meter(0), [session("A", operator_cap=0.0)])
    assert limits(d) == {"A": 0.0}
    assert "paused by the operator" in d.limits["A"].reason


def test_an_expired_cap_is_ignored_from_its_until_on():
    g = group(supply_max_current=35, max_current_online=35, margin=2)
    chs = [session("A", operator_cap=8.0, operator_cap_until=T0 + 60), session("B")]
    memory = BalancerMemory()
    d = run(g, meter(0), chs, T0, memory)
    assert limits(d)["A"] == 8.0
    assert d.limits["A"].reason == "operator cap 8.0 A until 2023-11-14T22:14:20Z"
    d = run(g, meter(0, at=T0 + 60), chs, T0 + 60, memory)
    assert limits(d)["A"] == limits(d)["B"] > 8.0
    assert "operator cap" not in d.limits["A"].reason


def test_an_uncontrolled_charger_is_still_counted_at_its_max_current():
    """A charger that did not accept its limit may not obey the cap either: the cap lowers what is planned for it,
    never what it is counted at."""
    g = group(supply_max_current=35, max_current_online=35, margin=2)
    without = run(g, meter(0), [session("A", control=ControlState.UNCONTROLLED), session("B")])
    d = run(g, meter(0), [session("A", control=ControlState.UNCONTROLLED, operator_cap=4.0), session("B")])
    assert d.limits["A"].counted == without.limits["A"].counted == 32.0
    assert d.limits["A"].limit == 0.0  # what is planned for it (sent once it answers again)
    assert "operator cap 4.0 A" in d.limits["A"].reason
    assert limits(d)["B"] == limits(without)["B"]


def test_a_disconnected_charger_is_counted_as_without_a_cap():
    g = group(supply_max_current=35, max_current_online=35, margin=2)
    a = session("A", connected=False, control=ControlState.DISCONNECTED_UNKNOWN)
    without = run(g, meter(0), [a, session("B")])
    d = run(g, meter(0), [replace(a, operator_cap=8.0), session("B")])
    assert d.limits == without.limits


# -- properties ------------------------------------------------------------------------------------------------


@st.composite
def capped(draw):
    """A group, its chargers (some with an operator cap, some lapsed), a reading."""
    g = draw(groups())
    chs = draw(chargers(g))
    out = []
    for ch in chs:
        if draw(st.integers(0, 2)) == 0:
            ch = replace(ch, operator_cap=draw(st.floats(0, 40)),
                         operator_cap_until=draw(st.sampled_from([None, None, T0 - 1, T0, T0 + 60])))
        out.append(ch)
    return g, out, draw(meters())


def _in_force(ch) -> float | None:
    if ch.operator_cap is None or (ch.operator_cap_until is not None and T0 >= ch.operator_cap_until):
        return None
    return ch.operator_cap


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capped())
def test_no_controlled_charger_exceeds_its_cap_and_the_fuse_holds(case):
    g, chs, m = case
    d = run(g, m, chs)  # run() checks the fuse invariant (and nothing in (0, min_current))
    for ch in chs:
        lim = d.limits[ch.spec.id]
        cap = _in_force(ch)
        if cap is not None and lim.controlled and g.active:
            assert lim.limit <= cap + 1e-9, (ch.spec.id, cap, lim)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_cap_lowers_its_charger_and_never_takes_from_the_others(data):
    """Capping one charger can raise the others (the room it frees is shared again), so the property is: the
    capped charger's limit never rises and it is counted at no more, the fuse holds (``run`` checks it), and
    nobody else gets less unless the room changed hands on a phase they share, as when any car leaves:

    - a multi-phase session the cap freed on one phase grows, and takes its fair share on another phase from
      a session that had more (both end level, or the loser still above);
    - or the freed room let in a session admission had paused (rotation order: a session owed its turn
      first), which displaces another."""
    g, chs, m = data.draw(capped())
    if not chs:
        return
    i = data.draw(st.integers(0, len(chs) - 1))
    target = chs[i]
    cap = data.draw(st.floats(0, 40))
    with_cap = [replace(c, operator_cap=cap, operator_cap_until=None) if j == i else c for j, c in enumerate(chs)]
    without_cap = [replace(c, operator_cap=None, operator_cap_until=None) if j == i else c
                   for j, c in enumerate(chs)]
    before = run(g, m, without_cap)
    after = run(g, m, with_cap)
    tid = target.spec.id
    assert after.limits[tid].limit <= before.limits[tid].limit + 1e-9
    assert after.limits[tid].counted <= before.limits[tid].counted + 1e-9
    if after.limits[tid].controlled and g.active:
        assert after.limits[tid].limit <= cap + 1e-9
    others = [c.spec.id for c in chs if c.spec.id != tid]
    admitted_now = [cid for cid in others if before.limits[cid].limit == 0 < after.limits[cid].limit]

    def phases(cid: str) -> set[int]:
        return set(before.limits[cid].phases) | set(after.limits[cid].phases)

    for cid in others:
        if after.limits[cid].limit < before.limits[cid].limit - 1e-9:
            gainers = [o for o in others if o != cid and phases(o) & phases(cid)
                       and after.limits[o].limit > before.limits[o].limit + 1e-9]
            assert gainers, (cid, before.limits[cid], after.limits[cid])
            if after.limits[cid].limit == 0:
                assert admitted_now and after.limits[cid].reason.startswith("paused: phase"), (cid, after.limits[cid])
            else:
                level = min(after.limits[o].limit for o in gainers)
                assert after.limits[cid].limit >= level - STEP - 1e-9, (cid, after.limits[cid], gainers)


def test_the_room_a_cap_frees_goes_to_the_session_owed_a_turn():
    """The case the property allows: three sessions, room for two at min_current. Without the cap the two 1-phase
    sessions charge and the 3-phase one waits; with C0 paused by its cap, the 3-phase one is ahead in the rotation
    order and takes the room, which leaves C8 none on L2."""
    g = group(supply_max_current=6, max_current_online=6, max_current_offline=6, margin=0, has_meter=False)
    c0 = session("C0", max_current=6, phases_in_use=(1,))
    c6, c8 = session("C6", max_current=6), session("C8", max_current=6, wired=(2,))
    before = run(g, None, [c0, c6, c8])
    assert limits(before) == {"C0": 6.0, "C6": 0.0, "C8": 6.0}
    after = run(g, None, [replace(c0, operator_cap=0.0), c6, c8])
    assert limits(after) == {"C0": 0.0, "C6": 6.0, "C8": 0.0}


def test_the_room_a_cap_frees_on_one_phase_lets_a_three_phase_session_take_its_share_on_another():
    """The other case the property allows (hypothesis found it): C0 charges on three phases and is held at 6 A by
    L1, which it shares with C2 and C3; C1 alone on L2 takes 10 A there. Capping C2 frees L1, so C0 grows to its
    9 A and the 18 A of L2 is shared level, 9 A each: C1 gives up 1 A, and L2 carries 2 A more than before."""
    g = group(supply_max_current=18, max_current_online=18, max_current_offline=18, margin=0, has_meter=False)
    c0, c1 = session("C0", max_current=9), session("C1", max_current=10, wired=(2,))
    c2, c3 = session("C2", max_current=6, wired=(1,)), session("C3", max_current=6, phases_in_use=(1,))
    before = run(g, None, [c0, c1, c2, c3])
    assert limits(before) == {"C0": 6.0, "C1": 10.0, "C2": 6.0, "C3": 6.0}
    after = run(g, None, [c0, c1, replace(c2, operator_cap=0.0), c3])
    assert limits(after) == {"C0": 9.0, "C1": 9.0, "C2": 0.0, "C3": 6.0}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_caps_set_and_lifted_across_runs_stay_safe(data):
    """Memory carried between runs (rotation, pauses by a cap, trimming) never breaks the invariants while caps come
    and go."""
    g = data.draw(groups().filter(lambda g: g.active))
    memory = BalancerMemory()
    chs = data.draw(chargers(g, n_max=6))
    for i in range(data.draw(st.integers(2, 8))):
        now = T0 + i * data.draw(st.sampled_from([1.0, 30.0, 400.0]))
        chs = [replace(c, operator_cap=data.draw(st.none() | st.floats(0, 40)), operator_cap_until=None)
               for c in chs]
        d = run(g, data.draw(meters()), chs, now, memory)
        for c in chs:
            lim = d.limits[c.spec.id]
            if c.operator_cap is not None and lim.controlled:
                assert lim.limit <= c.operator_cap + 1e-9, (c.spec.id, c.operator_cap, lim)
