"""Judging raw meter samples: turn each into a :class:`MeterReading` or refuse it with a countable reason.

A balancer acting on a wrong reading can trip the main fuse or starve every charger, so anything
doubtful is refused (and counted by kind) rather than passed on; a clamp at the top of its range is
passed on but flagged ``saturated_lN``, which the balancer treats as overload.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import boundedjson
from .config import VARIANT_RANGE_A, VOLTAGE_RANGE_V, MeterConfig
from .reading import CLAMP_FAULT, SATURATED, SATURATION_MARGIN, MeterReading
from .registers import StatusFlag

#: Every reason a sample can be refused for; the gateway counts each per meter.
REJECTIONS = (
    "malformed_json",  # not JSON, or not a JSON object
    "too_complex",  # nested deeper than 32 levels, or a number longer than 64 characters
    "missing_field",  # serial, timestamp or current absent, or fewer phases than the meter is configured for
    "invalid_field",  # a field of the wrong type, or a timestamp that is not ISO 8601 with a time zone
    "wrong_serial",  # the payload names another meter
    "not_finite",  # NaN or infinity
    "current_out_of_range",  # |I| beyond the variant's clamp range
    "voltage_out_of_range",  # outside 0-390 V
    "future_timestamp",  # taken later than now (beyond the allowed clock skew)
    "timestamp_backwards",  # taken before the last accepted reading
    "duplicate",  # taken at the same time as the last accepted reading
    "device_fault",  # the meter's status word reports an internal fault
    "conflicting_sources",  # refused while the meter is suspect: its readings went backwards again and again
)

#: How far ahead of the gateway's clock a meter's timestamp may be before it counts as in the future.
FUTURE_TOLERANCE_S = 5.0
#: Readings going backwards this often within :data:`SUSPECT_WINDOW_S` mean two sources publish for one
#: meter (or its clock jumps about): the meter is suspect for :data:`SUSPECT_HOLD_S` after the last one.
SUSPECT_AFTER = 2
SUSPECT_WINDOW_S = 60.0
SUSPECT_HOLD_S = 60.0


class Rejected(ValueError):
    """A sample refused for ``kind`` (one of :data:`REJECTIONS`), with a detail for the log."""

    def __init__(self, kind: str, detail: str):
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


@dataclass
class ReadingJudge:
    """Validates the samples of one meter; remembers the last accepted timestamp to refuse replays."""

    serial: str
    range_a: float
    phases: tuple[int, ...] = (1, 2, 3)
    future_tolerance: float = FUTURE_TOLERANCE_S
    last_taken_at: float | None = None
    #: When (received_at) recent readings went backwards; enough of them make the meter suspect.
    backwards_at: deque[float] = field(default_factory=deque)
    suspect_until: float | None = None

    @classmethod
    def for_meter(cls, meter: MeterConfig) -> ReadingJudge:
        return cls(meter.serial, VARIANT_RANGE_A[meter.variant], tuple(sorted(meter.phases)))

    def from_payload(self, payload: bytes | str, received_at: float) -> MeterReading:
        """Judges an Amp Guard MQTT payload (see README): serial, timestamp, current, optional voltage/power."""
        try:
            obj = boundedjson.loads(payload)
        except boundedjson.TooComplex as exc:
            raise Rejected("not_finite" if isinstance(exc, boundedjson.NotFinite) else "too_complex", str(exc)) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise Rejected("malformed_json", f"not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise Rejected("malformed_json", f"expected a JSON object, got {type(obj).__name__}")
        for key in ("serial", "timestamp", "current"):
            if obj.get(key) is None:
                raise Rejected("missing_field", f"payload has no {key!r}")
        if not isinstance(obj["serial"], str):
            raise Rejected("invalid_field", f"serial must be a string, not {obj['serial']!r}")
        if obj["serial"] != self.serial:
            raise Rejected("wrong_serial", f"payload is from {obj['serial']!r}, expected {self.serial!r}")
        taken_at = _timestamp(obj["timestamp"])
        current = _values(obj["current"], "current")
        voltage = _values(obj["voltage"], "voltage") if obj.get("voltage") is not None else None
        power = obj.get("power")
        if power is not None and (isinstance(power, bool) or not isinstance(power, int | float)):
            raise Rejected("invalid_field", f"power must be a number, not {power!r}")
        return self.judge(taken_at, received_at, current, voltage, power)

    def from_registers(self, values: Mapping[str, float], received_at: float) -> MeterReading:
        """Judges the decoded registers of one Modbus poll (see :meth:`RegisterMap.decode`)."""
        flags: set[str] = set()
        status = values.get("status")
        if status is not None and math.isfinite(status):
            bits = StatusFlag(int(status) & 0xFFFF)
            if StatusFlag.DEVICE_FAULT in bits:
                raise Rejected("device_fault", f"status word 0x{int(status):04x} reports a device fault")
            for phase in range(3):
                if StatusFlag(1 << phase) in bits:
                    flags.add(CLAMP_FAULT[phase])
            if StatusFlag.OVERRANGE in bits:
                # The word does not say which phase: flag every measured one, the safe side for the balancer.
                flags.add("overrange")
                flags.update(SATURATED[p - 1] for p in self.phases)
            if StatusFlag.VOLTAGE_LOST in bits:
                flags.add("voltage_lost")
            if StatusFlag.CLOCK_UNSYNCED in bits:
                flags.add("clock_unsynced")
        current = [values.get(f"current_l{p}") for p in (1, 2, 3)]
        voltage = [values.get(f"voltage_l{p}") for p in (1, 2, 3)]
        if all(v is None for v in voltage):
            voltage = None
        return self.judge(received_at, received_at, current, voltage, values.get("power_total"), flags)

    def judge(
        self,
        taken_at: float,
        received_at: float,
        current: Sequence[float | None],
        voltage: Sequence[float | None] | None = None,
        power: float | None = None,
        flags: set[str] | frozenset[str] = frozenset(),
    ) -> MeterReading:
        """Checks ranges and time order, keeps only the configured phases, and accepts the reading."""
        flags = set(flags)
        amps: list[float | None] = [None, None, None]
        volts: list[float | None] = [None, None, None]
        for p in self.phases:
            i = current[p - 1] if p <= len(current) else None
            if i is None:
                raise Rejected("missing_field", f"no current for L{p}, which the meter is configured to measure")
            if not math.isfinite(i):
                raise Rejected("not_finite", f"current L{p} is {i}")
            if abs(i) > self.range_a:
                raise Rejected("current_out_of_range", f"current L{p} {i:g} A is outside ±{self.range_a:g} A")
            if abs(i) >= self.range_a * (1 - SATURATION_MARGIN):
                flags.add(SATURATED[p - 1])
            amps[p - 1] = float(i)
            v = voltage[p - 1] if voltage is not None and p <= len(voltage) else None
            if v is not None:
                if not math.isfinite(v):
                    raise Rejected("not_finite", f"voltage L{p} is {v}")
                lo, hi = VOLTAGE_RANGE_V
                if not lo <= v <= hi:
                    raise Rejected("voltage_out_of_range", f"voltage L{p} {v:g} V is outside {lo:g}-{hi:g} V")
                volts[p - 1] = float(v)
        if power is not None and not math.isfinite(power):
            raise Rejected("not_finite", f"power is {power}")
        if taken_at > received_at + self.future_tolerance:
            raise Rejected("future_timestamp", f"taken {taken_at - received_at:.1f} s in the future (check the meter's clock)")
        self._check_order(taken_at, received_at)
        self.last_taken_at = taken_at
        return MeterReading(
            serial=self.serial,
            taken_at=taken_at,
            received_at=received_at,
            current=(amps[0], amps[1], amps[2]),
            voltage=(volts[0], volts[1], volts[2]),
            power=None if power is None else float(power),
            flags=frozenset(flags),
        )


    def _check_order(self, taken_at: float, received_at: float) -> None:
        """Refuses a replay or a reading from before the last accepted one, and the meter's every reading
        while it is suspect.

        One reading from the past is refused and forgotten. Readings going backwards again and again mean
        two sources publish for this meter (a second publisher on the broker, ahead of the genuine meter,
        would otherwise win and have the genuine readings refused): then nothing from the meter is
        trusted until the conflict has stopped for :data:`SUSPECT_HOLD_S`, so the group falls back to its
        offline maximum instead of following whichever source runs ahead.
        """
        if self.suspect_until is not None and received_at >= self.suspect_until:
            self.suspect_until = None
        backwards = self.last_taken_at is not None and taken_at < self.last_taken_at
        if backwards:
            self.backwards_at.append(received_at)
            while self.backwards_at and self.backwards_at[0] < received_at - SUSPECT_WINDOW_S:
                self.backwards_at.popleft()
            if len(self.backwards_at) >= SUSPECT_AFTER:
                self.suspect_until = received_at + SUSPECT_HOLD_S
        if self.suspect_until is not None:
            if not backwards:
                self.last_taken_at = max(self.last_taken_at or taken_at, taken_at)
            raise Rejected("conflicting_sources", f"readings went backwards {len(self.backwards_at)} times in "
                                                  f"{SUSPECT_WINDOW_S:g} s: two sources publish for this meter "
                                                  f"(or its clock jumps); not trusted for {SUSPECT_HOLD_S:g} s")
        if self.last_taken_at is not None:
            if taken_at == self.last_taken_at:
                raise Rejected("duplicate", "same timestamp as the last accepted reading")
            if backwards:
                raise Rejected("timestamp_backwards", f"taken {self.last_taken_at - taken_at:.3f} s before the last accepted reading")


def _timestamp(value: Any) -> float:
    if not isinstance(value, str):
        raise Rejected("invalid_field", f"timestamp must be an ISO 8601 string, not {value!r}")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected("invalid_field", f"timestamp {value!r} is not ISO 8601") from None
    if dt.tzinfo is None:
        raise Rejected("invalid_field", f"timestamp {value!r} has no time zone (send UTC, ending in Z)")
    return dt.timestamp()


def _values(value: Any, name: str) -> list[float | None]:
    if not isinstance(value, list) or not 1 <= len(value) <= 3:
        raise Rejected("invalid_field", f"{name} must be a list of 1 to 3 numbers (L1, L2, L3)")
    for v in value:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise Rejected("invalid_field", f"{name} holds {v!r}, not a number")
    return list(value)
