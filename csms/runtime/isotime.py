"""ISO 8601 UTC timestamps as OCPP writes them (``2023-11-14T22:13:20.500Z``), and back to POSIX seconds.

One copy for the whole project: the central system's answers and profiles and the simulated chargers all
write and read their times here, so they cannot drift apart in rounding or in how they spell UTC.
"""

from __future__ import annotations

import functools
import math
from datetime import datetime, timezone

def iso_seconds(t: float) -> str:
    """Whole seconds with a "Z" (``2023-11-14T22:13:20Z``): a charging profile's start or end.

    Rounded as ``datetime.fromtimestamp(t).isoformat(timespec="seconds")`` rounds; a decision for 1,000
    chargers writes the same few seconds 2,000 times, so each second's text is remembered."""
    return _second_text(_split(t)[0]) + "Z"


def _split(t: float) -> tuple[float, int]:
    """``t`` as whole seconds and microseconds, rounded as ``datetime.fromtimestamp`` rounds (half to even)."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1.0, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1.0, us + 1_000_000
    return whole, us


@functools.lru_cache(maxsize=64)
def _second_text(whole: float) -> str:
    return datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def iso_millis(t: float) -> str:
    """``datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")`` with a "Z".

    Every Heartbeat answer carries one, and building a datetime for it cost more than validating the
    message. The date and time of day are remembered for the current second; the microseconds are
    rounded exactly as ``datetime.fromtimestamp`` rounds them (half to even), then cut to milliseconds
    as ``isoformat`` cuts them (``tests/fastpath/test_iso_millis.py`` holds the two against each other).
    """
    whole, us = _split(t)
    return f"{_second_text(whole)}.{us // 1000:03d}Z"


def parse_iso(value: str | None) -> float | None:
    """ISO 8601 (with Z or offset; naive means UTC) to POSIX seconds; None stays None."""
    if value is None:
        return None
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()
