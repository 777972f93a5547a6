"""An :class:`~csms.domain.authorization.Authorization` in each version's words: 1.6 ``idTagInfo``, 2.0.1
``idTokenInfo``. The one place that knows 1.6 says Invalid where 2.0.1 says Unknown.

The dicts use the ``ocpp`` package's snake_case keys (it converts them to camelCase on the wire).
"""

from __future__ import annotations

from typing import Any

from csms.domain.authorization import Authorization, Verdict

#: 1.6 AuthorizationStatus: Accepted, Blocked, Expired, Invalid, ConcurrentTx.
STATUS_16 = {Verdict.ACCEPTED: "Accepted", Verdict.BLOCKED: "Blocked", Verdict.EXPIRED: "Expired",
             Verdict.CONCURRENT_TX: "ConcurrentTx", Verdict.UNKNOWN: "Invalid"}
#: 2.0.1 AuthorizationStatusEnumType has the same words except Unknown (and statuses this CSMS never gives:
#: Invalid, NoCredit, NotAllowedTypeSource, NotAtThisLocation, NotAtThisTime).
STATUS_201 = {Verdict.ACCEPTED: "Accepted", Verdict.BLOCKED: "Blocked", Verdict.EXPIRED: "Expired",
              Verdict.CONCURRENT_TX: "ConcurrentTx", Verdict.UNKNOWN: "Unknown"}


def id_tag_info(auth: Authorization) -> dict[str, Any]:
    """1.6 IdTagInfo: status, expiryDate, parentIdTag."""
    info: dict[str, Any] = {"status": STATUS_16[auth.verdict]}
    if auth.expiry is not None:
        info["expiry_date"] = auth.expiry.isoformat()
    if auth.parent is not None:
        info["parent_id_tag"] = auth.parent
    return info


def id_token_info(auth: Authorization) -> dict[str, Any]:
    """2.0.1 IdTokenInfoType: status, cacheExpiryDateTime, groupIdToken (type Central: the CSMS made it up)."""
    info: dict[str, Any] = {"status": STATUS_201[auth.verdict]}
    if auth.expiry is not None:
        info["cache_expiry_date_time"] = auth.expiry.isoformat()
    if auth.parent is not None:
        info["group_id_token"] = {"id_token": auth.parent, "type": "Central"}
    return info
