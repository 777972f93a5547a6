"""JSON from untrusted peers, read with bounds on nesting and number size.

``json.loads`` recurses once per nesting level (``RecursionError`` somewhere near 1,000, and every later
step over the value recurses too), reads integers up to 4,300 digits (then raises a bare ``ValueError``),
reads ``1e400`` as infinity and accepts ``NaN``/``Infinity``, which are not JSON. A meter payload, an MQTT
reading or an OCPP frame needs none of that, so :func:`loads` refuses it all with :class:`TooComplex`
(a ``ValueError``), before anything recurses. The OCPP path (:mod:`csms.fastjson`) uses the same rules;
they live here because the meter gateway runs on its own, without the central system.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_NUMBER_CHARS", "TooComplex", "NotFinite", "nests_deeper_than", "loads"]

#: How deep a document may nest, its outer array or object included. OCPP's own messages need about ten
#: levels; free-form ``data``/``customData`` could nest without end.
MAX_DEPTH = 32
#: The longest number, in characters. No meter or OCPP value needs a tenth of this.
MAX_NUMBER_CHARS = 64


class TooComplex(ValueError):
    """Nested too deep, a number too long or not finite: refused before it can hurt."""


class NotFinite(TooComplex):
    """NaN, Infinity, or a number beyond float range (which ``json`` would read as infinity)."""


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKETS_AS_SQUARE = bytes.maketrans(b"{}", b"[]")


def as_bytes(text: str | bytes) -> bytes:
    return text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text


def nests_deeper_than(data: bytes, limit: int) -> bool:
    """Whether the JSON text ``data`` nests arrays/objects more than ``limit`` deep, without parsing it.

    Cheap on the common document (fewer brackets than the limit: two counts); otherwise strings are cut
    out and the innermost ``[]`` pairs peeled off ``limit`` times, each pass one C-speed ``bytes.replace``.
    Unbalanced brackets are left for the parser to name.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", data).translate(_BRACKETS_AS_SQUARE, _NOT_BRACKET)
    for _ in range(limit):
        peeled = brackets.replace(b"[]", b"")
        if peeled == brackets:
            return False
        brackets = peeled
    return b"[]" in brackets


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise TooComplex(f"a number is longer than {MAX_NUMBER_CHARS} characters")
    if any(c in text for c in ".eE"):
        value = float(text)
        if not math.isfinite(value):
            raise NotFinite(f"number {text} is out of range")
        return value
    return int(text)


def _constant(text: str) -> None:
    raise NotFinite(f"{text} is not a JSON number")


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` within bounds: raises :class:`TooComplex` for nesting deeper than ``max_depth``, a
    number longer than :data:`MAX_NUMBER_CHARS` or out of float range, and NaN/Infinity; raises
    ``ValueError`` (``json.JSONDecodeError``, ``UnicodeDecodeError``) for text that is not JSON."""
    if nests_deeper_than(as_bytes(data), max_depth):
        raise TooComplex(f"nests deeper than {max_depth} levels")
    return json.loads(data, parse_int=_number, parse_float=_number, parse_constant=_constant)
