"""The storage tests run on both engines: ``storage_target`` is a SQLite file path, then a PostgreSQL URL."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_target(request: pytest.FixtureRequest, tmp_path) -> str:
    """What :class:`csms.storage.database.Storage` opens: a fresh SQLite file or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "h.sqlite")
    return request.getfixturevalue("postgres_url")
