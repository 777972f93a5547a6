"""Property-based tests over random groups, readings and charger states."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.balancer import BalancerMemory, ChargerInput, ChargerSpec, ControlState, MeterInput, waterfill
from csms.balancer.grid import ceil_step, floor_step

from .helpers import T0, check_safe, group, limits, meter, run, session

PHASE_SETS = [(1, 2, 3), (2, 3, 1), (3, 1, 2), (1, 3, 2), (1,), (2,), (3,)]
TENTH = 0.1 + 1e-6


@st.composite
def groups(draw):
    phases = draw(st.sampled_from([(1, 2, 3), (3, 2, 1), (1,), (2, 3)]))
    supply = draw(st.floats(10, 120))
    online = draw(st.floats(6, supply))
    return group(
        phases=phases, supply_max_current=supply, max_current_online=online,
        max_current_offline=draw(st.floats(0, online)), min_current=draw(st.sampled_from([6.0, 6.0, 8.0, 0.0])),
        margin=draw(st.floats(0, 5)), chargers_in_measurement=draw(st.booleans()),
        has_meter=draw(st.booleans() | st.just(True)), active=draw(st.booleans() | st.just(True)),
    )


@st.composite
def chargers(draw, g, n_max=12, controlled_only=False):
    out = []
    for i in range(draw(st.integers(0, n_max))):
        wired = draw(st.sampled_from(PHASE_SETS))
        max_current = draw(st.floats(max(g.min_current, 6), 32))
        spec = ChargerSpec(f"C{i}", max_current, wired, draw(st.floats(0, max_current)),
                           draw(st.sampled_from(g.phases)))
        if controlled_only:
            connected, control = True, ControlState.CONTROLLED
        else:
            connected = draw(st.booleans() | st.just(True))
            control = draw(st.sampled_from(list(ControlState)) | st.just(ControlState.CONTROLLED))
        in_use = draw(st.none() | st.sets(st.sampled_from(wired), min_size=1).map(
            lambda s, w=wired: tuple(p for p in w if p in s)))
        out.append(ChargerInput(
            spec, connected, draw(st.booleans() | st.just(True)), control,
            draw(st.none() | st.floats(0, max_current)),
            draw(st.dictionaries(st.sampled_from((1, 2, 3)), st.floats(0, 40), max_size=3)),
            draw(st.sampled_from([None, T0, T0 - 5, T0 - 500])), in_use))
    return out


@st.composite
def meters(draw):
    if draw(st.integers(0, 5)) == 0:
        return None
    values = {p: draw(st.floats(-60, 110)) for p in (1, 2, 3) if draw(st.integers(0, 9))}
    return MeterInput(T0 - draw(st.sampled_from([0, 3, 30])), values,
                      frozenset(draw(st.sets(st.sampled_from((1, 2, 3)), max_size=1))))


def sessions_phases(ch: ChargerInput, g, d=None) -> tuple[int, ...]:
    """The group phases a session draws on: as the decision says (the estimator learns a car's phases from its
    samples, e.g. a sample with current on one phase only) or, without a decision, as the input says."""
    phases = d.limits[ch.spec.id].phases if d is not None else (ch.phases_in_use or ch.spec.phases_wired)
    return tuple(p for p in phases if p in g.phases)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_decision_is_safe_and_efficient(data):
    g = data.draw(groups())
    chs = data.draw(chargers(g))
    m = data.draw(meters())
    d = run(g, m, chs)  # run() checks: no phase over budget, nothing in (0, min), nothing above max
    assert set(d.limits) == {c.spec.id for c in chs}
    if not g.active:
        return
    mins = ceil_step(g.min_current)
    steer = [c for c in chs if c.connected and c.session_active and c.control is ControlState.CONTROLLED
             or d.limits[c.spec.id].controlled and c.control is ControlState.PENDING and c.session_active
             and d.limits[c.spec.id].counted <= d.limits[c.spec.id].limit]
    used = dict.fromkeys(g.phases, 0.0)
    count = dict.fromkeys(g.phases, 0)
    sharing = dict.fromkeys(g.phases, 0)
    for c in steer:
        for p in sessions_phases(c, g, d):
            used[p] += d.limits[c.spec.id].limit
            count[p] += d.limits[c.spec.id].limit > 0
            sharing[p] += 1
    left = {p: d.available[p] - used[p] for p in g.phases}
    for c in steer:
        lim = d.limits[c.spec.id].limit
        phases = sessions_phases(c, g, d)
        if lim > 0:
            # Efficient: at its cap, or one of its phases is full (up to the rounding to 0.1 A)...
            at_cap = lim >= floor_step(c.spec.max_current) - TENTH
            full = [p for p in phases if left[p] < TENTH * count[p] + 1e-6]
            assert at_cap or full, (c.spec.id, lim, left)
            # ...and max-min fair: on that full phase nobody gets more than it (the bottleneck condition).
            if not at_cap:
                assert any(all(d.limits[o.spec.id].limit <= lim + TENTH for o in steer if p in sessions_phases(o, g, d))
                           for p in full), (c.spec.id, lim)
        else:
            # Paused only when min_current does not fit on one of its phases, or (min_current 0) when nobody
            # there got anything because what is left, shared equally, is less than one 0.1 A step each.
            assert any(left[p] < mins + 1e-6 or count[p] == 0 and left[p] < TENTH * sharing[p] - 1e-6
                       for p in phases), (c.spec.id, left)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_equal_chargers_get_equal_shares(data):
    g = data.draw(groups().filter(lambda g: g.active))
    wired = data.draw(st.sampled_from(PHASE_SETS))
    n = data.draw(st.integers(1, 10))
    max_current = data.draw(st.floats(max(g.min_current, 6), 32))
    others = data.draw(chargers(g, n_max=5, controlled_only=True))
    equal = [session(f"E{i}", max_current=max_current, wired=wired) for i in range(n)]
    d = run(g, data.draw(meters()), equal + others)
    running = [d.limits[c.spec.id].limit for c in equal if d.limits[c.spec.id].limit > 0]
    if running:
        assert max(running) - min(running) <= TENTH


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from((1, 2, 3)), st.floats(-10, 200), min_size=3, max_size=3),
    st.lists(st.tuples(st.sampled_from(PHASE_SETS), st.floats(0, 40), st.integers(1, 50)), max_size=12),
)
def test_water_fill_is_feasible_capped_and_max_min_fair(available, items):
    classes: dict[tuple[int, ...], dict[float, int]] = {}
    for phases, cap, n in items:
        classes.setdefault(phases, {})
        classes[phases][cap] = classes[phases].get(cap, 0) + n
    levels = waterfill.fill(available, classes)
    alloc = [(phases, cap, n, max(0.0, min(cap, levels[phases][0]))) for phases, caps in classes.items()
             for cap, n in caps.items()]
    load = dict.fromkeys(available, 0.0)
    for phases, _, n, x in alloc:
        for p in phases:
            load[p] += n * x
    for p in available:
        if available[p] >= 0:
            assert load[p] <= available[p] + 1e-6
    for phases, cap, n, x in alloc:
        if x < cap - 1e-9:
            level, bound = levels[phases]
            assert bound in phases
            # Its bottleneck is full (or over-committed at level 0) and nobody on it gets more.
            assert load[bound] >= available[bound] - 1e-6 or x == 0
            assert all(y <= x + 1e-9 for ph, _, _, y in alloc if bound in ph)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 7), st.data())
def test_paused_set_rotates_and_nobody_starves(n, data):
    k = data.draw(st.integers(1, n - 1))
    period = 600.0
    # Room for exactly k sessions at min_current (plus change that does not fit another).
    g = group(supply_max_current=100, max_current_online=6 * k + 3, margin=0, rotation_period=period)
    chs = [session(f"C{i}") for i in range(n)]
    memory = BalancerMemory()
    charged = dict.fromkeys((c.spec.id for c in chs), 0)
    paused_sets = set()
    step = period / 4
    steps = int(4 * n * (n // k + 1)) + 4
    for i in range(steps):
        now = T0 + i * step
        d = run(g, meter(0, at=now), chs, now, memory)
        paused = frozenset(c for c, v in limits(d).items() if v == 0)
        assert len(paused) == n - k
        paused_sets.add(paused)
        for c in charged:
            charged[c] += c not in paused
    assert len(paused_sets) > 1
    assert min(charged.values()) > 0, charged
    # The share of time charging is even to within a couple of turns.
    assert max(charged.values()) - min(charged.values()) <= 2 * 4 + 1, charged


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_repeated_runs_stay_safe(data):
    """Memory carried between runs (rotation, trimming) never breaks the invariants."""
    g = data.draw(groups().filter(lambda g: g.active))
    memory = BalancerMemory()
    for i in range(data.draw(st.integers(2, 8))):
        now = T0 + i * data.draw(st.sampled_from([1.0, 30.0, 400.0]))
        chs = data.draw(chargers(g, n_max=6))
        chs = [ChargerInput(c.spec, c.connected, c.session_active, c.control, c.limit_in_force, c.draw,
                            None if c.draw_at is None else now - (T0 - c.draw_at), c.phases_in_use) for c in chs]
        m = data.draw(meters())
        if m is not None:
            m = MeterInput(now - (T0 - m.taken_at), m.current, m.saturated)
        d = run(g, m, chs, now, memory)
        check_safe(g, chs, d)
