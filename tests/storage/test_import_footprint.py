"""What ``csms serve`` loads: sqlite-utils brings neither numpy nor pandas along, even where they are installed
(numpy is, in the test environment); code that imports numpy itself still gets it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.test_architecture import ROOT


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def test_the_server_does_not_import_numpy_through_sqlite_utils():
    assert _run("import sys, csms.runtime.app; print('numpy' in sys.modules, 'pandas' in sys.modules)") == \
        "False False"


@pytest.mark.skipif(importlib.util.find_spec("numpy") is None, reason="numpy is not installed here")
def test_numpy_stays_importable_after_the_storage_was():
    assert _run("import csms.storage.sqlite, numpy; print(numpy.zeros(2).sum())") == "0.0"
