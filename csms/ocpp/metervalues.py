"""Meter values of both OCPP versions turned into one :class:`~csms.domain.state.PhaseSample`.

1.6 sends ``value`` as a string with a ``unit`` (Wh/kWh/A/V); 2.0.1 sends a number with
``unitOfMeasure {unit, multiplier}``. Both name phases ``L1``..``L3`` (or ``L1-N``); a value without a
phase is a total and does not count as per-phase current.
"""

from __future__ import annotations

import math
from datetime import datetime
from collections.abc import Sequence
from typing import Any

from csms.domain.state import PhaseSample

_PHASES = {"L1": 0, "L2": 1, "L3": 2, "L1-N": 0, "L2-N": 1, "L3-N": 2}
_SCALE = {"Wh": 1.0, "kWh": 1000.0, "W": 1.0, "kW": 1000.0, "A": 1.0, "V": 1.0}


def parse_time(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def _number(sv: dict[str, Any]) -> float | None:
    """The sampled value in base units (Wh, W, A, V), or None when it is not a finite number.

    Finiteness is checked after scaling: 1e308 Wh is finite but 1e308 kWh is not, and ``10.0 **
    multiplier`` itself overflows for a 2.0.1 multiplier of 309 or more. Storing such a value would put
    ``inf`` in the database and ``Infinity`` in the API.
    """
    unit_of_measure = sv.get("unit_of_measure") or {}
    unit = sv.get("unit") or unit_of_measure.get("unit")
    multiplier = unit_of_measure.get("multiplier", 0) or 0
    try:
        number = float(sv.get("value")) * _SCALE.get(unit, 1.0) * (10.0 ** multiplier)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def to_sample(meter_value: dict[str, Any], received_at: float) -> tuple[PhaseSample, str]:
    """One ``meterValue`` entry (snake_case keys) → sample and its reading context."""
    taken_at = parse_time(meter_value.get("timestamp"), received_at)
    current: list[float | None] = [None, None, None]
    voltage: list[float | None] = [None, None, None]
    energy = offered = None
    context = ""
    for sv in meter_value.get("sampled_value", []):
        measurand = sv.get("measurand", "Energy.Active.Import.Register")
        location = sv.get("location", "Outlet")
        context = sv.get("context", context) or context
        value = _number(sv)
        if value is None or location not in ("Outlet", "Inlet", "EV"):
            continue
        idx = _PHASES.get(sv.get("phase", ""))
        if measurand == "Current.Import" and idx is not None:
            current[idx] = value
        elif measurand == "Voltage" and idx is not None:
            voltage[idx] = value
        elif measurand == "Energy.Active.Import.Register" and idx is None:
            energy = value
        elif measurand == "Current.Offered" and idx is None:
            offered = value
    sample = PhaseSample(taken_at, tuple(current), tuple(voltage), energy, offered)
    return sample, context or "Sample.Periodic"


def register_reading(parsed: Sequence[tuple[PhaseSample, str, Any]], context: str, *, latest: bool,
                     fallback: bool = True) -> float | None:
    """The energy register of the sample taken in ``context`` (e.g. ``Transaction.End``); without one,
    that of the latest (or earliest) sample that has a register, unless ``fallback`` is off.

    A station may report several registers in one message (2.0.1 Ended events carry the Begin sample
    first and the End sample last), so the first one found is not the one wanted.
    """
    registers = [(s.taken_at, c, s.energy_wh) for s, c, *_ in parsed if s.energy_wh is not None]
    for _, c, wh in registers:
        if c == context:
            return wh
    if not registers or not fallback:
        return None
    pick = max if latest else min
    return pick(registers, key=lambda r: r[0])[2]
