"""Modbus register maps: which registers of a meter model hold which quantity, and how to decode them.

A register map is data, not code: one TOML file per meter model under ``config/registers/`` (or a
folder the operator adds with ``[gateway] register_dirs``). Adding a meter model means adding a file.
The file format is documented in the header of every shipped file and in the README; in short::

    description = "Eastron SDM630 three-phase meter"
    max_registers_per_request = 80        # optional, default 125 (the Modbus limit)

    [defaults]                            # optional; every [[registers]] entry may override these
    function = "input"                    # "input" (FC 04) or "holding" (FC 03)
    type = "float32"                      # int16 | uint16 | int32 | uint32 | float32
    word_order = "big"                    # "big": most significant word at the lower address
    byte_order = "big"                    # "big": most significant byte first within each word
    scale = 1.0                           # value = raw * scale

    [[registers]]
    quantity = "current_l1"               # see QUANTITIES
    address = 0x0006                      # protocol address, 0-based (register 30007 is address 6)
    unit = "A"                            # the unit after scaling; must be the quantity's unit
    sign_from = "power_l1"                # optional: raw value is a magnitude, take the sign of this quantity

Currents and powers are signed: positive is import from the grid, negative is export.

pymodbus' own ``convert_from_registers`` knows word order but not byte order within a word, which some
meters swap, so decoding here goes through :mod:`struct` with both orders taken from the file.
"""

from __future__ import annotations

import enum
import math
import re
import struct
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: Where the shipped register maps live.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "config" / "registers"

#: Every quantity a register map may provide, with the unit its value must have after scaling.
QUANTITIES: dict[str, str] = {
    "current_l1": "A", "current_l2": "A", "current_l3": "A",
    "voltage_l1": "V", "voltage_l2": "V", "voltage_l3": "V",
    "power_l1": "W", "power_l2": "W", "power_l3": "W",
    "power_total": "W",
    "status": "",
}

