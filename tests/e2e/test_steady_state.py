"""Steady state through every meter path: under the fuse, the EV budget used, equal cars sharing equally."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import SLOWEST_RAMP, ChargerSpec, SiteSpec, ev_budget, running_site

pytestmark = pytest.mark.e2e

BASE = (10.0, 8.0, 12.0)
MIXED = [ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1"), ChargerSpec("CP3", "ocpp1.6", rotation="RST")]


@pytest.mark.parametrize("meter_path, serve_options", [("modbus", ()), ("mqtt", ()), ("gateway", ()),
                                                       ("modbus", ("--uvloop",))],
                         ids=["modbus", "mqtt", "gateway", "modbus-uvloop"])
async def test_steady_state_mixed_versions(tmp_path, request, meter_path, serve_options):
    """Three equal cars on mixed 1.6/2.0.1 chargers, demand (3 x 32 A) far above the budget; also with the
    central system on uvloop (``csms serve --uvloop``), whose transports are not asyncio's classes."""
    broker = request.getfixturevalue("mosquitto") if meter_path != "modbus" else None
    spec = SiteSpec(MIXED, fuse=40.0, meter_path=meter_path)
    async with running_site(tmp_path, spec, base_load=BASE, mqtt_port=broker and broker.port,
                            serve_options=serve_options) as rig:
        assert {c.config.version for c in rig.sim.fleet} == {"ocpp1.6", "ocpp2.0.1"}
        rig.plug_in_all()
        bottleneck = 3
        budget = ev_budget(spec, BASE, bottleneck)  # 40 - 0.65 (default margin) - 12 = 27.35 A
        plugged = rig.now()
        took = await rig.settle(lambda s: s.ev_total(bottleneck) >= 0.95 * budget, 60,
                                f"EVs use 95 % of the {budget:.1f} A budget on L{bottleneck}")
        # Past the first crossing the limits converge: the slowest car's ramp, then a meter-value interval.
        await asyncio.sleep(SLOWEST_RAMP + 1.0)
        assert rig.observer.worst(plugged) <= spec.fuse, rig.observer.overshoot(spec.fuse, plugged)
        window = await rig.hold(5.0)
        assert max(max(s.building) for s in window) <= spec.fuse, "a building phase went above the fuse"
        used = min(s.ev_total(bottleneck) for s in window)
        assert used >= 0.95 * budget, f"only {used:.1f} of {budget:.1f} A used on L{bottleneck}"
        for s in window:
            draws = [d[bottleneck - 1] for d in s.evs.values()]
            assert max(draws) - min(draws) <= 1.0, f"equal cars draw unequally: {draws}"
        print(f"{meter_path}: settled in {took:.1f} s; L{bottleneck} EV use {used:.1f}/{budget:.1f} A "
              f"({100 * used / budget:.1f} %), peak {max(rig.site.peak()):.1f} A of {spec.fuse:.0f} A")


async def test_ramping_cars_are_not_paused_when_the_budget_holds_them_all(tmp_path):
    """Cars that start 0.5 s after being allowed and follow a new offer within 1 s, chargers that report at
    the default 10 s: their ramps show in the 1 s mains readings long before in their own meter values.
    L3 holds 27.35 A for three cars that need 6 A each: once a car draws, its offer must never drop below
    6 A. Watched for 30 s, three meter-value intervals."""
    spec = SiteSpec(MIXED, fuse=40.0)
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        rig.plug_in_all(ramp_delay=0.5, ramp_time=1.0)
        started: dict[str, float] = {}
        paused: list[str] = []
        for _ in range(int(30 / 0.05)):
            s = rig.observer.sample()
            for cid, draw in s.evs.items():
                if max(draw) > 1.0:
                    started.setdefault(cid, s.t)
                if cid in started and s.offered[cid] < 6.0:
                    paused.append(f"{cid} offered {s.offered[cid]:.1f} A at +{s.t - started[cid]:.1f} s")
            await asyncio.sleep(0.05)
        assert len(started) == 3, f"not every car started: {sorted(started)}"
        assert not paused, f"{len(paused)} samples of a car paused needlessly, first: {paused[:3]}"
