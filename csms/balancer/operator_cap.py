"""The operator's cap on one charger: an upper bound on its limit inside what the fuse allows.

An operator may lower a charger (a tenant's contract, a cable that runs warm, a test), never lift it past what the
group's budget gives it: the cap only takes part in the allocation as a lower ceiling than ``max_current``
(:func:`csms.balancer.classify.classify`). Capacity it frees is shared among the others by the same fill. A cap
below the group's ``min_current`` pauses the session (IEC 61851 cannot go lower). The cap is an input like any
other (time too): one set with ``until`` is ignored from the first run at or after that moment.

What a charger the balancer cannot steer is *counted* at never depends on the cap: a charger that did not accept
its limit may not obey the cap either, so it stays counted at the most it may draw
(:func:`csms.balancer.reserve.reserve` only lowers the limit it plans to send).
"""

from __future__ import annotations

from datetime import UTC, datetime

from .grid import floor_step
from .model import ChargerInput


def active_cap(ch: ChargerInput, now: float) -> float | None:
    """The operator's cap in force at ``now`` on the 0.1 A grid (rounded down), or None: none, or lapsed."""
    cap = ch.operator_cap
    if cap is None:
        return None
    until = ch.operator_cap_until
    if until is not None and now >= until:
        return None
    return floor_step(cap)


def _until(until: float | None) -> str:
    if until is None:
        return ""
    return " until " + datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def capped_reason(cap: float, until: float | None) -> str:
    """Why a session is at the operator's cap."""
    return f"operator cap {cap:.1f} A{_until(until)}"


def paused_reason(cap: float, until: float | None, min_current: float) -> str:
    """Why a session is paused by the operator's cap."""
    if cap <= 0:
        return f"paused by the operator (operator cap 0.0 A{_until(until)})"
    return f"operator cap {cap:.1f} A is below the group's min_current {min_current:.1f} A{_until(until)}: paused"
