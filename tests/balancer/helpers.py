"""Builders for balancer inputs, and the safety checks every decision must pass."""

from __future__ import annotations

from csms.balancer import (
    BalancerMemory,
    ChargerInput,
    ChargerSpec,
    ControlState,
    Decision,
    GroupSpec,
    MeterInput,
    allocate,
)
from csms.balancer.grid import floor_step

T0 = 1_700_000_000.0
EPS = 1e-6


def group(**kw) -> GroupSpec:
    base = dict(id="g", phases=(1, 2, 3), supply_max_current=35.0, max_current_online=35.0,
                max_current_offline=16.0, min_current=6.0, margin=2.0, clamp_range_a=100.0)
    base.update(kw)
    return GroupSpec(**base)


def spec(cid: str, max_current: float = 32.0, wired: tuple[int, ...] = (1, 2, 3), offline: float = 6.0,
         offline_phase: int | None = None) -> ChargerSpec:
    return ChargerSpec(cid, max_current, wired, offline, offline_phase or wired[0])


def session(cid: str, *, max_current: float = 32.0, wired: tuple[int, ...] = (1, 2, 3), **kw) -> ChargerInput:
    """A connected, controlled charger with an EV that wants current."""
    base = dict(connected=True, session_active=True, control=ControlState.CONTROLLED)
    base.update(kw)
    return ChargerInput(spec(cid, max_current, wired), **base)


def meter(l1: float, l2: float | None = None, l3: float | None = None, *, at: float = T0,
          saturated: frozenset[int] = frozenset()) -> MeterInput:
    values = {1: l1, 2: l1 if l2 is None else l2, 3: l1 if l3 is None else l3}
    return MeterInput(at, values, saturated)


def run(g: GroupSpec, m: MeterInput | None, chargers: list[ChargerInput], now: float = T0,
        memory: BalancerMemory | None = None) -> Decision:
    d = allocate(g, m, chargers, now, memory if memory is not None else BalancerMemory())
    check_safe(g, chargers, d)
    return d


def limits(d: Decision) -> dict[str, float]:
    return {cid: lim.limit for cid, lim in d.limits.items()}


def worst_case(ch: ChargerInput, d: Decision, gphases: tuple[int, ...]) -> dict[int, float]:
    """The most a charger can draw per group phase after this decision, worked out from the rules
    (independently of the allocation's own bookkeeping)."""
    s = ch.spec
    lim = d.limits[s.id]
    out = dict.fromkeys(gphases, 0.0)
    # The phases its EV uses: reported, or learned by the estimator from the mains (the decision's phases).
    in_use = tuple(p for p in (ch.phases_in_use or (lim.phases if ch.control in (ControlState.CONTROLLED,
                                                                                  ControlState.PENDING)
                                                    and ch.session_active else s.phases_wired)) if p in gphases)
    wired = tuple(p for p in s.phases_wired if p in gphases)
    c = ch.control
    fallback_on = ch.fallback_phases or (s.offline_phase,)
    if not ch.connected:
        if c is ControlState.FALLBACK:
            for p in fallback_on:
                if p in out:
                    out[p] += s.offline_current
        else:
            for p in wired:
                out[p] += s.max_current
        return out
    if c is ControlState.CONTROLLED:
        for p in in_use:
            out[p] += lim.limit
        return out
    if c is ControlState.FALLBACK:
        # Its fallback until it accepts the new limit, which then overrides the fallback.
        for p in in_use:
            out[p] = lim.limit
        for p in fallback_on:
            if p in out:
                out[p] = max(out[p], s.offline_current)
        return out
    if c is ControlState.PENDING and lim.counted <= lim.limit:
        # A change in flight that the allocation planned like a settled one: the delivery moves there safely
        # (break before make, tested with the delivery), so the plan counts the new limit.
        for p in in_use:
            out[p] += lim.limit
        return out
    before = s.max_current if ch.limit_in_force is None else ch.limit_in_force
    if c is ControlState.NOT_OBEYING:
        before = s.max_current
    for p in in_use:
        out[p] += max(before, lim.limit)
    return out


def check_safe(g: GroupSpec, chargers: list[ChargerInput], d: Decision) -> None:
    """Invariants of every decision: no phase over budget (unless the chargers the balancer cannot
    steer exceed it alone, and then every steerable session on it is paused), no limit between 0 and
    min_current, none above a charger's max."""
    m = g.min_current
    total = dict.fromkeys(g.phases, 0.0)
    steerable = dict.fromkeys(g.phases, 0.0)
    lent = dict.fromkeys(g.phases, 0.0)
    for ch in chargers:
        lim = d.limits[ch.spec.id]
        assert lim.limit <= ch.spec.max_current + EPS, (ch.spec.id, lim)
        if lim.controlled and g.active:
            assert lim.limit == 0 or lim.limit >= m - EPS, (ch.spec.id, lim)
            assert abs(lim.limit * 10 - round(lim.limit * 10)) < 1e-6, ("not on the 0.1 A grid", lim)
        lends = lim.controlled and ch.connected and 0 < lim.counted < lim.limit
        if lends:
            # A trimmed car lends the headroom it does not draw: counted at no less than its own latest draw.
            assert "draws clearly less" in lim.reason, (ch.spec.id, lim)
            assert max(ch.draw.values(), default=0.0) <= lim.counted + EPS, (ch.spec.id, ch.draw, lim)
        for p, a in worst_case(ch, d, g.phases).items():
            if lends and a:
                lent[p] += lim.limit - lim.counted
                a -= lim.limit - lim.counted
            total[p] += a
            if ch.connected and ch.control is ControlState.CONTROLLED:
                steerable[p] += a
    if not g.active:
        return
    for p in g.phases:
        assert lent[p] <= g.tuning.trim_headroom + EPS, (p, lent[p], "more than one car's headroom lent")
        if total[p] > d.budget[p] + 1e-6:
            reserved = total[p] - steerable[p]
            assert reserved > d.budget[p] - m, (p, total[p], d.budget[p], "over budget")
            assert steerable[p] == 0, (p, "sessions left on a phase the reserves already exceed")


def cap_of(ch: ChargerInput) -> float:
    return floor_step(ch.spec.max_current)
