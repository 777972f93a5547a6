"""Id tokens changed at run time: in force at once, logged with who asked, and the same after a restart."""

from __future__ import annotations

import asyncio
import copy
import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from csms.config import parse_config
from csms.domain.authorization import Authorizer, Verdict
from csms.domain.state import SiteState
from csms.domain.tokens import TokenStatus
from csms.runtime.tokens import TokenBook, TokenError, TokenNotFound
from csms.storage.database import Storage
from tests.csms.test_authorization import BASE, NOW


class Opened:
    """A book over a database file, as ``csms serve`` builds it at start-up."""

    def __init__(self, path: Path, data: dict = BASE):
        self.path, self.data = path, data

    async def __aenter__(self) -> TokenBook:
        self.storage = Storage(str(self.path), commit_interval=0)
        await self.storage.open()
        self.auth = Authorizer(parse_config(copy.deepcopy(self.data)), SiteState())
        self.book = TokenBook(self.auth, self.storage, lambda: NOW)
        await self.book.load()
        return self.book

    async def __aexit__(self, *exc: object) -> None:
        await self.storage.close()


def verdict(book: TokenBook, station: str, token: str) -> Verdict:
    return book._auth.authorize(station, token, NOW).verdict


async def test_changes_are_in_force_at_once_and_survive_a_restart(tmp_path):
    db = tmp_path / "csms.sqlite"
    async with Opened(db) as book:
        assert [(t.entry.token, t.source) for t in book.list_tokens("home")] == \
            [("CARD-A", "config"), ("CARD-B", "config"), ("LOST", "config"), ("OLD", "config")]
        await book.block_token("home", "CARD-A", by="alice")
        assert verdict(book, "H1", "CARD-A") is Verdict.BLOCKED
        assert book.get_token("home", "CARD-A").entry.parent == "HOUSEHOLD-1"  # the rest of the entry is kept
        await book.unblock_token("home", "LOST", by="alice")
        await book.put_token("home", "NEW", by="api:bob", parent="HOUSEHOLD-1", concurrent=True,
                             expiry=datetime(2030, 1, 1, tzinfo=timezone.utc))
        await book.delete_token("home", "OLD", by="alice")
        await book.block_token("open", "STOLEN", by="alice")  # blocking an unlisted card of accept-all
        assert verdict(book, "O1", "STOLEN") is Verdict.BLOCKED
        before = [(t.entry, t.source) for t in book.list_tokens()]
    async with Opened(db) as book:
        assert [(t.entry, t.source) for t in book.list_tokens()] == before
        assert verdict(book, "H1", "CARD-A") is Verdict.BLOCKED
        assert verdict(book, "H1", "LOST") is Verdict.ACCEPTED
        assert verdict(book, "H1", "OLD") is Verdict.UNKNOWN  # a deleted config entry stays deleted
        new = book.get_token("home", "NEW")
        assert new.source == "runtime" and new.entry.concurrent and new.entry.parent == "HOUSEHOLD-1"
        assert new.entry.expiry == datetime(2030, 1, 1, tzinfo=timezone.utc)
        events = await book._storage.read(lambda d: [(r["kind"], json.loads(r["detail"])) for r in
                                                     d.query("SELECT kind, detail FROM events ORDER BY id")])
    assert [(k, d["organisation"], d["token"], d["by"]) for k, d in events] == [
        ("id_token_blocked", "home", "CARD-A", "alice"), ("id_token_unblocked", "home", "LOST", "alice"),
        ("id_token_put", "home", "NEW", "api:bob"), ("id_token_deleted", "home", "OLD", "alice"),
        ("id_token_blocked", "open", "STOLEN", "alice")]
    assert events[2][1]["parent"] == "HOUSEHOLD-1" and events[2][1]["concurrent"] is True


async def test_refused_changes_name_the_field_and_change_nothing(tmp_path):
    async with Opened(tmp_path / "csms.sqlite") as book:
        cases = [
            (dict(organisation="nowhere", token="A"), "organisation"),
            (dict(organisation="home", token=""), "token"),
            (dict(organisation="home", token="X" * 37), "token"),
            (dict(organisation="home", token="A", status="Expired"), "status"),
            (dict(organisation="home", token="A", parent="P" * 21), "parent"),
            (dict(organisation="open", token="A", parent="CARD-A"), "parent"),  # a token of another organisation
            (dict(organisation="home", token="A", by=" "), "by"),
        ]
        for kw, field in cases:
            with pytest.raises(TokenError) as info:
                await book.put_token(**{"by": "alice", **kw})
            assert info.value.field == field and str(info.value).startswith(f"{field}: ")
        with pytest.raises(TokenNotFound):
            await book.unblock_token("home", "NOBODY", by="alice")
        with pytest.raises(TokenNotFound):
            await book.delete_token("home", "NOBODY", by="alice")
        with pytest.raises(TokenNotFound):
            book.get_token("home", "NOBODY")
        assert all(t.source == "config" for t in book.list_tokens())
        rows = await book._storage.read(lambda d: d.execute("SELECT count(*) FROM id_tokens").fetchone()[0])
        assert rows == 0


TOKENS = ["CARD-A", "LOST", "OLD", "T1", "T2"]
operations = st.lists(st.one_of(
    st.tuples(st.just("put"), st.sampled_from(TOKENS), st.sampled_from(list(TokenStatus)),
              st.one_of(st.none(), st.just("HOUSEHOLD-1"), st.just("CARD-A")), st.booleans()),
    st.tuples(st.sampled_from(["block", "unblock", "delete"]), st.sampled_from(TOKENS)),
), max_size=8)


@settings(max_examples=25, deadline=None)
@given(operations)
def test_any_sequence_of_changes_reads_back_the_same_after_a_restart(ops):
    async def run(db: Path) -> None:
        async with Opened(db) as book:
            for op in ops:
                try:
                    if op[0] == "put":
                        _, token, status, parent, concurrent = op
                        await book.put_token("home", token, by="prop", status=status, parent=parent,
                                             concurrent=concurrent)
                    else:
                        await getattr(book, f"{op[0]}_token")("home", op[1], by="prop")
                except TokenNotFound:
                    pass
            live = [(t.entry, t.source) for t in book.list_tokens()]
            verdicts = {t: verdict(book, "H1", t) for t in TOKENS}
        async with Opened(db) as book:
            assert [(t.entry, t.source) for t in book.list_tokens()] == live
            assert {t: verdict(book, "H1", t) for t in TOKENS} == verdicts

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(Path(tmp) / "csms.sqlite"))
