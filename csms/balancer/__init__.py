"""The load balancer: per-group charger limits that keep every building phase under its fuse.

:mod:`.model` holds the plain input/output data, :mod:`.allocation` the pure decision (``allocate``; its
module docstring explains the algorithm and names the modules of each step), :mod:`.waterfill` the max-min
fair fill it uses, and :mod:`.controller` the asyncio glue that runs it on every fresh reading and charger
event. Nothing here imports OCPP, sockets or storage.
"""

from .allocation import allocate
from .budget import phase_budget
from .memory import BalancerMemory
from .model import (
    ChargerInput,
    ChargerLimit,
    ChargerSpec,
    ControlState,
    Decision,
    GroupSpec,
    MeterInput,
    Tuning,
)

__all__ = [
    "BalancerMemory", "ChargerInput", "ChargerLimit", "ChargerSpec", "ControlState", "Decision", "GroupSpec",
    "MeterInput", "Tuning", "allocate", "phase_budget",
]
