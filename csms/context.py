"""What a station session needs from the rest of the central system."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from csms.authorization import Authorizer
from csms.config import SiteConfig
from csms.state import SiteState
from csms.storage.database import Storage


@dataclass
class SessionContext:
    cfg: SiteConfig
    state: SiteState
    storage: Storage
    authorizer: Authorizer
    clock: Callable[[], float] = field(default=time.time)

    def now_iso(self) -> str:
        return iso_millis(self.clock())


_last_second: tuple[float, str] = (math.nan, "")


def iso_millis(t: float) -> str:
    """``datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")`` with a "Z".

    Every Heartbeat answer carries one, and building a datetime for it cost more than validating the
    message. The date and time of day are remembered for the current second; the microseconds are
    rounded exactly as ``datetime.fromtimestamp`` rounds them (half to even), then cut to milliseconds
    as ``isoformat`` cuts them (``tests/fastpath/test_iso_millis.py`` holds the two against each other).
    """
    global _last_second
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1.0, us - 1_000_000
    elif us < 0:
        whole, us = whole - 1.0, us + 1_000_000
    second, prefix = _last_second
    if whole != second:
        prefix = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (whole, prefix)
    return f"{prefix}.{us // 1000:03d}Z"
