"""The balancer's ports: what :class:`~csms.balancer.controller.BalancerController` hands its decisions to
(:class:`LimitSink`, :class:`DecisionStore`) and what the smart-charging delivery reports back to it
(:class:`ControlReports`), plus the :class:`DecisionOutbox` that lets both be passed in constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .model import ControlState, Decision


class LimitSink(Protocol):
    def apply(self, decision: Decision) -> None:
        """Takes a decision for delivery to the chargers; must not block (queue it)."""


class DecisionStore(Protocol):
    def record_decision(self, decision: Decision) -> None:
        """Stores a decision; must not block (queue it)."""


class ControlReports(Protocol):
    """What the delivery reports back about each charger (:class:`~csms.balancer.controller.BalancerController`
    takes these)."""

    def on_control(self, charger_id: str, control: ControlState, limit_in_force: float | None) -> None:
        """Whether the charger's limit is in force, and which."""

    def on_answer(self, charger_id: str, seconds: float) -> None:
        """How long the charger took to answer a SetChargingProfile."""

    def on_fallback(self, charger_id: str, phases: tuple[int, ...]) -> None:
        """The building phases its offline fallback binds on, as installed: its ``offline_phase`` alone only
        where the charger can express that (a 1.6 charger's fallback on one phase runs on its own L1)."""


class DecisionOutbox:
    """The balancer's :class:`LimitSink` when the delivery is built after it: the delivery reports back to the
    balancer, so it is built with the balancer and opens this outbox to receive the decisions. Every
    dependency is then passed in a constructor; nothing is patched afterwards."""

    def __init__(self) -> None:
        self._receiver: Callable[[Decision], None] | None = None

    def open(self, receiver: Callable[[Decision], None]) -> None:
        if self._receiver is not None:
            raise RuntimeError("the decision outbox already has a receiver")
        self._receiver = receiver

    def apply(self, decision: Decision) -> None:
        if self._receiver is not None:
            self._receiver(decision)
