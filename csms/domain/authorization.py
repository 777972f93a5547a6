"""Who may charge: per organisation, accept every id token or only the listed ones."""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum

from csms.config import SiteConfig


class Verdict(StrEnum):
    ACCEPTED = "Accepted"
    EXPIRED = "Expired"
    UNKNOWN = "Unknown"  # the adapters name this Invalid on 1.6, Unknown on 2.0.1


class Authorizer:
    def __init__(self, cfg: SiteConfig):
        self._org_of_station = {c.id: c.organisation for c in cfg.chargers}
        self._accept_all = {o.id for o in cfg.organisations if o.authorization == "accept-all"}
        self._tokens = {(t.organisation, t.token): t.expiry for t in cfg.id_tokens}

    def check(self, station_id: str, token: str | None, now: float) -> Verdict:
        org = self._org_of_station.get(station_id)
        if org is None or token is None:
            return Verdict.UNKNOWN
        if org in self._accept_all:
            return Verdict.ACCEPTED
        key = (org, token)
        if key not in self._tokens:
            return Verdict.UNKNOWN
        expiry = self._tokens[key]
        if expiry is not None:
            if expiry.tzinfo is None:
                expiry = expiry.replace(tzinfo=timezone.utc)
            if expiry.timestamp() <= now:
                return Verdict.EXPIRED
        return Verdict.ACCEPTED

    def expiry_of(self, station_id: str, token: str) -> datetime | None:
        org = self._org_of_station.get(station_id)
        return self._tokens.get((org, token))
