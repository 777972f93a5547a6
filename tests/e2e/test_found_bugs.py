"""Minimal reproductions of product bugs the whole-path scenarios found, kept so they stay fixed."""

from __future__ import annotations

import asyncio

import pytest

from csms.storage.database import Storage
from csms.storage.records import log_event

pytestmark = pytest.mark.e2e


async def test_storage_closes_when_a_write_is_queued_just_before_close(tmp_path):
    """Found as ``csms serve`` hanging on SIGTERM (never exiting) in about one run in three: a write queued
    in the same loop iteration as ``close()`` let the writer consume close's wake-up, commit the batch and
    then wait for a wake-up that never came."""
    storage = Storage(str(tmp_path / "csms.sqlite"))
    await storage.open()
    storage.write_nowait(log_event("last words", 1.0))
    async with asyncio.timeout(3):
        await storage.close()
    assert storage.writes == 1
