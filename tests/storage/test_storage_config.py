"""``[storage]``: a SQLite file or a PostgreSQL URL, exactly one, each mistake refused with its reason; the URL's
password is never shown."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from csms.config.services import StorageConfig
from csms.storage.database import is_postgres_url


def test_a_url_picks_postgres_and_its_password_is_never_shown():
    cfg = StorageConfig(url="postgresql://csms:s3cret@db:5432/csms?sslmode=require")
    assert cfg.target == cfg.url and is_postgres_url(cfg.target)
    assert cfg.shown == "postgresql://csms:***@db:5432/csms?sslmode=require"
    assert StorageConfig().target == "var/csms.sqlite" and not is_postgres_url(StorageConfig().target)


@pytest.mark.parametrize(("data", "fragment"), [
    ({"url": "mysql://db/csms"}, "must be a PostgreSQL URL"),
    ({"url": "postgresql://db:5432"}, "names no database"),
    ({"url": "postgresql://db:port/csms"}, "port that is not a number"),
    ({"url": "postgresql://db/csms", "database": "x.sqlite"}, "not both"),
    ({"url": "postgresql://db/csms", "statement_timeout": 0.5}, "greater than or equal to 1"),
    ({"url": "postgresql://db/csms", "statement_timeout": 7200}, "less than or equal to 3600"),
])
def test_a_bad_storage_section_is_refused_with_the_reason(data, fragment):
    with pytest.raises(ValidationError) as info:
        StorageConfig(**data)
    assert fragment in str(info.value)


def test_the_statement_timeout_has_a_default_a_user_gets_and_reaches_the_writer():
    from csms.storage.database import Storage

    assert StorageConfig().statement_timeout == 10.0
    cfg = StorageConfig(url="postgresql://db/csms", statement_timeout=4)
    storage = Storage(cfg.target, cfg.commit_interval, statement_timeout=cfg.statement_timeout)
    assert storage._backend.guard is not None and storage._backend.guard.timeout == 4
    assert Storage("x.sqlite")._backend.guard is None  # a file has no server to hang
