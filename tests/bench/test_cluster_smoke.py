"""Smoke test of the scaled-out benchmark (bench/bench_cluster.py) at a tiny size: both forms start, the stations
connect over two gateways, the steady load and the control-loop trials produce finite figures, and every process
stops. Whether the figures meet issue 17's target is the benchmark's output, not a test."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import unavailable_reason

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_cluster.py"

pytestmark = [pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
              pytest.mark.skipif(shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
                                 reason="mosquitto is not installed")]


def test_the_bench_runs_both_forms_at_a_tiny_size_and_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--stations", "60", "--gateways", "2", "--rate", "20", "--warmup", "1",
         "--duration", "3", "--chargers", "6", "--trials", "2", "--time-limit", "240", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=BENCH.parents[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    forms = [r["form"] for r in report["scale"]]
    assert forms[0].startswith("scaled out: 2 gateways") and forms[1].startswith("one process")
    for r in report["scale"]:
        assert r["stations"] == 60 and r["errors"] == 0, r["form"]
        assert r["rate"] > 0 and math.isfinite(r["p99_ms"]), r["form"]
        assert r["lease_losses"] == 0 and set(r["exit_codes"].values()) == {0}, r["form"]
        names = {p["name"] for p in r["processes"]}
        assert {"PostgreSQL", "load generators"} <= names
    assert {"gw1", "gw2", "c1", "mosquitto"} <= {p["name"] for p in report["scale"][0]["processes"]}
    assert [r["trials"] for r in report["latency"]] == [2, 2]
    assert all(0 < r["p50_ms"] < 30_000 for r in report["latency"])
    assert report["latency"][0]["hops_ms"]["commands"] >= 6  # every charger's profile crossed the broker
    left = [cmd for cmd in command_lines() if any(d in cmd for d in report["workdirs"])]
    assert not left, left


def command_lines() -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                pass
    return found