Function = Literal["input", "holding"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32"]
Order = Literal["big", "little"]

#: Registers (16-bit words) each data type occupies, and its big-endian struct code.
_WORDS: dict[str, int] = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
_STRUCT: dict[str, str] = {"int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "float32": ">f"}
#: The Modbus limit for FC 03/04 is 125 registers per request.
MODBUS_MAX_READ = 125
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class StatusFlag(enum.IntFlag):
    """Bits of the ``status`` word (documented in ``config/registers/ampguard.toml``).

    A map that provides ``status`` promises these meanings; the gateway turns them into reading flags.
    """

    CLAMP_FAULT_L1 = 1 << 0  #: clamp L1 open or faulty: its current is not trustworthy
    CLAMP_FAULT_L2 = 1 << 1
    CLAMP_FAULT_L3 = 1 << 2
    OVERRANGE = 1 << 3  #: some phase is at or beyond the clamp's range (saturated)
    VOLTAGE_LOST = 1 << 4  #: some phase has no voltage
    CLOCK_UNSYNCED = 1 << 5  #: the meter's clock has not been synchronised
    DEVICE_FAULT = 1 << 15  #: internal fault: the whole sample is unusable


class RegisterMapError(Exception):
    """A register map that cannot be used, naming the file and the field at fault."""

    def __init__(self, source: str, field: str, message: str):
        self.source, self.field, self.message = source, field, message
        super().__init__(f"{source}: {field}: {message}")


@dataclass(frozen=True)
class RegisterSpec:
    """Where one quantity sits in a meter's register space and how to turn its words into a value."""

    quantity: str
    function: Function
    address: int
    type: DataType
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0
    unit: str = ""
    #: If set, the register holds a magnitude and the value takes the sign of this other quantity.
    sign_from: str | None = None

    @property
    def count(self) -> int:
        """Number of 16-bit registers the value occupies."""
        return _WORDS[self.type]

    def raw_from_words(self, words: Sequence[int]) -> float:
        """The unscaled value held by ``words`` (in address order)."""
        ordered = list(words) if self.word_order == "big" else list(reversed(words))
        data = b"".join(w.to_bytes(2, self.byte_order) for w in ordered)
        return struct.unpack(_STRUCT[self.type], data)[0]

    def words_from_raw(self, raw: float) -> list[int]:
        """The words (in address order) that hold the unscaled value ``raw``; the inverse of raw_from_words."""
        data = struct.pack(_STRUCT[self.type], raw)
        words = [int.from_bytes(data[i:i + 2], self.byte_order) for i in range(0, len(data), 2)]
        return words if self.word_order == "big" else list(reversed(words))


@dataclass(frozen=True)
class ReadBlock:
    """One Modbus read request: ``count`` registers from ``address`` with function ``function``."""

    function: Function
    address: int
    count: int


@dataclass(frozen=True)
class RegisterMap:
    """A meter model's register layout, loaded from a TOML data file."""

    name: str
    description: str
    registers: tuple[RegisterSpec, ...]
    max_registers_per_request: int = MODBUS_MAX_READ

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(r.quantity for r in self.registers)

    def read_blocks(self) -> list[ReadBlock]:
        """The fewest contiguous reads that cover every register, none longer than the map allows.

        Only registers that touch are merged: reading across a gap would ask the meter for addresses it
        may not implement, and many meters answer that with an exception for the whole request.
        """
        blocks: list[ReadBlock] = []
        for spec in sorted(self.registers, key=lambda r: (r.function, r.address)):
            last = blocks[-1] if blocks else None
            if (
                last is not None
                and last.function == spec.function
                and last.address + last.count == spec.address
                and last.count + spec.count <= self.max_registers_per_request
            ):
                blocks[-1] = ReadBlock(last.function, last.address, last.count + spec.count)
            else:
                blocks.append(ReadBlock(spec.function, spec.address, spec.count))
        return blocks

    def decode(self, words: Mapping[tuple[str, int], int]) -> dict[str, float]:
        """Values of every quantity of the map from the words read, keyed ``(function, address)``.

        Raises :class:`ValueError` naming the register if a word the map needs is missing.
        """
        values: dict[str, float] = {}
        for spec in self.registers:
            try:
                regs = [words[(spec.function, spec.address + i)] for i in range(spec.count)]
            except KeyError:
                raise ValueError(
                    f"register map {self.name!r}: no word read for {spec.quantity} "
                    f"({spec.function} register {spec.address}, {spec.count} words)"
                ) from None
            values[spec.quantity] = spec.raw_from_words(regs) * spec.scale
        for spec in self.registers:
            if spec.sign_from is not None:
                sign = -1.0 if values[spec.sign_from] < 0 else 1.0
                values[spec.quantity] = math.copysign(abs(values[spec.quantity]), sign)
        return values

    def encode(self, values: Mapping[str, float]) -> dict[tuple[str, int], int]:
        """Words that make :meth:`decode` return ``values``: every register of the map, missing quantities as 0.

        A quantity with ``sign_from`` is written as a magnitude (the meter simulator's inverse of decode).
        Raises :class:`ValueError` if a value does not fit the register's type.
        """
        words: dict[tuple[str, int], int] = {}
        for spec in self.registers:
            value = float(values.get(spec.quantity, 0.0))
            if spec.sign_from is not None:
                value = abs(value)
            raw: float = value / spec.scale
            if spec.type != "float32":
                if not math.isfinite(raw):
                    raise ValueError(f"{spec.quantity}={value!r} cannot be stored in a {spec.type} register")
                raw = round(raw)
            try:
                regs = spec.words_from_raw(raw)
            except (struct.error, OverflowError):
                raise ValueError(
                    f"{spec.quantity}={value!r} does not fit a {spec.type} register with scale {spec.scale}"
                ) from None
            for i, w in enumerate(regs):
                words[(spec.function, spec.address + i)] = w
        return words


# ---- the file format, checked with pydantic so every problem names its field -----------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Defaults(_Strict):
    function: Function = "input"
    type: DataType = "float32"
    word_order: Order = "big"
    byte_order: Order = "big"
    scale: float = 1.0

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: float) -> float:
        if not math.isfinite(v) or v == 0:
            raise ValueError("scale must be a finite non-zero number (value = raw * scale)")
        return v


class _Register(_Defaults):
    quantity: str
    address: int = Field(ge=0, le=0xFFFF)
    unit: str = ""
    sign_from: str | None = None

    @field_validator("quantity")
    @classmethod
    def _quantity(cls, v: str) -> str:
        if v not in QUANTITIES:
            raise ValueError(f"unknown quantity {v!r}; known: {', '.join(QUANTITIES)}")
        return v


class _File(_Strict):
    description: str
    max_registers_per_request: int = Field(MODBUS_MAX_READ, ge=1, le=MODBUS_MAX_READ)
    defaults: _Defaults = Field(default_factory=_Defaults)
    registers: list[dict] = Field(min_length=1)


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (see the format described at the top of the shipped register maps)"
    msg = err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def parse_register_map(name: str, data: dict, source: str = "<register map>") -> RegisterMap:
    """Validates the parsed TOML of one register map; raises :class:`RegisterMapError` on the first problem."""
    try:
        top = _File.model_validate(data)
    except ValidationError as err:
        e = err.errors()[0]
        raise RegisterMapError(source, _loc(e["loc"]), _message(e)) from None

    base = top.defaults.model_dump()
    specs: list[RegisterSpec] = []
    for i, entry in enumerate(top.registers):
        try:
            reg = _Register.model_validate({**base, **entry})
        except ValidationError as err:
            e = err.errors()[0]
            raise RegisterMapError(source, f"registers.{i}.{_loc(e['loc'])}", _message(e)) from None
        want = QUANTITIES[reg.quantity]
        if reg.unit != want:
            raise RegisterMapError(
                source, f"registers.{i}.unit",
                f"{reg.quantity} is in {want or 'no unit'!r}, not {reg.unit!r}; convert with scale",
            )
        spec = RegisterSpec(**reg.model_dump())
        if spec.address + spec.count - 1 > 0xFFFF:
            raise RegisterMapError(source, f"registers.{i}.address", f"a {spec.type} at {spec.address} runs past 65535")
        specs.append(spec)
    _cross_check(specs, top.max_registers_per_request, source)
    return RegisterMap(name, top.description, tuple(specs), top.max_registers_per_request)


def _cross_check(specs: list[RegisterSpec], max_per_request: int, source: str) -> None:
    seen: dict[str, int] = {}
    used: dict[tuple[str, int], int] = {}
    for i, spec in enumerate(specs):
        if spec.quantity in seen:
            raise RegisterMapError(source, f"registers.{i}.quantity", f"{spec.quantity} is already at registers.{seen[spec.quantity]}")
        seen[spec.quantity] = i
        for a in range(spec.address, spec.address + spec.count):
            if (spec.function, a) in used:
                raise RegisterMapError(
                    source, f"registers.{i}.address",
                    f"{spec.function} register {a} is already used by registers.{used[(spec.function, a)]}",
                )
            used[(spec.function, a)] = i
        if spec.count > max_per_request:
            raise RegisterMapError(source, "max_registers_per_request", f"is smaller than the {spec.count} words of registers.{i}")
    for i, spec in enumerate(specs):
        if spec.sign_from is None:
            continue
        other = next((s for s in specs if s.quantity == spec.sign_from), None)
        if other is None or other.sign_from is not None or other is spec:
            raise RegisterMapError(
                source, f"registers.{i}.sign_from",
                f"{spec.sign_from!r} must be another quantity of this map that carries its own sign",
            )
    if not any(s.quantity.startswith("current_") for s in specs):
        raise RegisterMapError(source, "registers", "a register map must provide at least current_l1 (the balancer's input)")


def _search_dirs(dirs: Sequence[str | Path]) -> list[Path]:
    return [Path(d) for d in dirs] + [SHIPPED_DIR]


def available_register_maps(dirs: Sequence[str | Path] = ()) -> list[str]:
    """Names of every register map found in ``dirs`` and the shipped folder, sorted."""
    names = {p.stem for d in _search_dirs(dirs) if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def load_register_map(name: str, dirs: Sequence[str | Path] = ()) -> RegisterMap:
    """Loads register map ``name`` from the first of ``dirs``, then ``config/registers/``, that has ``name.toml``."""
    if not _NAME_RE.match(name):
        raise RegisterMapError(name, "(name)", "a register map name is a file name without folder or .toml, e.g. 'sdm630'")
    for d in _search_dirs(dirs):
        path = d / f"{name}.toml"
        if path.is_file():
            break
    else:
        searched = ", ".join(str(d) for d in _search_dirs(dirs))
        available = ", ".join(available_register_maps(dirs)) or "none"
        raise RegisterMapError(
            f"{name}.toml", "(file)",
            f"register map {name!r} not found in {searched}; available: {available}",
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegisterMapError(str(path), "(file)", f"cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegisterMapError(str(path), "(syntax)", f"not valid TOML: {exc}") from None
    return parse_register_map(name, data, str(path))
