"""The authorization rules: verdicts per entry, organisation policy, running transactions; and their config."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from csms.config import ConfigError, parse_config
from csms.domain.authorization import Authorizer, Verdict, decide
from csms.domain.state import SiteState, Transaction
from csms.domain.tokens import IdToken, TokenStatus
from csms.ocpp.id_token_info import id_tag_info, id_token_info

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc).timestamp()

BASE = {
    "server": {"security_profile": 0},
    "organisations": [{"id": "home", "name": "Home", "authorization": "list"},
                      {"id": "open", "name": "Open"}],
    "id_tokens": [
        {"organisation": "home", "token": "CARD-A", "parent": "HOUSEHOLD-1"},
        {"organisation": "home", "token": "CARD-B", "parent": "HOUSEHOLD-1", "concurrent": True},
        {"organisation": "home", "token": "LOST", "status": "Blocked"},
        {"organisation": "home", "token": "OLD", "expiry": "2020-01-01T00:00:00Z"},
        {"organisation": "open", "token": "THIEF", "status": "Blocked"},
    ],
    "chargers": [{"id": "H1", "organisation": "home"}, {"id": "H2", "organisation": "home"},
                 {"id": "O1", "organisation": "open"}],
}


def authorizer(data: dict = BASE) -> tuple[Authorizer, SiteState]:
    state = SiteState()
    return Authorizer(parse_config(copy.deepcopy(data)), state), state


def running(state: SiteState, station: str, connector: int, token: str) -> None:
    state.transaction_started(station, Transaction(f"{station}-{connector}", connector, token, NOW - 60))


# ---- the rules -------------------------------------------------------------------------------------------


def test_verdicts_from_the_config_entries():
    auth, _ = authorizer()
    assert auth.authorize("H1", "CARD-A", NOW).verdict is Verdict.ACCEPTED
    assert auth.authorize("H1", "LOST", NOW).verdict is Verdict.BLOCKED
    assert auth.authorize("H1", "OLD", NOW).verdict is Verdict.EXPIRED
    assert auth.authorize("H1", "STRANGER", NOW).verdict is Verdict.UNKNOWN
    assert auth.authorize("O1", "STRANGER", NOW).verdict is Verdict.ACCEPTED  # accept-all
    assert auth.authorize("O1", "THIEF", NOW).verdict is Verdict.BLOCKED  # an entry rules even in accept-all
    assert auth.authorize("O1", "CARD-A", NOW).verdict is Verdict.ACCEPTED  # home's card is not open's entry
    assert auth.authorize("NOPE", "CARD-A", NOW).verdict is Verdict.UNKNOWN  # unknown station
    assert auth.authorize("H1", None, NOW).verdict is Verdict.UNKNOWN


def test_parent_is_reported_for_known_tokens():
    auth, _ = authorizer()
    a = auth.authorize("H1", "CARD-A", NOW)
    assert a.parent == "HOUSEHOLD-1"
    assert id_tag_info(a) == {"status": "Accepted", "parent_id_tag": "HOUSEHOLD-1"}
    assert id_token_info(a) == {"status": "Accepted",
                                "group_id_token": {"id_token": "HOUSEHOLD-1", "type": "Central"}}
    assert id_tag_info(auth.authorize("H1", "STRANGER", NOW)) == {"status": "Invalid"}
    assert id_token_info(auth.authorize("H1", "STRANGER", NOW)) == {"status": "Unknown"}


def test_concurrent_tx_when_a_start_finds_the_token_in_a_transaction_elsewhere():
    auth, state = authorizer()
    running(state, "H2", 1, "CARD-A")
    assert auth.authorize("H1", "CARD-A", NOW, starting=1).verdict is Verdict.CONCURRENT_TX  # another station
    assert auth.authorize("H2", "CARD-A", NOW, starting=2).verdict is Verdict.CONCURRENT_TX  # another connector
    # The transaction's own connector (a StartTransaction resent) is not elsewhere.
    assert auth.authorize("H2", "CARD-A", NOW, starting=1).verdict is Verdict.ACCEPTED
    # Only a start is ever ConcurrentTx (Authorize, StopTransaction, other events: the specs say so, and the
    # driver must be able to end the session with the card that started it).
    assert auth.authorize("H1", "CARD-A", NOW).verdict is Verdict.ACCEPTED
    # A token allowed to be concurrent is not refused.
    running(state, "H2", 2, "CARD-B")
    assert auth.authorize("H1", "CARD-B", NOW, starting=1).verdict is Verdict.ACCEPTED
    # Unlisted tokens of an accept-all organisation are never ConcurrentTx (free-vend chargers share one tag).
    running(state, "O1", 1, "FREEVEND")
    assert auth.authorize("O1", "FREEVEND", NOW, starting=2).verdict is Verdict.ACCEPTED
    # The same card number in another organisation is another token.
    assert auth.authorize("O1", "CARD-A", NOW, starting=2).verdict is Verdict.ACCEPTED
    state.transaction_ended("H2", Transaction("H2-1", 1, "CARD-A", NOW - 60, stopped_at=NOW))
    assert auth.authorize("H1", "CARD-A", NOW, starting=1).verdict is Verdict.ACCEPTED


def test_expiry_is_exact_and_naive_times_are_utc():
    tok = IdToken("o", "t", expiry=datetime(2026, 12, 1, 12, 0))
    assert tok.expiry.tzinfo is timezone.utc
    assert decide(tok, False, NOW - 1, False) is Verdict.ACCEPTED
    assert decide(tok, False, NOW, False) is Verdict.EXPIRED


entries = st.builds(IdToken, st.just("o"), st.just("t"), st.sampled_from(list(TokenStatus)),
                    st.one_of(st.none(), st.integers(-10**6, 10**6).map(
                        lambda s: datetime.fromtimestamp(NOW + s, timezone.utc))),
                    st.one_of(st.none(), st.just("G")), st.booleans())


@given(entries, st.booleans(), st.booleans(), st.floats(NOW - 10**7, NOW + 10**7))
def test_a_blocked_token_is_never_accepted_whatever_else_is_true(entry, accept_all, busy, now):
    verdict = decide(entry, accept_all, now, busy)
    if entry.status is TokenStatus.BLOCKED:
        assert verdict is Verdict.BLOCKED
    elif entry.expired(now):
        assert verdict is Verdict.EXPIRED
    elif busy and not entry.concurrent:
        assert verdict is Verdict.CONCURRENT_TX
    else:
        assert verdict is Verdict.ACCEPTED
    assert (verdict is Verdict.ACCEPTED) == (entry.status is TokenStatus.ACCEPTED and not entry.expired(now)
                                             and (entry.concurrent or not busy))


@given(st.booleans(), st.booleans(), st.floats(0, 2e9))
def test_an_unlisted_token_follows_the_organisation(accept_all, busy, now):
    assert decide(None, accept_all, now, busy) is (Verdict.ACCEPTED if accept_all else Verdict.UNKNOWN)


# ---- the config -----------------------------------------------------------------------------------------


def config_problems(*tokens: dict) -> list[str]:
    data = copy.deepcopy(BASE)
    data["id_tokens"] = list(tokens)
    with pytest.raises(ConfigError) as info:
        parse_config(data, "site.toml")
    return info.value.lines()


@pytest.mark.parametrize("tokens,expected", [
    ([{"organisation": "home", "token": "A", "status": "Expired"}], "site.toml: id_tokens.0.status:"),
    ([{"organisation": "home", "token": "A", "parent": "P" * 21}],
     "site.toml: id_tokens.0.parent: a parent is 1-20 characters (it is sent as the OCPP 1.6 parentIdTag)"),
    ([{"organisation": "open", "token": "X"}, {"organisation": "home", "token": "A", "parent": "X"}],
     "site.toml: id_tokens.1.parent: parent 'X' is a token of organisation 'open', not of 'home'"),
    ([{"organisation": "home", "token": "A"}, {"organisation": "home", "token": "A", "status": "Blocked"}],
     "site.toml: id_tokens.1.token: duplicate token 'A' of organisation 'home' (first at id_tokens.0)"),
    ([{"organisation": "home", "token": "A", "concurrent": "yes please"}], "site.toml: id_tokens.0.concurrent:"),
])
def test_config_refuses_bad_token_entries(tokens, expected):
    lines = config_problems(*tokens)
    assert any(line.startswith(expected) for line in lines), lines


def test_config_accepts_group_ids_and_old_entries_unchanged():
    data = copy.deepcopy(BASE)
    data["id_tokens"] = [{"organisation": "home", "token": "A", "parent": "HOUSEHOLD-9"},  # a pure group id
                         {"organisation": "home", "token": "B", "parent": "A"},  # a token of its own organisation
                         {"organisation": "home", "token": "C", "expiry": "2030-01-01T00:00:00"}]
    cfg = parse_config(data)
    c = cfg.id_tokens[2]
    assert (c.status, c.parent, c.concurrent) == ("Accepted", None, False)
    auth = Authorizer(cfg, SiteState())
    assert auth.authorize("H1", "C", NOW).expiry == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert auth.authorize("H1", "B", NOW).parent == "A"


def test_expired_and_soon_expiring_in_replies():
    auth, _ = authorizer()
    info = id_tag_info(auth.authorize("H1", "OLD", NOW))
    assert info == {"status": "Expired", "expiry_date": "2020-01-01T00:00:00+00:00"}
    soon = datetime.fromtimestamp(NOW, timezone.utc) + timedelta(hours=1)
    auth.override(("home", "SOON"), IdToken("home", "SOON", expiry=soon))
    assert id_token_info(auth.authorize("H1", "SOON", NOW)) == {"status": "Accepted",
                                                                 "cache_expiry_date_time": soon.isoformat()}
