"""OCPP-J framing and key-case conversion, as the ``ocpp`` package does them, only cheaper.

* JSON goes through ``orjson``. Anything ``orjson`` will not read as ``json`` does (lone surrogates,
  NaN, and integers past 64 bits, which it would turn into floats) goes to the package's own
  ``unpack``, so a frame is accepted or refused exactly as before and bad input gets the same error.
* Bounds come first: a frame nested deeper than 32 levels, or holding a number ``json`` would read but
  must not (past 64 characters, out of range, NaN/Infinity), raises :class:`FrameRefused` before anything
  recurses through it (:mod:`meter_gateway.boundedjson`).
* camelCase <-> snake_case conversion is the package's own, one key at a time, remembered: a
  station sends the same few hundred keys all day, and the package's conversion runs six regular
  expressions per key. The memory is bounded (free-form ``data``/``customData`` keys could be anything).
* A handler's reply dataclass is turned into the wire payload in one pass instead of the package's
  ``asdict`` + ``remove_nones`` + ``snake_to_camel_case`` (three deep copies); the result is the same
  (``tests/fastpath/test_fastjson.py``).
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import re
from functools import lru_cache
from typing import Any

import orjson
from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.exceptions import FormatViolationError
from ocpp.messages import Call, CallError, CallResult, MessageType
from ocpp.messages import unpack as library_unpack

from meter_gateway import boundedjson

__all__ = ["unpack", "dumps", "call_frame", "call_result_frame", "call_error_frame", "to_snake", "to_camel",
           "to_payload", "Outbound", "action_of"]

_KEY_CACHE = 8192


@lru_cache(maxsize=_KEY_CACHE)
def snake_key(key: str) -> str:
    return next(iter(camel_to_snake_case({key: None})))


@lru_cache(maxsize=_KEY_CACHE)
def camel_key(key: str) -> str:
    return next(iter(snake_to_camel_case({key: None})))


_CONTAINERS = (dict, list)


def to_snake(data: Any) -> Any:
    """``ocpp.charge_point.camel_to_snake_case``, with remembered keys (the hot path of every CALL)."""
    if isinstance(data, dict):
        return {snake_key(k) if isinstance(k, str) else k: to_snake(v) if isinstance(v, _CONTAINERS) else v
                for k, v in data.items()}
    if isinstance(data, list):
        return [to_snake(v) if isinstance(v, _CONTAINERS) else v for v in data]
    return data


def to_camel(data: Any) -> Any:
    """``ocpp.charge_point.snake_to_camel_case``, with remembered keys."""
    if isinstance(data, dict):
        return {camel_key(k) if isinstance(k, str) else k: to_camel(v) for k, v in data.items()}
    if isinstance(data, list):
        return [to_camel(v) for v in data]
    return data


#: (field name, wire name) of each payload dataclass seen, in field order.
_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}


#: Leaves sent as they are (checked first: most of a payload is leaves).
_SCALARS = frozenset({str, int, float, bool})


def to_payload(obj: Any) -> Any:
    """What the package sends for a reply or call dataclass: ``snake_to_camel_case(remove_nones(
    serialize_as_dict(obj)))``, in one pass."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    if kind is dict:
        return {camel_key(k) if isinstance(k, str) else k: to_payload(v) for k, v in obj.items() if v is not None}
    names = _FIELDS.get(kind)
    if names is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = _FIELDS[type(obj)] = tuple((f.name, camel_key(f.name)) for f in dataclasses.fields(obj))
    if names is not None:
        out = {}
        for name, camel in names:
            value = getattr(obj, name)
            if value is not None:
                out[camel] = to_payload(value)
        return out
    if isinstance(obj, dict):
        return {camel_key(k) if isinstance(k, str) else k: to_payload(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        items = [to_payload(v) for v in obj if v is not None]
        return items if isinstance(obj, list) else type(obj)(items)
    return obj


@dataclasses.dataclass(frozen=True, slots=True)
class Outbound:
    """A CALL payload as it goes on the wire (camelCase keys, no None), built so by a command on the control
    loop's hot path instead of as an ``ocpp`` dataclass for :func:`to_payload` to convert.

    ``checked``: whether its schema is checked before it goes out. False only for the output of a builder that a
    property test holds to the schema over the range of input it is given (``tests/ocpp/test_profile_payloads.py``)."""
    action: str
    body: dict[str, Any]
    checked: bool = True


def action_of(payload: Any) -> str:
    """The action of a CALL payload: an :class:`Outbound`'s, or the name of an ``ocpp`` call dataclass."""
    return payload.action if type(payload) is Outbound else type(payload).__name__


def _default(obj: Any) -> Any:
    """As the package's encoder does: a Decimal is sent with one decimal place, else ``to_json()``."""
    if isinstance(obj, decimal.Decimal):
        return float("%.1f" % obj)
    to_json = getattr(obj, "to_json", None)
    if to_json is None:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
    return to_json()


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, default=_default).decode()
    except orjson.JSONEncodeError:
        # Integers past 64 bits and the like: ``json`` writes them (or fails the same way).
        return json.dumps(value, separators=(",", ":"), default=_default)


def call_frame(unique_id: str, action: str, payload: Any) -> str:
    return dumps([MessageType.Call, unique_id, action, payload])


def call_result_frame(unique_id: str, payload: Any) -> str:
    return dumps([MessageType.CallResult, unique_id, payload])


def call_error_frame(unique_id: str, code: str, description: str, details: Any) -> str:
    return dumps([MessageType.CallError, unique_id, code, description, details])


class FrameRefused(FormatViolationError):
    """A frame too deep or with a number too long to be read safely: the station gets a format violation."""

    def __init__(self, cause: str):
        super().__init__(details={"cause": cause})


#: orjson reads integers beyond 64 bits as floats; a frame with 19+ ASCII digits in a row goes to
#: ``json``. The test maps every digit to "0" and everything else to "x" and looks for nineteen "0"s:
#: a tenth of a regular expression's cost, and this runs on every frame.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_RUN = b"0" * 19


def check_numbers(raw: str | bytes) -> None:
    """Raises :class:`FrameRefused` for what ``json`` would read but must not (a number too long or out
    of range, NaN/Infinity; :mod:`meter_gateway.boundedjson`). Anything else wrong is left for the
    package's ``unpack`` to name."""
    try:
        boundedjson.loads(raw)
    except boundedjson.TooComplex as exc:
        raise FrameRefused(f"message: {exc}") from None
    except ValueError:
        pass


def unpack(raw: str | bytes) -> Call | CallResult | CallError:
    """``ocpp.messages.unpack`` on orjson; every frame it cannot take as is goes to the package's.

    Raises :class:`FrameRefused` for a frame nested deeper than ``boundedjson.MAX_DEPTH``, or with a number
    ``json`` would read but must not, before anything recurses through it.
    """
    data = boundedjson.as_bytes(raw)
    if boundedjson.nests_deeper_than(data, boundedjson.MAX_DEPTH):
        raise FrameRefused(f"message nests deeper than {boundedjson.MAX_DEPTH} levels")
    if _LONG_RUN in data.translate(_DIGITS_AS_ZERO):
        return _library_unpack(raw)
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _library_unpack(raw)
    if type(msg) is list and msg:
        kind = msg[0]
        try:
            if kind == MessageType.Call:
                return Call(*msg[1:])
            if kind == MessageType.CallResult:
                return CallResult(*msg[1:])
            if kind == MessageType.CallError:
                return CallError(*msg[1:])
        except TypeError:
            pass
    return _library_unpack(raw)


def _library_unpack(raw: str | bytes) -> Call | CallResult | CallError:
    check_numbers(raw)
    return library_unpack(raw)


_FRAME_HEAD = re.compile(rb'\s*\[\s*(\d{1,3})\s*,\s*"([^"\\]{1,64})"')


def frame_head(raw: str | bytes) -> tuple[int | None, str | None]:
    """The MessageTypeId and MessageId at the start of a frame that cannot be parsed, if they can be read."""
    match = _FRAME_HEAD.match(boundedjson.as_bytes(raw)[:200])
    if match is None:
        return None, None
    return int(match.group(1)), match.group(2).decode("utf-8", "replace")
