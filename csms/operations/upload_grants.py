"""Secret, expiring upload URLs: how a charger may hand this central system its log files.

A charger cannot send our bearer token: GetDiagnostics / GetLog give it only a URL. So the URL itself is the
credential: each ``get-logs`` command without a ``location`` is given a fresh random token (32 bytes,
URL-safe) in the path of ``{base}/upload/{station}/{token}/``, valid for one station and ``ttl`` seconds. The
upload route (:mod:`csms.web.uploads`) accepts a file only with a live token for that very station.

Only a SHA-256 of each token is kept (a memory dump or a timing probe of the lookup reveals no live URL) and
only its first characters are ever logged (:func:`shown`). Grants live in memory: a restart voids them, which
only fails an upload still pending across it (the charger reports UploadFailed; send the command again).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote

#: Expired grants are remembered this many ttl periods, so that a late upload gets "expired", not "unknown".
REMEMBER_EXPIRED = 2
#: At most this many grants are kept; the oldest go first (a flood of commands cannot grow memory forever).
MAX_GRANTS = 10_000


class Verdict(Enum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # never issued, issued for another station, revoked or long expired


@dataclass(frozen=True)
class Grant:
    station_id: str
    token: str
    expires_at: float
    url: str


def shown(token: str) -> str:
    """What of a token may appear in a log line or an event: its first 6 characters."""
    return token[:6] + "…"


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class UploadGrants:
    """Issues and checks upload tokens; ``base_url`` (how chargers reach the HTTP server) is set once it listens."""

    def __init__(self, clock: Callable[[], float], ttl: float):
        self.clock = clock
        self.ttl = ttl
        self.base_url: str | None = None
        self._grants: dict[bytes, tuple[str, float]] = {}  # sha256(token) -> (station id, expires at)

    def issue(self, station_id: str) -> Grant | None:
        """A fresh grant for ``station_id``, or None when there is no upload endpoint (no ``[http]``)."""
        if self.base_url is None:
            return None
        now = self.clock()
        self._prune(now)
        token = secrets.token_urlsafe(32)
        expires = now + self.ttl
        self._grants[_digest(token)] = (station_id, expires)
        url = f"{self.base_url.rstrip('/')}/upload/{quote(station_id, safe='')}/{token}/"
        return Grant(station_id, token, expires, url)

    def revoke(self, token: str) -> None:
        self._grants.pop(_digest(token), None)

    def check(self, station_id: str, token: str) -> Verdict:
        entry = self._grants.get(_digest(token))
        if entry is None or entry[0] != station_id:
            return Verdict.UNKNOWN
        return Verdict.VALID if self.clock() < entry[1] else Verdict.EXPIRED

    def _prune(self, now: float) -> None:
        forget_before = now - REMEMBER_EXPIRED * self.ttl
        for key in [k for k, (_, exp) in self._grants.items() if exp < forget_before]:
            del self._grants[key]
        while len(self._grants) >= MAX_GRANTS:  # dicts keep insertion order: the oldest first
            del self._grants[next(iter(self._grants))]
