"""How many OCPP calls were handled and sent, by direction, action and outcome (the operator's /metrics)."""

from __future__ import annotations

from collections import Counter


class MessageCounts:
    """A :data:`csms.ocpp.connection.MessageObserver` that counts; the operator view reads :attr:`counts`.

    Actions are bounded: an unknown one is counted as "(unknown)", an unreadable frame as "(unparsable)".
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, station_id: str, direction: str, action: str, outcome: str) -> None:
        self.counts[(direction, action, outcome)] += 1
