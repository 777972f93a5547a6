"""What ``csms serve`` loads: sqlite-utils brings neither numpy nor pandas along, even where they are installed
(numpy is, in the test environment); code that imports numpy itself still gets it. A one-process server without
[http] loads neither psycopg and the bus (the scaled-out roles') nor aiohttp (the web server's): about 18 MB of
its memory."""

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


def test_a_one_process_server_loads_neither_the_cluster_nor_the_web_stack(tmp_path):
    code = f"""
import asyncio, pathlib, sys
from csms.runtime.app import CentralSystemApp
from tests.csms.harness import site_config
async def main():
    async with CentralSystemApp(site_config(pathlib.Path({str(tmp_path)!r}))) as app:
        assert app.port
asyncio.run(main())
print(sorted(m for m in ('psycopg', 'aiohttp', 'csms.bus', 'csms.cluster.leadership') if m in sys.modules))
"""
    assert _run(code) == "[]"
