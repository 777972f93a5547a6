"""A stuck test ends the run with what it was stuck on, on the real standard error (not in pytest's capture
file, which is lost when the process exits): every asyncio task's stack, then every thread's traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUCK = '''
import asyncio

async def never_answered():
    await asyncio.Event().wait()

async def test_stuck():
    await asyncio.gather(asyncio.create_task(never_answered()))
'''


def test_a_stuck_test_ends_the_run_naming_the_await_that_never_returned(tmp_path: Path):
    (tmp_path / "test_stuck.py").write_text(STUCK)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", str(ROOT / "pyproject.toml"),
                          "-o", "faulthandler_timeout=3", "-p", "no:cacheprovider", str(tmp_path / "test_stuck.py")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0, run.stdout
    assert "::test_stuck has run 3 s: stuck?" in run.stderr, run.stderr
    assert "in never_answered" in run.stderr and "await asyncio.Event().wait()" in run.stderr, run.stderr
    assert "Timeout (0:00:03)!" in run.stderr, run.stderr  # faulthandler's thread dump, then the exit
