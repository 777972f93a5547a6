"""Smoke test of the control-quality benchmark's harness (bench/cq_sim.py, bench/bench_control_quality.py).

It runs one tiny condition for about a simulated minute and checks only that the figures are produced, are
finite, and that the fuse figures come from the simulated site. Whether the control loop meets issue 13's
targets is the benchmark's output, not a test.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench_control_quality as bcq  # noqa: E402
import cq_sim  # noqa: E402
from simulators.site import Record, Site  # noqa: E402

FIGURES = ["util_pct", "util_min_phase_pct", "spread_a", "changes_per_charger_min", "overload_as_steady",
           "overload_as_total", "peak_phase_a"]


def tiny(**kw) -> cq_sim.Condition:
    cars = (cq_sim.Car("CP1", plug_at=3.0), cq_sim.Car("CP2", plug_at=4.0))
    base = dict(name="tiny", site="A", fuse=63, base=20, cars=cars, max_current_online=63, mv_interval=10,
                ev_response=0.5, duration=60, warmup=30)
    return cq_sim.Condition(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_run():
    cond = tiny()
    return cond, cq_sim.run_condition(cond)


def test_figures_are_produced_and_finite(tiny_run):
    cond, res = tiny_run
    for key in FIGURES:
        assert cq_sim.finite(res[key]), (key, res[key])
    assert res["pauses"] >= 0 and res["pauses_total"] >= res["pauses"]
    assert res["stats"]["readings"] == 60  # the mains meter read every second
    assert res["stats"]["profiles_accepted"] > 0  # the real delivery drove the fake links
    rec = res["_recording"]
    assert rec.t[-1] == pytest.approx(cond.duration, abs=0.2)
    assert any(max(rec.draw[c]) > 0 for c in rec.draw)  # the cars charged


def test_fuse_figures_come_from_the_simulated_site(tiny_run):
    cond, res = tiny_run
    rec = res["_recording"]
    # The same integral as simulators.site.Site computes over its own recording, phases added.
    site = Site(clock=None, fuse=cond.fuse)
    site.history = [Record(t, p) for t, p in zip(rec.t, rec.phases)]
    assert res["overload_as_total"] == pytest.approx(sum(site.overload_integral()), abs=1e-6)
    assert res["peak_phase_a"] == pytest.approx(max(site.peak()))
    # What the fuse carries is the base load plus the cars' draws: never below the base load less its noise.
    assert min(min(p) for p in rec.phases) >= cond.base - cond.noise - 1e-9
    assert res["util_pct"] == pytest.approx(
        sum(max(p) for t, p in zip(rec.t, rec.phases) if t >= cond.warmup) / cond.fuse * 100
        / sum(1 for t in rec.t if t >= cond.warmup))


def test_a_base_load_above_the_fuse_shows_as_overload_whatever_the_balancer_does():
    cond = tiny(base=66.0, duration=20, warmup=5)
    res = cq_sim.run_condition(cond)
    floor = (66.0 - cond.noise - cond.fuse) * 3 * (cond.duration - cond.warmup - 0.2)
    assert res["overload_as_steady"] >= floor
    assert res["util_pct"] > 100


def test_report_marks_each_figure(tiny_run):
    _, res = tiny_run
    side = {"results": {"tiny": {k: v for k, v in res.items() if k != "_recording"}}}
    text = bcq.report(["tiny"], {"tiny": "A"}, None, side, "skipped")
    row = next(line for line in text.splitlines() if line.startswith("tiny"))
    assert row.count("✓") + row.count("✗") == 5  # site A: util, spread, changes, pauses, A·s steady
    assert not any(math.isnan(v) for v in res["util_phase_pct"])


def test_matrix_names_and_quick_subset():
    full = bcq.conditions()
    assert set(bcq.QUICK) <= set(full)
    assert bcq.PLOT_CONDITION in full and full[bcq.PLOT_CONDITION].mv_interval == 60
    assert len(full) == 5 * len(bcq.INTERVALS) * len(bcq.RESPONSES)
    assert replace(full["D-mv10-ev5"], trace=True).step_at is not None
