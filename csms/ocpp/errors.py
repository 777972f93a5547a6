"""The CALLERROR each OCPP-J version names for what went wrong.

The ``ocpp`` package speaks 2.0.1's spelling on both versions; 1.6 says ``FormationViolation`` and
``OccurenceConstraintViolation`` (sic), and has no ``RpcFrameworkError`` or ``MessageTypeNotSupported``.
"""

from __future__ import annotations

from csms.domain.state import Version

_TO_16 = {"FormatViolation": "FormationViolation", "OccurrenceConstraintViolation": "OccurenceConstraintViolation"}
_TO_201 = {v: k for k, v in _TO_16.items()}


def error_code(code: str, version: Version) -> str:
    """``code`` as ``version`` spells it."""
    return (_TO_16 if version is Version.V16 else _TO_201).get(code, code)


def unreadable_frame(frame: object, version: Version) -> tuple[str, str]:
    """The code and description for a frame that parsed as JSON (or not: ``frame`` is None) but is not a
    well-formed OCPP-J message."""
    v201 = version is Version.V201
    if isinstance(frame, list) and frame and frame[0] not in (2, 3, 4):
        return ("MessageTypeNotSupported" if v201 else "FormationViolation",
                f"MessageTypeId {frame[0]!r} is not 2, 3 or 4")
    if frame is None:
        return ("RpcFrameworkError" if v201 else "FormationViolation"), "message is not valid JSON"
    if not isinstance(frame, list):
        return ("RpcFrameworkError" if v201 else "FormationViolation",
                "message must be a JSON array [MessageTypeId, MessageId, ...]")
    return ("RpcFrameworkError" if v201 else "ProtocolError"), "message is missing elements"


def malformed_call(unique_id: object, action: object, version: Version) -> str:
    """The code for a CALL whose MessageId, Action or payload has the wrong JSON type."""
    if isinstance(unique_id, str) and isinstance(action, str):
        return error_code("FormatViolation", version)
    return "RpcFrameworkError" if version is Version.V201 else "FormationViolation"
