"""Break before make on the circuits above a charger (:func:`csms.smart_charging.policy.circuit_room`)."""

from __future__ import annotations

from csms.balancer.model import ChargerLimit, CircuitLoad, Decision
from csms.smart_charging.policy import circuit_room

PH = (1, 2, 3)


def decision(limits: dict[str, ChargerLimit]) -> Decision:
    board = CircuitLoad("board", None, 25.0, dict.fromkeys(PH, 25.0), dict.fromkeys(PH, 25.0), None, {},
                        ("B", "C", "D"))
    row = CircuitLoad("row", "board", 16.0, dict.fromkeys(PH, 16.0), dict.fromkeys(PH, 16.0), None, {}, ("C", "D"))
    return Decision("g", 0.0, dict.fromkeys(PH, 40.0), True, limits, circuits={"board": board, "row": row})


def test_the_tightest_circuit_above_a_charger_bounds_its_increase():
    limits = {c: ChargerLimit(8.0, PH, "", True, 8.0) for c in "ABCD"}
    # D still draws its old 12 A: C may rise to 16 - 12 = 4 A on the row (board: 25 - 9 - 12 = 4 A as well).
    each = {"A": dict.fromkeys(PH, 15.0), "B": dict.fromkeys(PH, 9.0), "D": dict.fromkeys(PH, 12.0)}
    assert circuit_room("C", PH, decision(limits), each) == 4.0
    assert circuit_room("B", PH, decision(limits), each) == 25.0 - 12.0  # the row does not bind B
    assert circuit_room("A", PH, decision(limits), each) == float("inf")  # directly under the main fuse


def test_a_trimmed_car_is_counted_at_its_limit_on_a_circuit():
    limits = {"C": ChargerLimit(8.0, PH, "", True, 8.0),
              "D": ChargerLimit(10.0, PH, "its EV draws clearly less than offered", True, 8.0)}
    each = {"D": dict.fromkeys(PH, 8.0)}  # its exposure lends the 2 A headroom it does not draw
    assert circuit_room("C", PH, decision(limits), each) == 16.0 - 10.0
