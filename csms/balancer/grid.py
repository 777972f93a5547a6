"""The 0.1 A grid: OCPP 1.6 limits are multiples of 0.1 A (``multipleOf``), and so is every limit the balancer
decides.

Shares are rounded down onto the grid (:func:`floor_step`), so rounding only ever lowers a limit; the group's
``min_current`` is rounded up (:func:`ceil_step`), so no limit falls below it. Both work in integer steps so that
the result is the nearest float to that many tenths and prints and compares as such.
"""

from __future__ import annotations

import math

#: OCPP 1.6 limits are multiples of 0.1 A.
STEP = 0.1
#: Slack for float comparisons of currents (A).
EPS = 1e-6

#: Steps per A; an integer number of steps divided by it is the nearest float to that many tenths.
_PER_A = 10


def floor_step(x: float) -> float:
    """Rounds down to the 0.1 A grid (as the nearest float, so that 10.6 prints and compares as 10.6)."""
    return math.floor(x * _PER_A + EPS) / _PER_A if x > 0 else 0.0


def ceil_step(x: float) -> float:
    return math.ceil(x * _PER_A - EPS) / _PER_A


def ceil_half(x: float) -> float:
    """Rounds up to 0.5 A (a trimmed car's cap: its draw plus headroom)."""
    return math.ceil(x * 2 - EPS) / 2
