"""The controller: state events, readings and control reports in, one coalesced decision per group out."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from csms.balancer import ControlState, Decision
from csms.balancer.controller import BalancerController
from csms.config import parse_config
from csms.domain import state as st

SERIAL = "AG1234567G"


def site(groups: list[dict] | None = None, chargers: list[dict] | None = None):
    chargers = chargers or [{"id": "CP1"}, {"id": "CP2"}]
    groups = groups or [{"id": "g", "meter": SERIAL, "chargers": [c["id"] for c in chargers]}]
    return parse_config({
        "server": {"security_profile": 0},
        "organisations": [{"id": "org", "name": "Org"}],
        "meters": [{"serial": SERIAL, "pin": "12345678", "organisation": "org"}],
        "chargers": [{"organisation": "org", "max_current": 32, "offline_current": 6, **c} for c in chargers],
        "load_balancers": [{"name": "G", "organisation": "org", "supply_max_current": 35, "max_current_online": 35,
                            "max_current_offline": 16, "margin": 3, **g} for g in groups],
    })


class Recorder:
    def __init__(self, fail: set[str] = frozenset()):
        self.decisions: list[Decision] = []
        self.fail = fail

    def apply(self, decision: Decision) -> None:
        self.decisions.append(decision)
        if decision.group_id in self.fail:
            raise RuntimeError("sink broken")

    record_decision = apply

    def last(self, group_id: str = "g") -> Decision | None:
        return next((d for d in reversed(self.decisions) if d.group_id == group_id), None)


async def until(predicate, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


def plug(state: st.SiteState, cid: str, connector: int = 1) -> None:
    now = time.time()
    state.connected(cid, st.Version.V16, now)
    state.status(cid, connector, "Charging", None, now)
    state.transaction_started(cid, st.Transaction(f"tx-{cid}", connector, "tag", now))


@pytest.fixture
async def running():
    made = []

    async def make(cfg=None, **kw):
        state = st.SiteState()
        sink, store = Recorder(kw.pop("fail", set())), Recorder()
        ctl = BalancerController(cfg or site(), state, sink, store, debounce=0.01, **kw)
        await ctl.start()
        made.append(ctl)
        return ctl, state, sink, store

    yield make
    for ctl in made:
        await ctl.stop()


async def test_a_reading_produces_a_decision_for_the_sink_and_the_store(running):
    ctl, state, sink, store = await running()
    plug(state, "CP1")
    plug(state, "CP2")
    ctl.on_control("CP1", ControlState.CONTROLLED, 6)
    ctl.on_control("CP2", ControlState.CONTROLLED, 6)
    ctl.on_reading(SERIAL, (20.0, 10.0, 10.0), frozenset(), time.time())
    await until(lambda: (d := ctl.decision("g")) is not None and d.meter_fresh)
    d = ctl.decision("g")
    # 35 fuse - 3 margin - 20 on L1 (no own draw known yet): 12 A for two sessions.
    assert d.budget[1] == pytest.approx(12)
    assert {c: lim.limit for c, lim in d.limits.items()} == {"CP1": 6, "CP2": 6}
    assert sink.last() is d and store.last() is d
    assert "L1 is full" in ctl.explain("CP1")


async def test_a_silent_meter_moves_the_group_to_its_offline_budget(running):
    ctl, state, sink, _ = await running(site([{"id": "g", "meter": SERIAL, "chargers": ["CP1"], "stale_after": 0.3}],
                                             [{"id": "CP1"}]))
    ctl.on_reading(SERIAL, (1.0, 1.0, 1.0), frozenset(), time.time())
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").meter_fresh)
    await until(lambda: not ctl.decision("g").meter_fresh, timeout=1.5)
    assert ctl.decision("g").budget == {1: 16, 2: 16, 3: 16}
    assert "no valid meter reading" in ctl.decision("g").budget_notes[1]


async def test_an_offline_meter_moves_the_group_to_its_offline_budget_at_once(running):
    ctl, *_ = await running()
    ctl.on_reading(SERIAL, (1.0, 1.0, 1.0), frozenset(), time.time())
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").meter_fresh)
    ctl.on_meter_state(SERIAL, online=False)
    await until(lambda: not ctl.decision("g").meter_fresh, timeout=0.5)


async def test_an_older_reading_is_ignored(running):
    ctl, *_ = await running()
    now = time.time()
    ctl.on_reading(SERIAL, (1.0, 1.0, 1.0), frozenset(), now)
    ctl.on_reading(SERIAL, (30.0, 30.0, 30.0), frozenset(), now - 1)
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").meter_fresh)
    assert ctl.decision("g").budget[1] == pytest.approx(31)


async def test_saturated_meter_phase_is_overload(running):
    ctl, state, *_ = await running()
    plug(state, "CP1")
    ctl.on_control("CP1", ControlState.CONTROLLED, 6)
    ctl.on_reading(SERIAL, (100.0, 1.0, 1.0), frozenset({1}), time.time())
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").meter_fresh)
    assert ctl.decision("g").budget[1] <= 0 and ctl.decision("g").limits["CP1"].limit == 0


class Clock:
    """time.time() plus an offset a test moves on: the controller's clock, and its samples' timestamps."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def test_phases_in_use_are_learned_through_the_rotation(running):
    cfg = site(chargers=[{"id": "CP1", "phase_rotation": "STR"}, {"id": "CP2"}])
    clock = Clock()
    ctl, state, *_ = await running(cfg, clock=clock)
    plug(state, "CP1")
    ctl.on_control("CP1", ControlState.CONTROLLED, 6)
    clock.offset += cfg.smart_charging.ramp_time  # the EV has had its time to follow our limit
    # A charger that reports L1 only could be a 3-phase EV: nothing is learned from it.
    state.sampled("CP1", 1, st.PhaseSample(clock(), (10.0, None, None)))
    await until(lambda: ctl.decision("g") is not None and "CP1" in ctl.decision("g").limits)
    await asyncio.sleep(0.05)
    assert ctl.decision("g").limits["CP1"].phases == (2, 3, 1)
    # Charger L1 carries the EV; STR puts charger L1 on building phase 2.
    state.sampled("CP1", 1, st.PhaseSample(clock(), (10.0, 0.2, 0.0)))
    await until(lambda: ctl.decision("g").limits["CP1"].phases == (2,))
    # The session ends: forgotten.
    tx = state.stations["CP1"].transactions[1]
    state.transaction_ended("CP1", tx)
    await until(lambda: ctl.decision("g").limits["CP1"].reason.startswith("no session"))


