"""``csms commission`` against ``csms serve`` as a process and a simulated site at the shipped defaults: a
correctly wired site passes (exit 0), and each planted wiring fault - alone and two at once - is named with its
fix (exit 1), the fuse never exceeded.

One rig runs the checks in turn, the fault changed on the live site between them (a fault is physics: the
simulated meter and chargers take it at once). The cars are 1-phase, 16 A, on chargers wired RST, STR and TRS,
so that every building phase carries one car alone and the rotation of each charger shows; with a 10 A
base load at most on a phase and a 32 A fuse, even a balancer misled by a fault cannot take the site above it
between checks, so the bound checked is the check's own doing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import pytest

from simulators.meter import MeterFaults
from tests.e2e.harness import SLOWEST_EV, ChargerSpec, SiteSpec, running_site

pytestmark = pytest.mark.e2e

BASE = (10.0, 8.0, 9.0)
FUSE = 32.0


async def commission(config: str) -> tuple[int, dict, str]:
    env = {**os.environ}
    env.pop("CSMS_OPERATOR_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "csms.runtime.cli", "commission", "--config",
                                                config, "--group", "garage", "--json", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(240):
        out, err = await proc.communicate()
    row = json.loads(out) if out.strip().startswith(b"{") else {}
    return proc.returncode, row, err.decode() + out.decode()


#: Seconds from a check's start until its holds are in force: the CLI's start, the holds' decision and the slowest
#: car's response. Its first release comes later (``ramp_time`` + 2 meter polls + 1 s after the holds).
HOLDS_IN_FORCE = 1.5 + SLOWEST_EV


def kinds(row: dict) -> list[tuple[str, str]]:
    return sorted((f["kind"], f["subject"]) for f in row["report"]["findings"])


CASES = [
    ("correct", MeterFaults(), False, {}, []),
    ("reversed clamp", MeterFaults(reversed_clamps=frozenset({2})), False, {}, [("reversed_clamp", "AG1234567G L2")]),
    ("swapped phases", MeterFaults(swapped=(1, 3)), False, {}, [("meter_phases_swapped", "AG1234567G")]),
    ("charger rotation", MeterFaults(), False, {"CP2": "TRS"}, [("phase_rotation", "CP2")]),
    ("meter blind", MeterFaults(), True, {}, [("chargers_not_measured", "garage")]),
    ("reversed + rotation", MeterFaults(reversed_clamps=frozenset({1})), False, {"CP3": "RTS"},
     [("phase_rotation", "CP3"), ("reversed_clamp", "AG1234567G L1")]),
    ("swapped + rotation", MeterFaults(swapped=(2, 3)), False, {"CP1": "STR"},
     [("meter_phases_swapped", "AG1234567G"), ("phase_rotation", "CP1")]),
]


async def test_commissioning_finds_each_planted_fault_and_passes_a_correct_site(tmp_path):
    spec = SiteSpec([ChargerSpec("CP1", "ocpp1.6", rotation="RST"), ChargerSpec("CP2", "ocpp2.0.1", rotation="STR"),
                     ChargerSpec("CP3", "ocpp1.6", rotation="TRS")], fuse=FUSE, http=True)
    async with running_site(tmp_path, spec, base_load=BASE) as rig:
        rig.plug_in_all(phases=1, max_current=16.0)
        await rig.settle(lambda s: all(max(d) > 5 for d in s.evs.values()), SLOWEST_EV + 20, "every car charging")
        for name, faults, blind, wired, expected in CASES:
            rig.meter.faults = faults
            rig.site.chargers_behind_meter = not blind
            for c in rig.sim.fleet:
                c.config.wired_rotation = wired.get(c.id)
            began, t0 = rig.now(), time.monotonic()
            code, row, output = await commission(str(rig.config_path))
            took = time.monotonic() - t0
            print(f"\n{name}: exit {code} in {took:.0f} s; findings {kinds(row) if row else output}; worst phase "
                  f"{rig.observer.worst(began + HOLDS_IN_FORCE):.1f} A once held, {rig.observer.worst(began):.1f} A "
                  f"from the start (fuse {FUSE:g})")
            assert row, output
            if kinds(row) != expected:  # the whole report, with each step's deltas, for the failure's reader
                print(json.dumps(row["report"], indent=1))
            assert kinds(row) == expected, name
            assert code == (0 if not expected else 1), (name, output)
            assert all(c["tested"] for c in row["report"]["chargers"]), (name, row["report"]["chargers"])
            # Rewired under load (a charging car moved to another building phase), the site may be over the fuse
            # until the mains reading shows it, or the check's holds take effect: the planting's doing, not the
            # check's. Everything the check releases comes after its holds, and is judged.
            held = began + HOLDS_IN_FORCE
            if rig.observer.worst(held) > FUSE:  # what each car drew and was offered around it, for the reader
                for smp in rig.observer.since(held - 3.0)[::2][:40]:
                    print(f"{smp.t - began:+6.2f} building {[round(a, 1) for a in smp.building]} " + " ".join(
                        f"{cid} {[round(a, 1) for a in d]}/{smp.offered[cid]:.1f}" for cid, d in smp.evs.items()))
            assert rig.observer.worst(held) <= FUSE, rig.observer.overshoot(FUSE, held)
        caps = [c.id for c in rig.sim.fleet]
        assert caps  # every hold lifted: the cars charge again
        await rig.settle(lambda s: all(max(d) > 5 for d in s.evs.values()), SLOWEST_EV + 20,
                         "every car charging again after the checks")
