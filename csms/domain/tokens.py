"""Id tokens (1.6 idTags, 2.0.1 idTokens) as the operator lists them: the record and what makes one invalid.

A token belongs to an organisation: the same card number in two organisations is two tokens. Its entry comes
from ``[[id_tokens]]`` in the config (the seed) or from a change made at run time, which overrides the config
entry for that token and is kept in storage; both end up as an :class:`IdToken`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Literal

#: 2.0.1 IdTokenType.idToken is at most 36 characters (1.6 idTag: 20; a 1.6 charger never sends a longer one).
TOKEN_MAX = 36
#: The parent is sent as the 1.6 parentIdTag (IdToken, CiString20), so it must fit 20 characters.
PARENT_MAX = 20


class TokenStatus(StrEnum):
    """What the operator sets; Expired, ConcurrentTx and Unknown/Invalid follow from the rules."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"


@dataclass(frozen=True)
class IdToken:
    organisation: str
    token: str
    status: TokenStatus = TokenStatus.ACCEPTED
    #: Aware (UTC when the operator wrote none); None never expires.
    expiry: datetime | None = None
    #: The group id (1.6 parentIdTag, 2.0.1 groupIdToken): tokens that share it are one group, e.g. a
    #: household's cards, any of which may end a session another started.
    parent: str | None = None
    #: May this token run more than one transaction at a time? False answers ConcurrentTx to a second one.
    concurrent: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", TokenStatus(self.status))
        if self.expiry is not None and self.expiry.tzinfo is None:
            object.__setattr__(self, "expiry", self.expiry.replace(tzinfo=timezone.utc))

    @property
    def key(self) -> tuple[str, str]:
        return self.organisation, self.token

    def expired(self, now: float) -> bool:
        return self.expiry is not None and self.expiry.timestamp() <= now


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be an id token (None when it can)."""
    if not 1 <= len(token) <= TOKEN_MAX:
        return f"a token is 1-{TOKEN_MAX} characters (OCPP 2.0.1 idToken); got {len(token)}"
    return None


def parent_problem(organisation: str, parent: str | None, tokens: Iterable[tuple[str, str]]) -> str | None:
    """Why ``parent`` cannot be the group id of a token of ``organisation`` (None when it can).

    A parent need not be a listed token: a pure group id ("HOUSEHOLD-12") is allowed, so a household's cards
    need no extra card to be a group. A parent that names a token of *another* organisation (and none of its
    own) is refused: it is almost certainly a mistake, and a group across organisations would let one
    organisation's card end another's session.
    """
    if parent is None:
        return None
    if not 1 <= len(parent) <= PARENT_MAX:
        return (f"a parent is 1-{PARENT_MAX} characters (it is sent as the OCPP 1.6 parentIdTag); "
                f"got {len(parent)}")
    owners = {org for org, tok in tokens if tok == parent}
    if owners and organisation not in owners:
        return (f"parent {parent!r} is a token of organisation {sorted(owners)[0]!r}, not of {organisation!r}; "
                "a group stays within one organisation (use a group id of your own, e.g. 'HOUSEHOLD-12')")
    return None


class TokenError(ValueError):
    """A change the book refuses; ``field`` names what to fix (organisation, token, status, parent, by)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class TokenNotFound(LookupError):
    """No entry in force for that (organisation, token)."""


@dataclass(frozen=True)
class TokenListing:
    entry: IdToken
    #: "config": the [[id_tokens]] entry as written; "runtime": changed here (stored, overrides the config).
    source: Literal["config", "runtime"]