async def test_a_3_phase_car_on_a_1_phase_fallback_is_not_learned_as_1_phase(running):
    """Found by the demo: a new session runs on the charger's offline fallback (one phase) until our first
    limit is accepted; its 3-phase car meanwhile draws on one phase. Learned then, the car was counted on one
    phase once our 3-phase limit let it draw on three, and the fuse was 2 A over for seconds."""
    cfg = site(chargers=[{"id": "CP1", "phase_rotation": "STR"}, {"id": "CP2"}])
    clock = Clock()
    ctl, state, *_ = await running(cfg, clock=clock)
    plug(state, "CP1")
    ctl.on_control("CP1", ControlState.PENDING, 6)  # its fallback is in force, our first limit is in flight
    clock.offset += cfg.smart_charging.ramp_time
    state.sampled("CP1", 1, st.PhaseSample(clock(), (6.0, 0.0, 0.0)))
    ctl.on_control("CP1", ControlState.CONTROLLED, 16)
    state.sampled("CP1", 1, st.PhaseSample(clock(), (6.0, 0.0, 0.0)))  # still switching over
    await until(lambda: ctl.decision("g") is not None and "CP1" in ctl.decision("g").limits)
    await asyncio.sleep(0.05)
    assert ctl.decision("g").limits["CP1"].phases == (2, 3, 1)
    # Once it has had its time under our limit, a sample on one phase is a 1-phase car.
    clock.offset += cfg.smart_charging.ramp_time
    state.sampled("CP1", 1, st.PhaseSample(clock(), (16.0, 0.0, 0.0)))
    await until(lambda: ctl.decision("g").limits["CP1"].phases == (2,))


async def test_own_draw_is_mapped_to_building_phases_and_not_counted_as_other_load(running):
    cfg = site(chargers=[{"id": "CP1", "phase_rotation": "TRS"}, {"id": "CP2"}])
    ctl, state, *_ = await running(cfg)
    plug(state, "CP1")
    ctl.on_control("CP1", ControlState.CONTROLLED, 16)
    state.sampled("CP1", 1, st.PhaseSample(time.time(), (16.0, 16.0, 16.0)))
    ctl.on_reading(SERIAL, (20.0, 18.0, 16.0), frozenset(), time.time())
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").meter_fresh)
    # Other load: 4, 2, 0 A; budget 35 - 3 - other.
    assert ctl.decision("g").budget == pytest.approx({1: 28, 2: 30, 3: 32})


