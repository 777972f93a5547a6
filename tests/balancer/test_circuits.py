"""Nested limits (:mod:`csms.balancer.circuits`): property tests over random trees, and a few worked examples."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.balancer import BalancerMemory, ChargerInput, ControlState, Decision, GroupSpec, MeterInput, allocate
from csms.balancer.grid import floor_step
from csms.balancer.model import CircuitSpec

from .helpers import T0, check_safe, group, limits, meter, run, session, worst_case
from .test_properties import TENTH, chargers, groups, meters

EPS = 1e-6


@st.composite
def trees(draw, g: GroupSpec) -> tuple[CircuitSpec, ...]:
    """Up to five circuits, each under the main fuse or an earlier one; some metered."""
    out: list[CircuitSpec] = []
    for i in range(draw(st.integers(1, 5))):
        parent = draw(st.none() | st.sampled_from([c.id for c in out])) if out else None
        metered = draw(st.integers(0, 3)) == 0
        fuse = draw(st.floats(6, 80))
        out.append(CircuitSpec(f"c{i}", parent, fuse, draw(st.sampled_from([0.0, 0.25, 1.0])), metered,
                               draw(st.floats(0, fuse)) if metered else 0.0))
    return tuple(out)


def path(g: GroupSpec, circuit: str | None) -> list[str]:
    parents = {c.id: c.parent for c in g.circuits}
    out = []
    while circuit is not None:
        out.append(circuit)
        circuit = parents[circuit]
    return out


@st.composite
def sites(draw, controlled_only: bool = False):
    g = draw(groups().filter(lambda g: g.active))
    g = dataclasses.replace(g, circuits=draw(trees(g)))
    chs = draw(chargers(g, controlled_only=controlled_only))
    on = st.none() | st.sampled_from([c.id for c in g.circuits])
    chs = [dataclasses.replace(c, spec=dataclasses.replace(c.spec, circuit=draw(on))) for c in chs]
    readings = {c.id: MeterInput(T0 - draw(st.sampled_from([0, 1, 30])),
                                 {p: draw(st.floats(-5, 60)) for p in (1, 2, 3)})
                for c in g.circuits if c.has_meter and draw(st.booleans())}
    return g, chs, draw(meters()), readings


def decide(g: GroupSpec, m, chs: list[ChargerInput], readings, now: float = T0,
           memory: BalancerMemory | None = None) -> Decision:
    d = allocate(g, m, chs, now, memory if memory is not None else BalancerMemory(), readings)
    check_safe(g, chs, d)  # the main fuse, as for every group
    check_circuits(g, chs, d)
    return d


def check_circuits(g: GroupSpec, chs: list[ChargerInput], d: Decision) -> None:
    """No circuit over its budget on any phase: the worst case of everything under it (worked out from the rules,
    as for the main fuse) fits, unless the chargers the balancer cannot steer exceed it alone, and then every
    steerable session under it is paused."""
    assert set(d.circuits) == {c.id for c in g.circuits}
    for c in g.circuits:
        load = d.circuits[c.id]
        under = [ch for ch in chs if c.id in path(g, ch.spec.circuit)]
        assert set(load.chargers) == {ch.spec.id for ch in under}
        for p in g.phases:
            total = steerable = 0.0
            for ch in under:
                a = worst_case(ch, d, g.phases)[p]
                total += a
                if ch.connected and ch.control is ControlState.CONTROLLED:
                    steerable += a
            if total > load.budget[p] + EPS:
                assert total - steerable > load.budget[p] - g.min_current, (c.id, p, total, load.budget[p])
                assert steerable == 0, (c.id, p, "sessions left on a circuit the reserves already exceed")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites())
def test_no_node_is_over_its_limit(site):
    g, chs, m, readings = site
    decide(g, m, chs, readings)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites(controlled_only=True))
def test_sharing_is_max_min_fair_across_the_tree(site):
    """Every session below its cap has a full node (a group phase or a circuit's phase) on its path, on which
    nobody gets more than it: the bottleneck condition of max-min fairness, with nested capacities."""
    g, chs, m, readings = site
    d = decide(g, m, chs, readings)
    steer = [c for c in chs if c.session_active]
    used: dict = {}
    count: dict = {}
    for c in steer:
        lim = d.limits[c.spec.id]
        for r in footprint(g, c, lim.phases):
            used[r] = used.get(r, 0.0) + lim.limit
            # Each limit is rounded down to the 0.1 A grid, so a node may keep up to 0.1 A per session on it,
            # including one whose share (min_current 0, many sessions) rounded down to nothing.
            count[r] = count.get(r, 0) + (lim.limit > 0 or g.min_current == 0)

    def left(r) -> float:
        room = d.available[r] if isinstance(r, int) else d.circuits[r[0]].budget[r[1]]
        return room - used.get(r, 0.0)

    for c in steer:
        lim = d.limits[c.spec.id]
        mine = footprint(g, c, lim.phases)
        if lim.limit > 0:
            at_cap = lim.limit >= floor_step(c.spec.max_current) - TENTH
            full = [r for r in mine if left(r) < TENTH * count[r] + EPS]
            assert at_cap or full, (c.spec.id, lim, {r: left(r) for r in mine})
            if not at_cap:
                assert any(all(d.limits[o.spec.id].limit <= lim.limit + TENTH for o in steer
                               if r in footprint(g, o, d.limits[o.spec.id].phases)) for r in full), (c.spec.id, lim)
        elif g.min_current > 0:
            # Paused only when min_current does not fit on one of the nodes on its path.
            assert any(left(r) < g.min_current + 1 + EPS for r in mine), (c.spec.id, {r: left(r) for r in mine})


def footprint(g: GroupSpec, ch: ChargerInput, phases: tuple[int, ...]) -> list:
    return [p for p in phases if p in g.phases] + [(c, p) for c in path(g, ch.spec.circuit)
                                                   for p in phases if p in g.phases]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_circuit_that_cannot_bind_changes_nothing(data):
    """Circuits far above what their chargers can draw, or holding no charger, leave the flat allocation as it
    is: the flat config behaves exactly as before circuits existed."""
    g = data.draw(groups().filter(lambda g: g.active))
    chs = data.draw(chargers(g))
    m = data.draw(meters())
    flat = run(g, m, chs)
    wide = dataclasses.replace(g, circuits=(CircuitSpec("big", None, 4000.0, 0.0), CircuitSpec("empty", "big", 6.0)))
    on = [dataclasses.replace(c, spec=dataclasses.replace(c.spec, circuit="big")) for c in chs]
    nested = decide(wide, m, on, {})
    assert limits(nested) == limits(flat)
    assert nested.budget == flat.budget and nested.available == flat.available


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_repeated_runs_stay_within_every_node(data):
    """Memory carried between runs (rotation, trimming, the circuits' held other load) never breaks a limit."""
    g, _, _, _ = data.draw(sites())
    memory = BalancerMemory()
    for i in range(data.draw(st.integers(2, 6))):
        now = T0 + i * data.draw(st.sampled_from([1.0, 30.0, 400.0]))
        chs, m = data.draw(chargers(g, n_max=6)), data.draw(meters())
        ids = [c.id for c in g.circuits]
        chs = [dataclasses.replace(c, spec=dataclasses.replace(
            c.spec, circuit=data.draw(st.none() | st.sampled_from(ids)))) for c in chs]
        readings = {c.id: MeterInput(now - 1, {p: data.draw(st.floats(-5, 60)) for p in (1, 2, 3)})
                    for c in g.circuits if c.has_meter and data.draw(st.booleans())}
        decide(g, None if m is None else MeterInput(now - (T0 - m.taken_at), m.current, m.saturated),
               chs, readings, now, memory)


def sub(cid: str, circuit: str | None, **kw) -> ChargerInput:
    ch = session(cid, **kw)
    return dataclasses.replace(ch, spec=dataclasses.replace(ch.spec, circuit=circuit))


def test_a_sub_board_shares_its_fuse_and_the_rest_goes_to_the_others():
    g = group(supply_max_current=40, max_current_online=40, margin=0,
              circuits=(CircuitSpec("board", None, 25.0, 0.0), CircuitSpec("row", "board", 16.0, 0.0)))
    chs = [sub("A", None), sub("B", "board"), sub("C", "row"), sub("D", "row")]
    d = decide(g, meter(0), chs, {})
    # row: C and D share 16 A; board: B gets what row leaves of 25 A; the main fuse: A gets the rest of 40 A.
    assert limits(d) == {"A": 15.0, "B": 9.0, "C": 8.0, "D": 8.0}
    assert "circuit row L1 is full" in d.limits["C"].reason
    assert d.circuits["row"].planned == {1: 16.0, 2: 16.0, 3: 16.0}
    assert d.circuits["board"].planned == {1: 25.0, 2: 25.0, 3: 25.0}


def test_a_sub_board_too_small_for_everyone_pauses_there_only():
    g = group(supply_max_current=63, max_current_online=63, margin=0, circuits=(CircuitSpec("row", None, 11.0, 0.0),))
    d = decide(g, meter(0), [sub("A", None), sub("B", "row"), sub("C", "row")], {})
    assert sorted(limits(d).values()) == [0.0, 11.0, 32.0]
    paused = next(lim for lim in d.limits.values() if lim.limit == 0)
    assert paused.reason.startswith("paused: circuit row L1 cannot give it min_current 6.0 A")


def test_a_metered_sub_board_takes_its_other_load_off():
    g = group(supply_max_current=63, max_current_online=63, margin=0, chargers_in_measurement=False,
              circuits=(CircuitSpec("row", None, 25.0, 0.0, True, 8.0),))
    chs = [sub("B", "row"), sub("C", "row")]
    d = decide(g, meter(5), chs, {"row": meter(5)})  # no car draws yet: 5 A of other load on the sub-board
    assert limits(d) == {"B": 10.0, "C": 10.0}
    assert d.circuits["row"].meter_fresh is True and "5.0 A other load" in d.circuits["row"].notes[1]
    stale = decide(g, meter(5), chs, {"row": meter(5, at=T0 - 60)})
    assert limits(stale) == {"B": 0.0, "C": 8.0} or limits(stale) == {"B": 8.0, "C": 0.0}
    assert stale.circuits["row"].meter_fresh is False


def test_an_unsteerable_charger_is_reserved_on_every_fuse_above_it():
    g = group(supply_max_current=63, max_current_online=63, margin=0, circuits=(CircuitSpec("row", None, 40.0, 0.0),))
    gone = dataclasses.replace(sub("X", "row"), connected=False, control=ControlState.DISCONNECTED_UNKNOWN)
    d = decide(g, meter(0), [gone, sub("B", "row")], {})
    assert d.limits["B"].limit == 8.0  # 40 A less X's 32 A


def test_a_metered_sub_board_does_not_count_its_own_chargers_as_other_load():
    """The estimator follows the sessions under a metered circuit: the reading minus what they draw is its
    other load, so cars at their limits do not shrink their own budget."""
    g = group(supply_max_current=63, max_current_online=63, margin=0,
              circuits=(CircuitSpec("row", None, 25.0, 0.0, True, 8.0),))
    chs = [sub(c, "row", limit_in_force=10.0, limit_since=T0 - 600, draw={1: 10.0, 2: 10.0, 3: 10.0},
               draw_at=T0 - 1) for c in ("B", "C")]
    d = decide(g, meter(25), chs, {"row": meter(25)})  # 5 A other load + 2 x 10 A
    assert d.circuits["row"].notes[1].endswith("5.0 A other load (25.0 A measured)")
    assert limits(d) == {"B": 10.0, "C": 10.0}
