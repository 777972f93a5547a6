"""What a station session needs from the rest of the central system."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from csms.authorization import Authorizer
from csms.config import SiteConfig
from csms.state import SiteState
from csms.storage import Storage


@dataclass
class SessionContext:
    cfg: SiteConfig
    state: SiteState
    storage: Storage
    authorizer: Authorizer
    clock: Callable[[], float] = field(default=time.time)

    def now_iso(self) -> str:
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self.clock(), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
