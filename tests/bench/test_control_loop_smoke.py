"""Smoke test of the control-loop benchmark (bench/bench_control_loop.py): a tiny run of the real central system
against its charger fleet prints a decrease and an increase, each with the bare OCPP path measured beside its
trials. The figures themselves are the benchmark's output, not a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_control_loop.py"


@pytest.mark.parametrize("loop", [[], ["--uvloop"]], ids=["asyncio", "uvloop"])
def test_the_control_loop_bench_runs_and_pairs_each_trial_with_the_bare_path(loop):
    done = subprocess.run([sys.executable, str(BENCH), "--sizes", "10", "--trials", "4", *loop], capture_output=True,
                          text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["chargers"])
    assert "baseline p50" in header and "paired p50" in header and "paired p99" in header
    rows = [line.split() for line in lines[lines.index(header) + 1:]]
    assert [(r[0], r[2], r[3]) for r in rows] == [("10", "decrease", "2"), ("10", "increase", "2")]
    columns = header.replace("connect s", "connect_s").replace("p50 ms", "p50_ms").replace("p99 ms", "p99_ms") \
        .replace("max ms", "max_ms").replace("decided p50", "decided").replace("first p50", "first") \
        .replace("baseline p50", "baseline").replace("paired p50", "paired50").replace("paired p99", "paired99") \
        .split()
    for row in rows:
        values = dict(zip(columns, row))
        assert 0 < float(values["p50_ms"]) <= float(values["p99_ms"]) <= float(values["max_ms"])
        assert 0 < float(values["paired50"]) <= float(values["paired99"])
        assert float(values["baseline"]) > 0


def test_the_control_loop_bench_times_the_ocpp_package_path_beside_it():
    """``--ocpp-package``: issue 14's yardstick, a central system on the `ocpp` package sending the same profiles,
    validating and not, with the product's p99 over it."""
    done = subprocess.run([sys.executable, str(BENCH), "--sizes", "10", "--trials", "2", "--ocpp-package"],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "the `ocpp` package's call path" in line]
    assert [("not validating" in line, "validating" in line) for line in lines] == [(True, True), (False, True)]
    for line in lines:
        assert "p50 " in line and "the product's p99 over it: decrease " in line and "target: 0.27" in line
