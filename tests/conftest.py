"""Fixtures shared by every test suite; the helpers themselves live in tests/support."""

from collections.abc import Iterator

import pytest

from tests.support.mosquitto import Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A real mosquitto on 127.0.0.1 and a free port (``.port``), with ``stop()``/``start()`` for restart tests."""
    with Mosquitto() as broker:
        yield broker
