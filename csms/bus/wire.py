"""Strict reading of JSON from the bus: every field checked for presence and type, every failure named.

Messages on the bus come from other processes, possibly of another version or a broken one, so a decoder never
trusts a field: :class:`Fields` reads one JSON object and raises :class:`BadMessage` naming the field's path
(``state.transactions.1.started_at: expected a number``), which the receiving side counts and logs with the
topic. No decoder raises anything else on bad input.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

#: The version of every message's ``"v"``; a receiver refuses any other (it cannot know what changed).
WIRE_VERSION = 1

T = TypeVar("T")


class BadMessage(ValueError):
    """A message from the bus that cannot be used; ``reason`` is a short counter key, the text says what."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def load(payload: bytes | str) -> Fields:
    """The message's top-level object, with its version checked."""
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage("bad_json", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadMessage("bad_json", f"expected a JSON object, got {type(data).__name__}")
    fields = Fields(data, "")
    if "v" not in data:
        raise BadMessage("missing_field", "v: missing")
    if data["v"] != WIRE_VERSION:
        raise BadMessage("unknown_version", f"v: version {data['v']!r} is not {WIRE_VERSION}")
    return fields


def dump(obj: dict[str, Any]) -> bytes:
    """Compact JSON (floats as Python writes them, which read back to the same float)."""
    return json.dumps(obj, separators=(",", ":")).encode()


class Fields:
    """One JSON object being read; ``path`` is where it sits in the message (for errors)."""

    __slots__ = ("data", "path")

    def __init__(self, data: dict[str, Any], path: str):
        self.data = data
        self.path = path

    def _where(self, key: str | int) -> str:
        return f"{self.path}.{key}" if self.path else str(key)

    def _bad(self, key: str | int, what: str) -> BadMessage:
        return BadMessage("bad_field", f"{self._where(key)}: {what}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def _get(self, key: str, optional: bool) -> Any:
        if key not in self.data:
            if optional:
                return None
            raise BadMessage("missing_field", f"{self._where(key)}: missing")
        value = self.data[key]
        if value is None and not optional:
            raise self._bad(key, "must not be null")
        return value

    def str(self, key: str) -> str:
        v = self._get(key, False)
        if not isinstance(v, str):
            raise self._bad(key, "expected a string")
        return v

    def opt_str(self, key: str) -> str | None:
        v = self._get(key, True)
        if v is not None and not isinstance(v, str):
            raise self._bad(key, "expected a string or null")
        return v

    def int(self, key: str) -> int:
        v = self._get(key, False)
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(key, "expected an integer")
        return v

    def opt_int(self, key: str) -> int | None:
        return None if self._get(key, True) is None else self.int(key)

    def num(self, key: str) -> float:
        """A number; an integer stays an int, so what was sent reads back equal and of the same type."""
        v = self._get(key, False)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise self._bad(key, "expected a number")
        return v

    def opt_num(self, key: str) -> float | None:
        return None if self._get(key, True) is None else self.num(key)

    def bool(self, key: str) -> bool:
        v = self._get(key, False)
        if not isinstance(v, bool):
            raise self._bad(key, "expected true or false")
        return v

    def opt_bool(self, key: str) -> bool | None:
        return None if self._get(key, True) is None else self.bool(key)

    def obj(self, key: str) -> Fields:
        v = self._get(key, False)
        if not isinstance(v, dict):
            raise self._bad(key, "expected an object")
        return Fields(v, self._where(key))

    def opt_obj(self, key: str) -> Fields | None:
        return None if self._get(key, True) is None else self.obj(key)

    def list(self, key: str) -> list[Any]:
        v = self._get(key, False)
        if not isinstance(v, list):
            raise self._bad(key, "expected a list")
        return v

    def strs(self, key: str) -> list[str]:
        items = self.list(key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise BadMessage("bad_field", f"{self._where(key)}.{i}: expected a string")
        return items

    def num_tuple3(self, key: str) -> tuple[float | None, float | None, float | None]:
        """A per-phase triple: three numbers or nulls."""
        items = self.list(key)
        if len(items) != 3 or any(x is not None and (not isinstance(x, (int, float)) or isinstance(x, bool))
                                  for x in items):
            raise self._bad(key, "expected three numbers or nulls")
        return (items[0], items[1], items[2])

    def choice(self, key: str, kind: Callable[[str], T]) -> T:
        """A string that ``kind`` (an enum) accepts."""
        v = self.str(key)
        try:
            return kind(v)
        except ValueError:
            raise self._bad(key, f"{v!r} is not one of the known values") from None

    def by_int_key(self, key: str, read: Callable[[Fields, int], T]) -> dict[int, T]:
        """An object keyed by integers written as strings (JSON keys are strings): ``{"1": {...}}``."""
        out: dict[int, T] = {}
        for k, v in self.obj(key).data.items():
            where = f"{self._where(key)}.{k}"
            try:
                number = int(k)
            except ValueError:
                raise BadMessage("bad_field", f"{where}: key is not an integer") from None
            if str(number) != k:
                raise BadMessage("bad_field", f"{where}: key is not an integer")
            if not isinstance(v, dict):
                raise BadMessage("bad_field", f"{where}: expected an object")
            out[number] = read(Fields(v, where), number)
        return out

    def by_str_key(self, key: str, read: Callable[[Fields, str], T]) -> dict[str, T]:
        out: dict[str, T] = {}
        for k, v in self.obj(key).data.items():
            where = f"{self._where(key)}.{k}"
            if not isinstance(v, dict):
                raise BadMessage("bad_field", f"{where}: expected an object")
            out[k] = read(Fields(v, where), k)
        return out

    def str_map(self, key: str) -> dict[str, str]:
        out = self.obj(key).data
        for k, v in out.items():
            if not isinstance(v, str):
                raise BadMessage("bad_field", f"{self._where(key)}.{k}: expected a string")
        return dict(out)
