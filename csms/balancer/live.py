"""The controller's live view of one charger (:mod:`csms.balancer.controller`), and the allocation input built from
it: rebuilt only after a change, because building 10,000 of them on every run would cost about 10 ms.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .model import ChargerInput, ChargerSpec, ControlState

#: How many of a charger's latest answer times count (the slowest of them is taken).
ANSWERS_KEPT = 5


@dataclass
class LiveCharger:
    """The balancer's live view of one charger."""

    spec: ChargerSpec
    connected: bool = False
    session_active: bool = False
    #: Nothing is known to be installed until the delivery says so: the charger may draw its maximum.
    control: ControlState = ControlState.UNCONTROLLED
    limit_in_force: float | None = None
    #: When the delivery reported ``limit_in_force`` as in force (our clock).
    limit_since: float | None = None
    draw: dict[int, float] = field(default_factory=dict)
    draw_at: float | None = None
    phases_in_use: tuple[int, ...] | None = None
    #: Since when a limit of ours (which allows every wired phase) has been in force in this session; None
    #: while its offline fallback (often one phase) or nothing we know is.
    ours_since: float | None = None
    #: How long it took to answer its last few SetChargingProfile requests (s).
    answers: deque[float] = field(default_factory=lambda: deque(maxlen=ANSWERS_KEPT))
    answer_time: float | None = None
    #: The operator's cap (A per phase) and when it lapses (see :mod:`csms.balancer.operator_cap`).
    operator_cap: float | None = None
    operator_cap_until: float | None = None

    #: The last input built from the above; rebuilt only after a change (10,000 a run would cost ~10 ms).
    cached: ChargerInput | None = None

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name != "cached":
            object.__setattr__(self, "cached", None)

    def as_input(self) -> ChargerInput:
        if self.cached is None:
            self.cached = ChargerInput(self.spec, self.connected, self.session_active, self.control,
                                       self.limit_in_force, self.draw, self.draw_at, self.phases_in_use,
                                       self.limit_since, self.answer_time, self.operator_cap,
                                       self.operator_cap_until)
        return self.cached

    def forget_draw(self) -> None:
        self.draw, self.draw_at = {}, None
