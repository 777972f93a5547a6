"""An electric vehicle on a charging cable: what it draws for the current it is offered.

The model is a pure function of time (no sleeping, no I/O): the charger tells it the offer and the
clock time, and it answers with its draw. That keeps a scenario reproducible and lets tests step it
as fast as they like. What it models, because a load balancer must cope with each:

* a start delay after the offer first allows charging (cars take a few seconds to close their
  contactor), and a ramp: a raised offer is followed linearly within ``ramp_time`` seconds; a lowered
  one at once by default, or along the same ramp from the present draw with ``ramp_down`` (real EVs take
  up to 5 s by IEC 61851-1); after the ramp the draw is never above the offer;
* pilot semantics: an offer below ``min_current`` (6 A, IEC 61851) pauses charging;
* the on-board charger's own maximum and phase count (1 or 3);
* tapering near full (above ``taper_from`` the maximum falls linearly to ``taper_floor`` at 100 %)
  and stopping at ``soc_target`` (the charger then reports SuspendedEV);
* when it arrives and leaves, for scenarios.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EVModel:
    max_current: float = 16.0
    phases: int = 3
    capacity_kwh: float = 60.0
    soc_start: float = 0.3
    soc_target: float = 1.0
    taper_from: float = 0.8
    taper_floor: float = 0.1
    ramp_delay: float = 2.0
    ramp_time: float = 1.5
    min_current: float = 6.0
    #: Follow a lowered offer (and a pause) along the ramp from the present draw instead of at once.
    ramp_down: bool = False
    #: Clock times (POSIX s) at which a scenario plugs the car in and out; None = by hand.
    arrival: float | None = None
    departure: float | None = None
    name: str = "EV"

    soc: float = field(init=False)
    energy_wh: float = field(init=False, default=0.0)
    _from: float = field(init=False, default=0.0)
    _to: float = field(init=False, default=0.0)
    _since: float = field(init=False, default=0.0)
    _last: float | None = field(init=False, default=None)
    _allowed_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.phases not in (1, 3):
            raise ValueError(f"{self.name}: phases must be 1 or 3, not {self.phases}")
        if not 0 <= self.soc_start <= 1 or not 0 < self.soc_target <= 1:
            raise ValueError(f"{self.name}: soc_start and soc_target are fractions between 0 and 1")
        self.soc = self.soc_start

    @property
    def full(self) -> bool:
        return self.soc >= self.soc_target

    def acceptance(self) -> float:
        """Most current per phase the car takes at its present state of charge."""
        if self.full:
            return 0.0
        if self.soc <= self.taper_from:
            return self.max_current
        span = max(1e-9, 1.0 - self.taper_from)
        fraction = 1.0 - (self.soc - self.taper_from) / span * (1.0 - self.taper_floor)
        return self.max_current * fraction

    def current_at(self, t: float) -> float:
        """Draw per phase at ``t`` along the present ramp (no state change)."""
        if self.ramp_time <= 0 or t >= self._since + self.ramp_time:
            return self._to
        return self._from + (self._to - self._from) * max(0.0, t - self._since) / self.ramp_time

    def update(self, t: float, offered: float, voltage: float = 230.0, phases: int = 3) -> float:
        """Advances to ``t`` with ``offered`` A per phase on ``phases`` phases; returns the draw per phase.

        Energy and state of charge are integrated over the time since the last update at the draw
        that applied then (the ramp's average), so small steps give an accurate total.
        """
        if self._last is not None and t > self._last:
            avg = (self.current_at(self._last) + self.current_at(t)) / 2
            self._charge(avg * voltage * min(phases, self.phases) * (t - self._last) / 3600.0)
        self._last = t
        allowed = offered >= self.min_current
        if allowed and self._allowed_at is None:
            self._allowed_at = t
        elif not allowed:
            self._allowed_at = None
        target = min(offered, self.acceptance()) if allowed else 0.0
        if allowed and t - self._allowed_at < self.ramp_delay:
            target = 0.0
        if abs(target - self._to) > 1e-9:
            now = self.current_at(t)
            if target < now and not self.ramp_down:
                now = min(now, offered)  # a lowered offer is obeyed at once; never exceeded after the ramp
            self._from, self._to, self._since = now, target, t
        return self.current_at(t)

    def _charge(self, wh: float) -> None:
        self.energy_wh += wh
        self.soc = min(1.0, self.soc + wh / 1000.0 / self.capacity_kwh)

    def reset_session(self) -> None:
        """Unplugged: the next plug-in starts from the current state of charge with no draw."""
        self._from = self._to = 0.0
        self._last = self._allowed_at = None
