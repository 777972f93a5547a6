"""Fixtures shared by every test suite; the helpers themselves live in tests/support."""

import faulthandler
import itertools
import sys
from collections.abc import Iterator

import pytest

from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresCluster, unavailable_reason


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A real mosquitto on 127.0.0.1 and a free port (``.port``), with ``stop()``/``start()`` for restart tests."""
    with Mosquitto() as broker:
        yield broker


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One private PostgreSQL server for the session (its own initdb cluster on a free port, never the machine's
    service); skipped with the reason when this machine has no PostgreSQL binaries. Tests that stop or restart
    the server make their own ``PostgresCluster`` instead."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster, request: pytest.FixtureRequest) -> str:
    """A URL to a fresh, empty database on the session's server (one per test: no test sees another's rows)."""
    name = f"t{next(_db_numbers)}"
    postgres_cluster.create_database(name)
    return postgres_cluster.url.rpartition("/")[0] + "/" + name


_db_numbers = itertools.count(1)


#: No single test runs this long (the slowest e2e tests take about a minute); one that does is stuck.
TEST_HANG_LIMIT_S = 600


@pytest.fixture(autouse=True)
def _fail_loudly_if_stuck() -> Iterator[None]:
    """A test stuck forever (a peer that never answers, a task never cancelled) would hold CI until its 90-minute
    limit with no clue; instead the run prints every thread's traceback and exits non-zero."""
    faulthandler.dump_traceback_later(TEST_HANG_LIMIT_S, exit=True, file=sys.__stderr__)
    yield
    faulthandler.cancel_dump_traceback_later()
