"""Fixtures shared by every test suite; the helpers themselves live in tests/support."""

import itertools
import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.support.hang_report import HangReport
from tests.support.mosquitto import Mosquitto
from tests.support.postgres import PostgresCluster, unavailable_reason

# Property tests draw new examples on every local run, so rare cases keep being looked for where a failure can be
# studied. CI (CI=true) draws a fixed set per test instead: a run on the same code gives the same verdict, and a
# rare case found by chance does not fail an unrelated change.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")


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


def pytest_configure(config: pytest.Config) -> None:
    # Before any test: file descriptor 2 is still the real standard error (see tests/support/hang_report.py).
    config.stash[_hang_report] = HangReport(float(config.getini("faulthandler_timeout") or 0))


def pytest_unconfigure(config: pytest.Config) -> None:
    config.stash[_hang_report].close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """A test stuck forever (a peer that never answers, a task never cancelled, an event loop that cannot close)
    would hold CI until its 90-minute limit with no clue. pytest's ``faulthandler_timeout`` with
    ``faulthandler_exit_on_timeout`` (``pyproject.toml``) dumps every thread's traceback and ends the run;
    shortly before, this prints what each asyncio task was waiting for."""
    report = item.config.stash[_hang_report]
    report.arm(item.nodeid)
    try:
        return (yield)
    finally:
        report.disarm()


_hang_report = pytest.StashKey[HangReport]()
