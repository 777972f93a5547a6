"""What goes wrong on a real site, end to end: a load step, a silent meter, a lost charger, a killed central system.

Each test first lets three equal cars share the bottleneck phase (L3: 40 A fuse - 0.65 A default margin - 12 A
other load = 27.35 A), then injects the fault and times the site physics' answer against a bound derived from
the shipped defaults (read from the config ``csms serve`` runs) and the cars' response times. Figures (times,
overload integrals) are printed for ``pytest -s`` and recorded as properties.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import datetime

import pytest

from simulators.chargepoint16 import ChargePoint16
from simulators.chargepoint201 import ChargePoint201
from simulators.site import Steps
from tests.e2e.harness import (
    SLOWEST_RAMP, ChargerSpec, Rig, SiteSpec, ev_budget, running_site, until_balanced, wait_until,
)

pytestmark = pytest.mark.e2e

BASE = (10.0, 8.0, 12.0)
L3 = 3
#: These tests are about the failsafe TTL itself (a charger that loses the central system falls back by itself
#: when its dynamic limit expires). The shipped 60 s would make each of them 2-3 minutes long; 15 s keeps them
#: bounded and exercises the same mechanism (refresh every TTL/3, expiry, fallback).
TTL = 15.0
#: The central system's own share of a reaction: the 20 ms debounce, one round trip, the simulated charger's
#: 0.25 s physics tick, on a 2-core machine shared with other test runs. Added to the bounds, never instead.
PROCESSING = 1.0


def chargers() -> list[ChargerSpec]:
    return [ChargerSpec("CP1", "ocpp1.6"), ChargerSpec("CP2", "ocpp2.0.1"), ChargerSpec("CP3", "ocpp1.6")]


async def balanced_start(rig: Rig) -> float:
    """Cars in, shared, and settled (a second more, so no car is still ramping when the fault comes)."""
    rig.plug_in_all()
    budget = ev_budget(rig.spec, BASE, L3)
    await until_balanced(rig, L3, budget, timeout=60)
    await asyncio.sleep(SLOWEST_RAMP)
    return budget


async def test_load_step_is_back_under_the_fuse_within_a_meter_interval_plus_ramp(tmp_path, record_property):
    spec = SiteSpec(chargers())
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        await balanced_start(rig)
        await asyncio.sleep(1.0)
        rig.site.history.clear()
        step_at = rig.now() + 0.05
        rig.add_load(Steps(((step_at, (0.0, 0.0, 10.0)),)))  # an oven on L3: 12 + 10 A other load
        await rig.hold(rig.poll_interval + SLOWEST_RAMP + PROCESSING + 2.0)
        over = [s for s in rig.observer.since(step_at) if s.building[L3 - 1] > spec.fuse + 1e-9]
        recovered = (over[-1].t - step_at) if over else 0.0
        # A reading (every poll_interval), the decrease at once, the slowest car's ramp down.
        bound = rig.poll_interval + SLOWEST_RAMP + PROCESSING
        integral = rig.site.overload_integral()[L3 - 1]
        record_property("load_step_recovery_s", round(recovered, 2))
        record_property("load_step_overload_As", round(integral, 2))
        print(f"load step +10 A on L3: back under the fuse after {recovered:.2f} s (bound {bound:.2f} s), "
              f"overload integral {integral:.2f} A·s, peak {rig.site.peak()[L3 - 1]:.1f} A")
        assert recovered <= bound, f"L3 above the {spec.fuse} A fuse for {recovered:.2f} s after the step"
        after = ev_budget(spec, (BASE[0], BASE[1], BASE[2] + 10.0), L3)
        assert rig.observer.last.ev_total(L3) <= after + 0.5
        assert integral <= 10.0 * bound, "overload integral larger than the step itself over the bound"


async def test_silent_meter_brings_the_group_within_max_current_offline(tmp_path, record_property):
    spec = SiteSpec(chargers(), max_current_offline=20.0)
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        await balanced_start(rig)
        silent_at = rig.now()
        rig.meter.go_offline()

        def within(s) -> bool:
            return all(s.ev_total(p) <= spec.max_current_offline + 0.05 for p in (1, 2, 3))

        bound = rig.stale_after + rig.poll_interval + SLOWEST_RAMP + PROCESSING
        took = await rig.settle(within, bound + 5, f"the group draws at most max_current_offline "
                                                   f"{spec.max_current_offline} A per phase")
        record_property("meter_silent_to_offline_budget_s", round(took, 2))
        print(f"meter silent: group within {spec.max_current_offline} A after {took:.2f} s (bound {bound:.2f} s)")
        assert took <= bound
        window = await rig.hold(2.0)
        assert all(within(s) for s in window)
        assert rig.observer.worst(silent_at) <= spec.fuse
        rig.meter.go_online()
        await until_balanced(rig, L3, ev_budget(spec, BASE, L3), timeout=60)


async def test_meter_silent_while_cars_ramp_keeps_the_fuse(tmp_path, record_property):
    spec = SiteSpec(chargers(), max_current_offline=20.0)
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        rig.plug_in_all()
        await rig.settle(lambda s: all(max(d) >= 2.0 for d in s.evs.values()), 15, "every car starts drawing")
        rig.meter.go_offline()  # the last reading holds the cars' first few amps
        await rig.hold(rig.stale_after + rig.poll_interval + SLOWEST_RAMP + PROCESSING)
        peak = max(rig.site.peak())
        record_property("meter_silent_while_ramping_peak_A", round(peak, 1))
        print(f"meter silent while ramping: peak {peak:.1f} A on a {spec.fuse:.0f} A fuse, overload "
              f"{max(rig.site.overload_integral()):.1f} A·s")
        assert rig.site.never_above(), f"peak {peak:.1f} A above the {spec.fuse} A fuse"


async def test_lost_charger_falls_back_by_itself_and_is_rebalanced_when_back(tmp_path, record_property):
    spec = SiteSpec(chargers(), smart_charging={"failsafe_ttl": TTL})  # about the TTL: see TTL
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        budget = await balanced_start(rig)
        lost = rig.charger("CP1")
        cut_at = rig.now()
        lost.disconnect()
        offline = spec.chargers[0].offline_current

        def fallen_back(s) -> bool:
            return max(s.evs["CP1"]) <= offline + 0.05

        took = await rig.settle(fallen_back, TTL + 10, f"CP1 draws at most its offline current {offline} A")
        bound = TTL + SLOWEST_RAMP + PROCESSING
        record_property("charger_lost_to_fallback_s", round(took, 2))
        print(f"charger lost: at its {offline} A fallback after {took:.2f} s (bound failsafe_ttl + ramp "
              f"= {bound:.2f} s)")
        assert took <= bound
        # The others may use what the lost charger cannot draw any more, and only that.
        others = ["CP2", "CP3"]

        def rest_used(s) -> bool:
            # What the lost charger may draw is reserved in full on its offline phase, on top of its present
            # draw in the mains reading: offline, that draw cannot be known, so it is counted twice.
            reserved = {p: offline if p == spec.chargers[0].offline_phase else 0.0 for p in (1, 2, 3)}
            rest = {p: ev_budget(spec, BASE, p) - s.evs["CP1"][p - 1] - reserved[p] for p in (1, 2, 3)}
            p = min(rest, key=rest.get)
            return fallen_back(s) and sum(s.evs[c][p - 1] for c in others) >= 0.95 * rest[p]

        await rig.settle(rest_used, 30, "the connected cars take up what the lost one leaves of the budget")
        await rig.hold(1.0)
        assert rig.observer.worst(cut_at) <= spec.fuse, "the site went above its fuse while CP1 was away"
        lost.reconnect()
        await lost.wait_connected(timeout=10)
        took = await until_balanced(rig, L3, budget, timeout=60)
        print(f"charger back: the three cars share L3 again after {took:.2f} s")


# A session that ends while the central system is down: the charger reconnects, may report Available before
# it drains its queued StopTransaction, and must still end up controlled (its offline fallback) afterwards.
@pytest.mark.parametrize("ends_offline", [False, True], ids=["sessions-continue", "a-session-ends-while-down"])
async def test_killed_central_system_loses_nothing_it_acknowledged(tmp_path, monkeypatch, record_property,
                                                                   ends_offline):
    acked: list[tuple[str, str, dict, object]] = []

    def recording(cls):
        original = cls.call

        async def call(self, payload, *args, **kw):
            result = await original(self, payload, *args, **kw)
            if result is not None:
                acked.append((self.sim.id, type(payload).__name__, dataclasses.asdict(payload), result))
            return result
        monkeypatch.setattr(cls, "call", call)

    recording(ChargePoint16)
    recording(ChargePoint201)
    spec = SiteSpec(chargers(), smart_charging={"failsafe_ttl": TTL})  # about the TTL: see TTL
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        budget = await balanced_start(rig)
        await asyncio.sleep(1.5)  # some meter values acknowledged
        rig.csms.kill()
        killed_at = rig.now()
        offline = max(c.offline_current for c in spec.chargers)
        took = await rig.settle(lambda s: all(max(d) <= offline + 0.05 for d in s.evs.values()), TTL + 10,
                                "every charger at its offline current")
        record_property("csms_killed_to_fallback_s", round(took, 2))
        print(f"central system killed: every charger at its fallback after {took:.2f} s")
        assert took <= TTL + SLOWEST_RAMP + PROCESSING
        if ends_offline:
            rig.charger("CP1").unplug()  # nobody listens: its StopTransaction waits in the charger's queue
        await asyncio.sleep(1.0)
        restarted_at = rig.now()
        outage = [s for s in rig.observer.since(killed_at) if s.t <= restarted_at]
        assert max(max(s.building) for s in outage) <= spec.fuse, "above the fuse while the central system was down"
        await rig.csms.start()
        await asyncio.gather(*(c.wait_connected(timeout=15) for c in rig.sim.fleet))
        charging = ["CP2", "CP3"] if ends_offline else None
        took = await until_balanced(rig, L3, budget, charging, timeout=60)
        print(f"central system restarted: the cars share L3 again after {took:.2f} s")
        if not ends_offline:
            rig.charger("CP1").unplug()
        await wait_until(lambda: any(a == "StopTransaction" for _, a, _, _ in acked), 10,
                         "CP1's StopTransaction is acknowledged")
    # The rig has stopped csms serve cleanly; everything acknowledged must be in its database.
    db = sqlite3.connect(rig.db_path)
    missing = [m for m in unrecorded(db, acked)]
    record_property("acknowledged_messages_checked", len(acked))
    assert not missing, f"{len(missing)} acknowledged messages not in the database, e.g. {missing[:3]}"
    assert sum(1 for _, a, _, _ in acked if a in ("MeterValues", "TransactionEvent")) >= 4


def unrecorded(db: sqlite3.Connection, acked: list[tuple[str, str, dict, object]]):
    """Yields each acknowledged transaction fact or meter value that the database does not hold."""
    def stamp(ts: str) -> float:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()

    def has_value(station: str, ts: str) -> bool:
        return db.execute("SELECT 1 FROM meter_values WHERE station_id = ? AND abs(taken_at - ?) < 0.002",
                          [station, stamp(ts)]).fetchone() is not None

    for station, action, payload, result in acked:
        if action == "StartTransaction":
            row = db.execute("SELECT 1 FROM transactions WHERE station_id = ? AND transaction_id = ?",
                             [station, str(result.transaction_id)]).fetchone()
            if row is None:
                yield station, action, result.transaction_id
        elif action == "StopTransaction":
            row = db.execute("SELECT stopped_at FROM transactions WHERE station_id = ? AND transaction_id = ?",
                             [station, str(payload["transaction_id"])]).fetchone()
            if row is None or row[0] is None:
                yield station, action, payload["transaction_id"]
        elif action == "TransactionEvent":
            tx = payload["transaction_info"]["transaction_id"]
            row = db.execute("SELECT 1 FROM transaction_events WHERE station_id = ? AND transaction_id = ? "
                             "AND seq_no = ?", [station, tx, payload["seq_no"]]).fetchone()
            if row is None:
                yield station, action, tx, payload["seq_no"]
            for mv in payload.get("meter_value") or []:
                if any(sv.get("measurand") == "Current.Import" for sv in mv["sampled_value"]) \
                        and not has_value(station, mv["timestamp"]):
                    yield station, "meter value", mv["timestamp"]
        elif action == "MeterValues":
            for mv in payload["meter_value"]:
                if not has_value(station, mv["timestamp"]):
                    yield station, "meter value", mv["timestamp"]
