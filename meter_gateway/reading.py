"""The normalised meter reading and meter state, and their JSON on the standalone gateway's MQTT topics.

Whatever the source (a Modbus register map, an Amp Guard's MQTT payload), the balancer sees one shape:
a :class:`MeterReading` per sample, in A per meter phase, + import and - export. A standalone
``meter-gateway`` publishes ``to_json()`` on ``csms/meters/{serial}/reading`` and ``MeterState`` JSON,
retained, on ``csms/meters/{serial}/state``; :mod:`meter_gateway.subscriber` reads them back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from . import boundedjson

Phases = tuple[float | None, float | None, float | None]

#: Flags a reading may carry. ``saturated_lN``: the clamp is at the top of its range, so the true
#: current may be higher: the balancer treats it as overload.
SATURATED = ("saturated_l1", "saturated_l2", "saturated_l3")
#: A clamp reading within this fraction of its range counts as at the top of it (saturated): the gateway flags it,
#: and the balancer keeps a fuse rated above the clamps' range that far below the top.
SATURATION_MARGIN = 0.005
CLAMP_FAULT = ("clamp_fault_l1", "clamp_fault_l2", "clamp_fault_l3")
KNOWN_FLAGS = frozenset(SATURATED + CLAMP_FAULT + ("overrange", "voltage_lost", "clock_unsynced"))

Status = Literal["online", "stale", "offline"]


@dataclass(frozen=True)
class MeterReading:
    serial: str
    #: When the meter took the sample (epoch s); for Modbus, when the answer arrived.
    taken_at: float
    #: When the gateway received it (epoch s).
    received_at: float
    #: A per meter phase L1..L3, + import, - export; None where the phase is not measured.
    current: Phases
    voltage: Phases = (None, None, None)
    #: Total active power in W, + import, - export.
    power: float | None = None
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def saturated_phases(self) -> tuple[int, ...]:
        """Meter phases (1..3) whose clamp is at the top of its range."""
        return tuple(i + 1 for i, flag in enumerate(SATURATED) if flag in self.flags)

    @property
    def saturated(self) -> bool:
        return any(flag in self.flags for flag in SATURATED)

    def to_json(self) -> bytes:
        return json.dumps({
            "serial": self.serial,
            "taken_at": self.taken_at,
            "received_at": self.received_at,
            "current": list(self.current),
            "voltage": list(self.voltage),
            "power": self.power,
            "flags": sorted(self.flags),
        }, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> MeterReading:
        """Parses what :meth:`to_json` wrote; raises :class:`ValueError` saying what is wrong."""
        obj = _object(data, "reading")
        try:
            return cls(
                serial=_str(obj, "serial"),
                taken_at=_number(obj["taken_at"], "taken_at"),
                received_at=_number(obj["received_at"], "received_at"),
                current=_phases(obj["current"], "current"),
                voltage=_phases(obj.get("voltage", [None, None, None]), "voltage"),
                power=None if obj.get("power") is None else _number(obj["power"], "power"),
                flags=frozenset(_str_list(obj.get("flags", []), "flags")),
            )
        except KeyError as exc:
            raise ValueError(f"reading: missing field {exc.args[0]!r}") from None


@dataclass(frozen=True)
class MeterState:
    """Whether a meter's readings can be used right now, and why not.

    ``online``: a valid reading arrived within ``stale_after``. ``stale``: the source answers but no valid
    reading arrived for ``stale_after`` (refused samples, silent meter). ``offline``: the source cannot be
    reached (connection refused, broker down) or the gateway has just started or stopped.
    """

    status: Status
    reason: str
    #: Since when (epoch s) the meter has had this status.
    since: float

    def to_json(self) -> bytes:
        return json.dumps({"status": self.status, "reason": self.reason, "since": self.since}).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> MeterState:
        obj = _object(data, "state")
        status = obj.get("status")
        if status not in ("online", "stale", "offline"):
            raise ValueError(f"state: status must be online, stale or offline, not {status!r}")
        try:
            return cls(status, _str(obj, "reason"), _number(obj["since"], "since"))
        except KeyError as exc:
            raise ValueError(f"state: missing field {exc.args[0]!r}") from None


def _object(data: bytes | str, what: str) -> dict[str, Any]:
    try:
        obj = boundedjson.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what}: not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {value!r}")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return float(value)


def _phases(value: Any, name: str) -> Phases:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{name} must be a list of 3 numbers or nulls (L1, L2, L3)")
    a, b, c = (None if v is None else _number(v, name) for v in value)
    return (a, b, c)


def _str_list(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of strings")
    return value
