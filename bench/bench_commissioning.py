"""How long the commissioning check takes on a 10-charger site, and how close it takes the site to its fuse.

The site is the end-to-end harness's (``tests/e2e/harness.py``): ``csms serve`` as a process at the shipped
defaults, a simulated Amp Guard polled over Modbus TCP, 10 chargers (1.6 and 2.0.1, wired RST, STR and TRS in
turn), each with a 3-phase 32 A car charging, an 80 A fuse and a 10/8/12 A base load. ``csms commission`` runs
as a process, as an installer runs it. Printed: the time from the command to the report (issue 16's target:
under 2 minutes for 10 chargers), each charger's step, the meter's response, and the highest phase current seen
against the fuse. The baseline in the same run is the least a one-charger-at-a-time check could take here: per
charger, the EV's ramp up (``ramp_time``, IEC 61851's 5 s) and one meter poll, with no time to come back down.

Run: ``python bench/bench_commissioning.py [--chargers 10]`` (about 3 minutes with start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import SLOWEST_EV, ChargerSpec, SiteSpec, running_site  # noqa: E402
from tests.e2e.test_commissioning import commission  # noqa: E402

FUSE = 80.0
BASE = (10.0, 8.0, 12.0)
ROTATIONS = ("RST", "STR", "TRS")


async def main(n: int) -> int:
    chargers = [ChargerSpec(f"CP{i + 1}", "ocpp1.6" if i % 2 == 0 else "ocpp2.0.1", rotation=ROTATIONS[i % 3])
                for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        async with running_site(Path(tmp), SiteSpec(chargers, fuse=FUSE, http=True), base_load=BASE) as rig:
            rig.plug_in_all(phases=3, max_current=32.0)
            await rig.settle(lambda s: all(max(d) > 5 for d in s.evs.values()), SLOWEST_EV + 30, "every car charging")
            began, t0 = rig.now(), time.monotonic()
            code, row, output = await commission(str(rig.config_path))
            took = time.monotonic() - t0
            worst = rig.observer.worst(began)
            sc = rig.cfg.smart_charging
            poll = rig.cfg.meters[0].poll_interval
    if not row:
        print(output)
        return 1
    report = row["report"]
    floor = n * (sc.ramp_time + poll)
    print(f"{n} chargers, fuse {FUSE:g} A, shipped defaults (ramp_time {sc.ramp_time:g} s, meter poll {poll:g} s)")
    print(f"  csms commission: exit {code} in {took:.0f} s (target: under 120 s); "
          f"findings {[f['kind'] for f in report['findings']] or 'none'}")
    print(f"  baseline (per charger: the EV's ramp up and one meter poll): {floor:.0f} s; ratio {took / floor:.2f}")
    for step in report.get("steps", []):
        print(f"    {step['charger']}: released at +{step['released']:.1f} s, held again at +{step['held']:.1f} s "
              f"({step['allowed']:g} A)")
    if report.get("latency_median") is not None:
        print(f"  meter shows a release after {report['latency_median']:.1f} s (median), "
              f"{report['latency_max']:.1f} s (slowest)")
    print(f"  highest phase current during the check: {worst:.1f} A (fuse {FUSE:g} A)")
    print(json.dumps({"chargers": n, "seconds": round(took, 1), "exit": code, "worst_phase_a": round(worst, 1),
                      "baseline_s": floor}))
    return 0 if code == 0 and worst <= FUSE else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chargers", type=int, default=10)
    sys.exit(asyncio.run(main(ap.parse_args().chargers)))
