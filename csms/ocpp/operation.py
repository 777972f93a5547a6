"""One operator command made concrete for a version: the call to send and how to read its answer.

The versions' ``operations`` modules build these; :mod:`csms.ocpp.operator` sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ocpp.exceptions import OCPPError

from csms.domain.settings import Setting
from csms.ocpp.protocol import InvalidReply
from csms.operations.results import InvalidAnswer, StationError


def reply_status(reply: Any) -> str:
    """The reply's ``status``; a reply without one (GetConfiguration, GetVariables) is an answer: Accepted."""
    return str(getattr(reply, "status", None) or "Accepted")


def station_error(exc: OCPPError) -> StationError:
    """What the operator is told of a call that failed with ``exc``: the CALLERROR the station sent, or that its
    answer failed the schema (which the station did not say)."""
    return (InvalidAnswer if isinstance(exc, InvalidReply) else StationError)(exc.code, str(exc.description))


def learns_nothing(reply: Any) -> list[Setting]:
    return []


@dataclass(frozen=True)
class Planned:
    """``payload`` is an ``ocpp`` call dataclass; ``status`` reads the overall answer from its reply, and
    ``learn`` what the reply says of the station's configuration (stored for the operator view).

    ``skip_reply_validation``: the reply is not checked against its schema (1.6 GetCompositeSchedule: chargers
    report limits like 13.33, which the schema's ``multipleOf: 0.1`` refuses). ``reports``: the requestId whose
    report messages (2.0.1 ReportChargingProfiles) complete the answer.
    """

    payload: Any
    status: Callable[[Any], str] = reply_status
    learn: Callable[[Any], list[Setting]] = learns_nothing
    skip_reply_validation: bool = False
    reports: int | None = None


@dataclass(frozen=True)
class PlanContext:
    """What the central system supplies to a command beyond its arguments: a fresh ``request_id`` (unique across
    restarts) for the commands that carry one (``Arguments.needs_request_id``), else None; and ``now`` (epoch
    seconds), the default of times the operator left out (a firmware download starts now)."""

    request_id: int | None = None
    now: float = 0.0
