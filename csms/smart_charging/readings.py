"""What the stations report that the delivery's rules read, taken from the live state (:mod:`csms.domain.state`)."""

from __future__ import annotations

from csms.domain.state import SiteState

from .channel import ChargerChannel
from .profiles import NOMINAL_VOLTAGE


class StationReadings:
    """The live state's answers for :class:`~.exposure.Readings`, and the voltage a limit in W is worked out at."""

    def __init__(self, state: SiteState):
        self.state = state

    def session(self, ch: ChargerChannel) -> bool:
        return bool(self.state.station(ch.id).transactions)

    def draw(self, ch: ChargerChannel) -> dict[int, float]:
        sample = self.state.station(ch.id).latest_sample()
        if sample is None:
            return {}
        return {ch.phases_wired[i]: a for i, a in enumerate(sample.current[:len(ch.phases_wired)]) if a is not None}

    def volts(self, ch: ChargerChannel) -> float:
        """The mean of the plausible phase voltages of its latest sample, or the nominal voltage."""
        sample = self.state.station(ch.id).latest_sample()
        volts = [v for v in (sample.voltage if sample else ()) if v and 150 < v < 300]
        return sum(volts) / len(volts) if volts else NOMINAL_VOLTAGE
