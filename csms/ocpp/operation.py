"""One operator command made concrete for a version: the call to send and how to read its answer.

The versions' ``operations`` modules build these; :mod:`csms.ocpp.operator` sends them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def reply_status(reply: Any) -> str:
    """The reply's ``status``; a reply without one (GetConfiguration, GetVariables) is an answer: Accepted."""
    return str(getattr(reply, "status", None) or "Accepted")


@dataclass(frozen=True)
class Planned:
    """``payload`` is an ``ocpp`` call dataclass; ``status`` reads the overall answer from its reply."""

    payload: Any
    status: Callable[[Any], str] = reply_status
