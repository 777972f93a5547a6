"""A station's local authorization list: the organisation's tokens, held by the station so it can answer a card
while the central system cannot (OCPP 1.6 SendLocalList, 2.0.1 the same).

A local list holds each token's answer (Accepted, Blocked, Expired), expiry and parent; never ConcurrentTx,
which only the central system can know. Keeping it in step with the central token list means sending, after each
change, only what changed (a differential update: new and changed entries, and removals), with the next version
number. Pure: the entries in force and the time are inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from csms.domain.authorization import Authorization, Verdict
from csms.domain.tokens import IdToken, TokenStatus


def wanted(entries: Iterable[IdToken], organisation: str, now: float) -> dict[str, Authorization]:
    """What the organisation's stations should hold now, by token."""
    out = {}
    for e in entries:
        if e.organisation != organisation:
            continue
        verdict = (Verdict.BLOCKED if e.status is TokenStatus.BLOCKED
                   else Verdict.EXPIRED if e.expired(now) else Verdict.ACCEPTED)
        out[e.token] = Authorization(verdict, e.expiry, e.parent)
    return out


def changes(held: Mapping[str, Authorization], want: Mapping[str, Authorization]) -> dict[str, Authorization | None]:
    """A differential update from ``held`` to ``want``: new or changed entries, and None for each removal."""
    out: dict[str, Authorization | None] = {t: a for t, a in want.items() if held.get(t) != a}
    out.update({t: None for t in held if t not in want})
    return out


def to_rows(entries: Mapping[str, Authorization]) -> dict[str, list[Any]]:
    """For storage: token → [verdict, expiry (ISO) or None, parent or None]."""
    return {t: [a.verdict.value, a.expiry.isoformat() if a.expiry else None, a.parent] for t, a in entries.items()}


def from_rows(rows: Mapping[str, list[Any]]) -> dict[str, Authorization]:
    return {t: Authorization(Verdict(v), datetime.fromisoformat(x) if x else None, p) for t, (v, x, p) in rows.items()}
