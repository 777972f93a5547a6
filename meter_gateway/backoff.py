"""Exponential reconnect delays with jitter, so that many gateways do not hammer a peer in step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


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
