"""EV and site physics, stepped on a manual clock (no sleeping)."""

from __future__ import annotations

import pytest

from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.clock import ManualClock
from simulators.ev import EVModel
from simulators.profiles import Kind, Period, Profile, Purpose, Schedule
from simulators.site import Constant, DailyCurve, Noise, Site, Solar, Steps, to_building

T0 = 1_795_000_000.0


def run(ev: EVModel, offers: list[tuple[float, float]], until: float, step: float = 0.1) -> list[tuple[float, float]]:
    """Steps ``ev`` from 0 to ``until`` with offers [(from t, amps)], returning (t, draw)."""
    out, t = [], 0.0
    while t <= until + 1e-9:
        offer = [a for s, a in offers if s <= t + 1e-9][-1]
        out.append((round(t, 3), ev.update(t, offer)))
        t += step
    return out


def test_ev_waits_ramp_delay_then_ramps_up():
    ev = EVModel(max_current=16, ramp_delay=2.0, ramp_time=1.0)
    trace = dict(run(ev, [(0, 32)], 4.0))
    assert trace[1.9] == 0.0
    assert 0 < trace[2.5] < 16
    assert trace[3.0] == 16.0 and trace[4.0] == 16.0  # capped by the car's own maximum


def test_ev_follows_a_lowered_limit_within_the_ramp_and_never_above_after():
    ev = EVModel(max_current=32, ramp_delay=0.0, ramp_time=1.5)
    trace = run(ev, [(0, 32), (5, 10)], 10.0)
    assert dict(trace)[4.9] == 32
    after = [a for t, a in trace if t >= 5 + 1.5]
    assert after and max(after) <= 10.0
    during = [a for t, a in trace if 5 <= t < 6.5]
    assert during == sorted(during, reverse=True)  # monotone ramp down


def test_ev_with_ramp_down_follows_a_lowered_limit_and_a_pause_along_its_ramp():
    ev = EVModel(max_current=32, ramp_delay=0.0, ramp_time=2.0, ramp_down=True)
    trace = dict(run(ev, [(0, 32), (5, 10), (10, 0)], 14.0))
    assert trace[4.9] == 32
    assert trace[6.0] == pytest.approx(21.0)  # halfway down the 2 s ramp from 32 A to 10 A
    assert trace[7.0] == pytest.approx(10.0) and trace[9.9] == pytest.approx(10.0)
    assert trace[11.0] == pytest.approx(5.0)  # a pause, too, takes the ramp
    assert trace[12.0] == pytest.approx(0.0, abs=1e-9)


def test_charger_refuses_meter_intervals_below_its_minimum():
    from simulators.misbehaviour import Misbehaviour
    charger = SimCharger(SimChargerConfig("CP1", misbehaviour=Misbehaviour(min_meter_interval=30)),
                         ManualClock(T0))
    assert not charger.change_setting("MeterValueSampleInterval", "10")
    assert charger.change_setting("MeterValueSampleInterval", "60") and charger.meter_interval == 60
    assert charger.change_setting("MeterValueSampleInterval", "0")  # off is not "faster"


def test_ev_pauses_below_six_amps_and_resumes():
    ev = EVModel(max_current=16, ramp_delay=1.0, ramp_time=0.5)
    trace = dict(run(ev, [(0, 16), (5, 5), (10, 16)], 14.0))
    assert trace[4.0] == 16 and trace[8.0] == 0.0
    assert trace[10.5] == 0.0  # the start delay applies again after a pause
    assert trace[12.0] == 16


def test_ev_tapers_near_full_and_stops_at_target():
    ev = EVModel(max_current=16, capacity_kwh=1.0, soc_start=0.85, soc_target=0.95, taper_from=0.8,
                 ramp_delay=0, ramp_time=0.1)
    draws = [a for _, a in run(ev, [(0, 16)], 900, step=1.0)]
    assert draws[1] < 16  # already tapering at 85 %
    assert draws[-1] == 0.0 and ev.full
    assert ev.soc == pytest.approx(0.95, abs=0.01)
    assert ev.energy_wh == pytest.approx(100, rel=0.05)


def test_ev_energy_integrates_draw():
    ev = EVModel(max_current=10, phases=1, ramp_delay=0, ramp_time=0.0)
    run(ev, [(0, 10)], 3600, step=10)
    assert ev.energy_wh == pytest.approx(2300, rel=0.01)  # 10 A x 230 V x 1 h on one phase


def test_ev_rejects_bad_phases():
    with pytest.raises(ValueError, match="phases must be 1 or 3"):
        EVModel(phases=2)


