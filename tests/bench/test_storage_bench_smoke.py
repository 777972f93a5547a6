"""Smoke test of the storage benchmark (bench/bench_storage.py): a tiny run on both engines prints the side-by-side
table and loses nothing. The figures themselves are the benchmark's output, not a test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import unavailable_reason

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_storage.py"


@pytest.mark.slow
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_the_storage_bench_runs_on_both_engines_side_by_side():
    done = subprocess.run([sys.executable, str(BENCH), "--seconds", "0.3", "--stations", "2,20", "--ceiling-rows",
                           "500"], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "sqlite: SQLite" in out and "postgresql: PostgreSQL" in out and "fsync on" in out
    table = out[out.index("side by side"):].splitlines()
    assert "sqlite w/s" in table[1] and "postgresql p99 ms" in table[1]
    assert [line.split()[0] for line in table[2:4]] == ["2", "20"]
    assert "LOSS" not in done.stderr
