"""Fixtures shared by every test suite; the helpers themselves live in tests/support."""

import faulthandler
import sys
from collections.abc import Iterator

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A real mosquitto on 127.0.0.1 and a free port (``.port``), with ``stop()``/``start()`` for restart tests."""
    with Mosquitto() as broker:
        yield broker


#: No single test runs this long (the slowest e2e tests take about a minute); one that does is stuck.
TEST_HANG_LIMIT_S = 600


@pytest.fixture(autouse=True)
def _fail_loudly_if_stuck() -> Iterator[None]:
    """A test stuck forever (a peer that never answers, a task never cancelled) would hold CI until its 90-minute
    limit with no clue; instead the run prints every thread's traceback and exits non-zero."""
    faulthandler.dump_traceback_later(TEST_HANG_LIMIT_S, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()