def test_loads():
    assert Constant((1, 2, 3)).current(0) == (1, 2, 3)
    steps = Steps(((10.0, (5, 5, 5)), (20.0, (1, 1, 1))))
    assert [steps.current(t) for t in (0, 10, 15, 25)] == [(0, 0, 0), (5, 5, 5), (5, 5, 5), (1, 1, 1)]
    curve = DailyCurve(((0.0, (10, 10, 10)), (12.0, (30, 30, 30))))
    assert curve.current(6 * 3600)[0] == pytest.approx(20)
    assert curve.current(18 * 3600)[0] == pytest.approx(20)  # wraps back towards midnight
    solar = Solar(peak=20, phases=(2,))
    assert solar.current(13 * 3600) == (0.0, -20.0, 0.0)
    assert solar.current(3 * 3600) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        Steps(((5.0, (1, 1, 1)), (1.0, (1, 1, 1))))


def test_noise_is_reproducible_with_the_seed():
    def trace(seed):
        load = Noise(Constant((10, 10, 10)), 2.0, ManualClock(seed=seed))
        return [load.current(t) for t in range(20)]

    assert trace(1) == trace(1) != trace(2)
    assert all(8 <= a <= 12 for p in trace(1) for a in p)


@pytest.mark.parametrize("rotation,expected", [("RST", (1, 2, 3)), ("STR", (3, 1, 2)), ("TSR", (3, 2, 1))])
def test_phase_rotation_maps_to_building(rotation, expected):
    assert to_building((1.0, 2.0, 3.0), rotation) == expected


def station_max(limit: float) -> Profile:
    return Profile(1, 0, Purpose.STATION_MAX, Kind.ABSOLUTE, Schedule((Period(0, limit),), "A", T0 - 10))


def test_site_with_chargers_records_overload_and_respects_rotation():
    clock = ManualClock(start=T0)
    one_phase = SimCharger(SimChargerConfig("A", phases=1, phase_rotation="TRS", max_current=16), clock)
    three = SimCharger(SimChargerConfig("B", max_current=32), clock)
    site = Site(clock, loads=[Steps(((T0 + 30, (20, 20, 20)),), before=(10, 10, 10))], chargers=[one_phase, three],
                fuse=40)
    one_phase.plug_in(EVModel(max_current=16, phases=1, ramp_delay=1, ramp_time=1))
    three.plug_in(EVModel(max_current=32, ramp_delay=1, ramp_time=1))
    for _ in range(600):  # 60 s in 0.1 s steps
        clock.advance(0.1)
        one_phase.step()
        three.step()
        site.record()
    # the one-phase charger's L1 lands on building phase T (3)
    assert site.phase_currents() == (20 + 32, 20 + 32, 20 + 32 + 16)
    assert site.peak() == pytest.approx((52, 52, 68))
    assert not site.never_above()
    over = site.overload_integral()
    # phase 3 is 68 - 40 = 28 A over for ~30 s at the end, and 58 - 40 = 18 A over before that
    assert over[2] == pytest.approx(28 * 30 + 18 * 28, rel=0.05)
    # a station maximum on the big charger brings the building under the fuse
    assert three.store.set(station_max(6)).accepted
    site.history.clear()
    for _ in range(50):
        clock.advance(0.1)
        three.step()
        one_phase.step()
        site.record()
    assert site.phase_currents() == (26, 26, 42)


def test_chargers_before_the_meter_are_not_measured():
    clock = ManualClock(start=T0)
    charger = SimCharger(SimChargerConfig("A", max_current=16), clock)
    site = Site(clock, loads=[Constant((5, 5, 5))], chargers=[charger], chargers_behind_meter=False)
    charger.plug_in(EVModel(max_current=16, ramp_delay=0, ramp_time=0))
    clock.advance(1)
    charger.step()
    assert site.phase_currents() == (21, 21, 21)
    assert site.metered_currents() == (5, 5, 5)


def test_two_connectors_share_the_station_maximum():
    clock = ManualClock(start=T0)
    charger = SimCharger(SimChargerConfig("A", max_current=32, connectors=2), clock)
    assert charger.store.set(station_max(20)).accepted
    charger.plug_in(EVModel(max_current=32, ramp_delay=0, ramp_time=0), 1)
    charger.plug_in(EVModel(max_current=32, ramp_delay=0, ramp_time=0), 2)
    clock.advance(1)
    charger.step()
    assert charger.limit(1).amps == charger.limit(2).amps == 10
    assert charger.draw() == (20, 20, 20)
