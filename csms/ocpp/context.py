"""What a station session needs from the rest of the central system."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from csms.config import SiteConfig
from csms.domain.authorization import Authorizer
from csms.domain.state import SiteState
from csms.ocpp.reservation_book import ReservationBook
from csms.runtime.isotime import iso_millis
from csms.storage.database import Storage


@dataclass
class SessionContext:
    cfg: SiteConfig
    state: SiteState
    storage: Storage
    authorizer: Authorizer
    clock: Callable[[], float] = field(default=time.time)
    #: The reservations a start may use up (None: no reservations kept, e.g. a test harness).
    reservations: ReservationBook | None = None

    def now_iso(self) -> str:
        return iso_millis(self.clock())