async def test_disconnect_reserves_until_the_fallback_is_known(running):
    ctl, state, *_ = await running()
    plug(state, "CP1")
    plug(state, "CP2")
    for c in ("CP1", "CP2"):
        ctl.on_control(c, ControlState.CONTROLLED, 6)
    ctl.on_reading(SERIAL, (0.0, 0.0, 0.0), frozenset(), time.time())
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").limits["CP1"].limit == 16)
    state.disconnected("CP2", time.time())
    # Unknown: CP2 may draw its 32 A, so nothing is left for CP1.
    await until(lambda: ctl.decision("g").limits["CP1"].limit == 0)
    assert not ctl.decision("g").limits["CP2"].controlled
    ctl.on_control("CP2", ControlState.FALLBACK, None)
    # Its 6 A fallback on phase 1: CP1 gets 32 - 6.
    await until(lambda: ctl.decision("g").limits["CP1"].limit == 26)


async def test_a_burst_of_triggers_is_coalesced(running):
    ctl, state, sink, _ = await running()
    await until(lambda: len(sink.decisions) >= 1)
    before = len(sink.decisions)
    now = time.time()
    for i in range(200):
        ctl.on_reading(SERIAL, (float(i % 7), 0.0, 0.0), frozenset(), now + i * 1e-4)
    await asyncio.sleep(0.2)
    assert 1 <= len(sink.decisions) - before <= 3


async def test_a_failing_sink_does_not_stop_its_group_or_others(running, caplog):
    cfg = site([{"id": "a", "chargers": ["CP1"]}, {"id": "b", "chargers": ["CP2"]}])
    ctl, state, sink, _ = await running(cfg, fail={"a"}, tick=0.05)
    await until(lambda: sum(d.group_id == "a" for d in sink.decisions) >= 2
                and sum(d.group_id == "b" for d in sink.decisions) >= 2)
    assert "group a: the limit sink refused the decision" in caplog.text


async def test_limit_changes_are_logged_at_info_and_unchanged_runs_at_debug(running, caplog):
    caplog.set_level(logging.DEBUG, logger="csms.balancer.controller")
    ctl, state, sink, _ = await running(tick=0.05)
    plug(state, "CP1")
    state.connected("CP2", st.Version.V201, time.time())
    ctl.on_control("CP1", ControlState.CONTROLLED, 6)
    ctl.on_control("CP2", ControlState.CONTROLLED, None)
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").limits["CP1"].limit > 0)
    await until(lambda: "limits unchanged" in caplog.text)
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("group g:" in m and "CP1 16.0 A on L1+L2+L3" in m for m in info), info


async def test_stop_cancels_every_task_and_unsubscribes():
    state = st.SiteState()
    sink = Recorder()
    ctl = BalancerController(site([{"id": "a", "chargers": ["CP1"]}, {"id": "b", "chargers": ["CP2"]}]), state, sink,
                             debounce=0.01)
    await ctl.start()
    await until(lambda: len(sink.decisions) >= 2)
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("balancer group")]
    assert len(tasks) == 2
    await ctl.stop()
    assert all(t.done() for t in tasks)
    assert not state._listeners
    n = len(sink.decisions)
    plug(state, "CP1")
    await asyncio.sleep(0.05)
    assert len(sink.decisions) == n


async def test_status_decides_whether_a_transaction_wants_current(running):
    ctl, state, *_ = await running()
    plug(state, "CP1")
    ctl.on_control("CP1", ControlState.CONTROLLED, 6)
    state.connected("CP2", st.Version.V16, time.time())
    ctl.on_control("CP2", ControlState.CONTROLLED, None)
    await until(lambda: ctl.decision("g") is not None and ctl.decision("g").limits["CP1"].limit == 16)
    # A car that pauses itself keeps its session (it is trimmed, not paused, so it can resume)...
    state.status("CP1", 1, "SuspendedEV", None, time.time())
    await asyncio.sleep(0.05)
    assert ctl.decision("g").limits["CP1"].limit == 16
    # ...a session that is finishing wants nothing.
    state.status("CP1", 1, "Finishing", None, time.time())
    await until(lambda: ctl.decision("g").limits["CP1"].limit == 0)
    assert ctl.decision("g").limits["CP1"].reason.startswith("no session")
