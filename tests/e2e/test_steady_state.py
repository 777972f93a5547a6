"""Steady state through every meter path: under the fuse, the EV budget used, equal cars sharing equally."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import ChargerSpec, SiteSpec, balanced, ev_budget, running_site, until_balanced

pytestmark = pytest.mark.e2e

BASE = (10.0, 8.0, 12.0)
MIXED = [ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1"), ChargerSpec("CP3", "ocpp1.6", rotation="RST")]


@pytest.mark.parametrize("meter_path", ["modbus", "mqtt", "gateway"])
async def test_steady_state_mixed_versions(tmp_path, request, meter_path):
    """Three equal cars on mixed 1.6/2.0.1 chargers, demand (3 x 32 A) far above the budget."""
    broker = request.getfixturevalue("mosquitto") if meter_path != "modbus" else None
    spec = SiteSpec(MIXED, fuse=40.0, meter_path=meter_path)
    async with running_site(tmp_path, spec, base_load=BASE, mqtt_port=broker and broker.port) as rig:
        assert {c.config.version for c in rig.sim.fleet} == {"ocpp1.6", "ocpp2.0.1"}
        rig.plug_in_all()
        bottleneck = 3
        budget = ev_budget(spec, BASE, bottleneck)  # 40 - 2 - 12 = 26 A
        took = await rig.settle(lambda s: s.ev_total(bottleneck) >= 0.95 * budget, 30,
                                f"EVs use 95 % of the {budget:.1f} A budget on L{bottleneck}")
        await asyncio.sleep(2.0)  # past the first crossing: the limits converge
        window = await rig.hold(3.0)
        assert max(max(s.building) for s in window) <= spec.fuse, "a building phase went above the fuse"
        assert rig.site.never_above(), f"peak {rig.site.peak()} above the {spec.fuse} A fuse at some point"
        used = min(s.ev_total(bottleneck) for s in window)
        assert used >= 0.95 * budget, f"only {used:.1f} of {budget:.1f} A used on L{bottleneck}"
        for s in window:
            draws = [d[bottleneck - 1] for d in s.evs.values()]
            assert max(draws) - min(draws) <= 1.0, f"equal cars draw unequally: {draws}"
        print(f"{meter_path}: settled in {took:.1f} s; L{bottleneck} EV use {used:.1f}/{budget:.1f} A "
              f"({100 * used / budget:.1f} %), peak {max(rig.site.peak()):.1f} A of {spec.fuse:.0f} A")


@pytest.mark.xfail(strict=True, reason=(
    "balancer limit cycle (csms/balancer/allocation.py phase_budget/own_draw): the other load is the mains "
    "reading minus each charger's last MeterValues, up to meter_value_interval older than the reading; cars that "
    "ramp within about a second make that difference look like other load, the budget drops, sessions are paused "
    "below min_current, the cars ramp again, and the group never settles"))
async def test_fast_ramping_cars_settle(tmp_path):
    """Cars that start 0.5 s after being allowed and follow a new offer within 1 s (1 s meter values)."""
    spec = SiteSpec(MIXED, fuse=40.0)
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        rig.plug_in_all(ramp_delay=0.5, ramp_time=1.0)
        budget = ev_budget(spec, BASE, 3)
        await until_balanced(rig, 3, budget, timeout=15)
        await asyncio.sleep(2.0)
        window = await rig.hold(4.0)
        worst = min(window, key=lambda s: s.ev_total(3))
        assert all(balanced(s, 3, budget) for s in window), \
            f"not settled: L3 EV use dropped to {worst.ev_total(3):.1f} of {budget:.1f} A"
