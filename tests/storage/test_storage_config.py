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
])
def test_a_bad_storage_section_is_refused_with_the_reason(data, fragment):
    with pytest.raises(ValidationError) as info:
        StorageConfig(**data)
    assert fragment in str(info.value)
