"""Who may charge: the rules that turn an id token presented at a station into a verdict.

Per organisation, ``accept-all`` accepts every token it has no entry for and ``list`` only its entries. An
entry always rules when there is one: Blocked, then Expired, then ConcurrentTx (the token already runs a
transaction elsewhere and may not run two), else Accepted. ConcurrentTx answers only a message that starts a
transaction: both specs say so (1.6 AuthorizationStatus "only relevant for a StartTransaction.req"; 2.0.1 "only
for the response to a TransactionEventRequest(eventType=Started)"), and an Authorize answered ConcurrentTx would
keep a driver from ending a session with the very card that started it. The entries are the config's ``[[id_tokens]]``
overlaid by the changes made at run time (:class:`csms.runtime.tokens.TokenBook` keeps those on disk); this
module holds no storage and no protocol: the OCPP adapters name the verdicts per version
(:mod:`csms.ocpp.id_token_info`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from csms.config import SiteConfig
from csms.domain.state import SiteState
from csms.domain.tokens import IdToken, TokenStatus


class Verdict(StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    CONCURRENT_TX = "ConcurrentTx"
    UNKNOWN = "Unknown"  # the adapters name this Invalid on 1.6, Unknown on 2.0.1


@dataclass(frozen=True)
class Authorization:
    """The answer for one token: its verdict and what the reply tells the station about the token."""

    verdict: Verdict
    expiry: datetime | None = None
    #: The token's group id (1.6 parentIdTag, 2.0.1 groupIdToken), when its entry has one.
    parent: str | None = None


def decide(entry: IdToken | None, accept_all: bool, now: float, busy_elsewhere: bool) -> Verdict:
    """The verdict for a token whose entry is ``entry`` (None: not listed) in an organisation that accepts
    every unlisted token or not, at ``now``, when it does or does not run a transaction elsewhere.

    The order is the one SteVe and the specs' examples use: a blocked card is refused whatever else is true,
    an expired one before a busy one.
    """
    if entry is None:
        return Verdict.ACCEPTED if accept_all else Verdict.UNKNOWN
    if entry.status is TokenStatus.BLOCKED:
        return Verdict.BLOCKED
    if entry.expired(now):
        return Verdict.EXPIRED
    if busy_elsewhere and not entry.concurrent:
        return Verdict.CONCURRENT_TX
    return Verdict.ACCEPTED


Key = tuple[str, str]


class Authorizer:
    """The entries in force (config seed overlaid by run-time changes) and the verdicts they give.

    ``state`` is read for ConcurrentTx: the transactions running now, on every station of the organisation.
    """

    def __init__(self, cfg: SiteConfig, state: SiteState):
        self._state = state
        self.apply_config(cfg)
        self._seed: dict[Key, IdToken] = {}
        for t in cfg.id_tokens:
            self._seed[(t.organisation, t.token)] = IdToken(t.organisation, t.token, TokenStatus(t.status), t.expiry,
                                                            t.parent, t.concurrent)
        #: Run-time changes by key; None is a deleted token (a deleted config entry stays deleted).
        self._overrides: dict[Key, IdToken | None] = {}

    def apply_config(self, cfg: SiteConfig) -> None:
        """Which organisation each station belongs to and how each organisation authorizes, from ``cfg`` (at
        start and on a reload). The ``[[id_tokens]]`` seed is read at start only: at run time tokens change
        through :class:`csms.runtime.tokens.TokenBook`, which keeps them over a restart."""
        self._org_of_station = {c.id: c.organisation for c in cfg.chargers}
        self._accept_all = {o.id for o in cfg.organisations if o.authorization == "accept-all"}
        self.organisations = frozenset(o.id for o in cfg.organisations)

    # -- the entries ------------------------------------------------------------------------------------------

    def entry(self, organisation: str, token: str) -> IdToken | None:
        key = (organisation, token)
        return self._overrides[key] if key in self._overrides else self._seed.get(key)

    def entries(self) -> Iterator[IdToken]:
        """Every entry in force, ordered by organisation and token."""
        for key in sorted(self._seed.keys() | self._overrides.keys()):
            tok = self.entry(*key)
            if tok is not None:
                yield tok

    def from_config(self, organisation: str, token: str) -> IdToken | None:
        return self._seed.get((organisation, token))

    def override(self, key: Key, token: IdToken | None) -> None:
        """Puts a run-time change in force (``None`` deletes the token)."""
        self._overrides[key] = token

    # -- the verdicts -----------------------------------------------------------------------------------------

    def organisation_of(self, station_id: str) -> str | None:
        return self._org_of_station.get(station_id)

    def busy_elsewhere(self, organisation: str, token: str, station_id: str, connector_id: int) -> bool:
        """Does ``token`` run a transaction on a station of ``organisation`` other than on ``connector_id`` of
        ``station_id`` (the one being started)?"""
        for sid, st in self._state.stations.items():
            if self._org_of_station.get(sid) != organisation:
                continue
            for cid, tx in st.transactions.items():
                if tx.id_token == token and not (sid == station_id and cid == connector_id):
                    return True
        return False

    def authorize(self, station_id: str, token: str | None, now: float, *, starting: int | None = None
                  ) -> Authorization:
        """The answer for ``token`` presented at ``station_id``.

        ``starting`` is the connector/EVSE of the transaction the message starts (1.6 StartTransaction, 2.0.1
        TransactionEvent Started): only then is ConcurrentTx a possible answer, and that connector's own
        transaction (a resent start) is not "elsewhere". None for every other message.
        """
        org = self._org_of_station.get(station_id)
        if org is None or token is None:
            return Authorization(Verdict.UNKNOWN)
        entry = self.entry(org, token)
        busy = starting is not None and entry is not None and not entry.concurrent and \
            self.busy_elsewhere(org, token, station_id, starting)
        verdict = decide(entry, org in self._accept_all, now, busy)
        if entry is None:
            return Authorization(verdict)
        return Authorization(verdict, entry.expiry, entry.parent)
