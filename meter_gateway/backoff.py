"""Exponential reconnect delays with jitter, so that many gateways do not hammer a peer in step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: The longest wait between two tries to reach a source of mains readings (a meter over Modbus, the broker that
#: carries them). While it is away the group runs on its offline maximum, so every second of waiting after it is
#: back wastes the fuse: with 30 s the group stayed degraded up to 30 s after the meter answered again. One TCP
#: connect to a LAN device every 5 s costs nothing, and the jitter keeps many gateways out of step.
READINGS_RETRY_MAX = 5.0


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    #: Each delay is drawn from [delay * (1 - jitter), delay].
    jitter: float = 0.2
    _next: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Call after a successful connection: the next failure waits ``initial`` again."""
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.maximum)
        return delay * (1 - self.jitter * random.random())
