"""OCPP message validation against the official JSON schemas, compiled to Python once at start.

The ``ocpp`` package validates every message with ``jsonschema`` in a thread pool: correct, but most
of what a busy central system spends. Here each schema the package ships is compiled with
``fastjsonschema`` into a plain function, and the thread hop is gone. Valid messages, nearly all of
them, pass through the compiled function only.

Verdicts must not change, so the schemas are compiled to mean exactly what the package's
``Draft4Validator`` makes of them: draft 4 rules whatever ``$schema`` says (the 2.0.1 files name draft
6, which the package ignores), no ``format`` assertions (``jsonschema`` checks formats only when given
a format checker, which the package does not), and no defaults written into the payload. When the
compiled function rejects a message, the package's own ``jsonschema`` path names the error, so the
CALLERROR code and text a station gets are the package's to the letter (``tests/fastpath`` holds the
two against each other over every schema, valid and mutated).
"""

from __future__ import annotations

import copy
import decimal
import json
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import fastjsonschema
from jsonschema.exceptions import ValidationError as SchemaValidationError
from ocpp.exceptions import FormatViolationError, OCPPError, ProtocolError, TypeConstraintViolationError
from ocpp.exceptions import NotImplementedError as OCPPNotImplementedError
from ocpp.messages import Call, CallResult, MessageType, get_validator

log = logging.getLogger("csms.ocpp.schemas")

#: The schema folders inside the ``ocpp`` package, by the version string the package uses.
SCHEMA_DIRS = {"1.6": "v16", "2.0.1": "v201"}

Check = Callable[[Any], Any]


def schema_name(message_type_id: int, action: str, version: str) -> str:
    """The file stem the ``ocpp`` package reads for a message (``BootNotificationRequest`` etc.)."""
    if message_type_id == MessageType.CallResult:
        return action + "Response"
    return action + ("Request" if version != "1.6" else "")


def load_schemas(version: str) -> dict[str, dict]:
    """Every schema the ``ocpp`` package ships for ``version``, by file stem."""
    folder = resources.files("ocpp") / SCHEMA_DIRS[version] / "schemas"
    schemas = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            # The 2.0.1 files start with a byte order mark.
            schemas[entry.name[:-5]] = json.loads(entry.read_text(encoding="utf-8-sig"))
    return schemas


def as_draft4(schema: dict) -> dict:
    """A copy of ``schema`` that fastjsonschema reads the way ``jsonschema.Draft4Validator`` does."""
    schema = copy.deepcopy(schema)
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    schema.pop("$id", None)
    return schema


def compile_schema(schema: dict) -> Check:
    return fastjsonschema.compile(as_draft4(schema), use_default=False, use_formats=False,
                                  detailed_exceptions=False)


class MessageValidator:
    """Compiled request and response validators for one OCPP version ("1.6" or "2.0.1")."""

    def __init__(self, version: str):
        self.version = version
        started = time.perf_counter()
        self._checks: dict[str, Check] = {name: compile_schema(s) for name, s in load_schemas(version).items()}
        self._by_message: dict[tuple[int, str], Check] = {}  # (MessageTypeId, action) -> check, as met
        log.debug("compiled %d OCPP %s schemas in %.2f s", len(self._checks), version,
                  time.perf_counter() - started)

    def __len__(self) -> int:
        return len(self._checks)

    def check_for(self, message_type_id: int, action: str) -> Check | None:
        check = self._by_message.get((message_type_id, action))
        if check is None:
            check = self._checks.get(schema_name(message_type_id, action, self.version))
            if check is not None:  # only known schemas are remembered, so the memory stays bounded
                self._by_message[(message_type_id, action)] = check
        return check

    def is_valid(self, message_type_id: int, action: str, payload: Any) -> bool:
        """The compiled verdict alone (for tests and benchmarks)."""
        check = self.check_for(message_type_id, action)
        if check is None:
            raise KeyError(f"no OCPP {self.version} schema for {action} ({message_type_id})")
        try:
            check(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    def validate(self, message: Call | CallResult) -> None:
        """Raises the ``OCPPError`` the ``ocpp`` package would raise for ``message``, or returns."""
        check = self.check_for(message.message_type_id, message.action)
        if check is None:
            raise OCPPNotImplementedError(details={"cause": f"Failed to validate action: {message.action}"})
        try:
            check(message.payload)
            return
        except fastjsonschema.JsonSchemaException:
            pass
        try:
            explain_refusal(message, self.version)
        except OCPPError:
            raise
        except decimal.DecimalException as exc:
            # The package's Decimal check of 1.6 limits overflows on absurd numbers (and would crash the
            # session); such a payload is refused as the format violation it is.
            raise FormatViolationError(details={"cause": f"Payload for action '{message.action}' has a "
                                                         f"number out of range: {type(exc).__name__}"}) from None
        # jsonschema accepted what the compiled schema refused: the reference wins, but this is a bug here.
        log.error("OCPP %s %s: compiled schema refused a payload jsonschema accepts: %.300r", self.version,
                  message.action, message.payload)


#: 1.6 messages whose schemas hold ``multipleOf: 0.1``: the package reads them with Decimal floats, so that
#: 21.4 (21.399999999999995 in binary) is on the grid.
_DECIMAL_1_6 = {(MessageType.Call, "SetChargingProfile"), (MessageType.Call, "RemoteStartTransaction"),
                (MessageType.CallResult, "GetCompositeSchedule")}


def explain_refusal(message: Call | CallResult, version: str) -> None:
    """Raises the ``OCPPError`` the package names for a payload its ``jsonschema`` validator refuses.

    The package's own rules, through its public ``get_validator``: the error kind picks the code
    (type and maxLength: TypeConstraintViolation; required: ProtocolError; anything else:
    FormatViolation). Returns if ``jsonschema`` accepts the payload."""
    payload = message.payload
    if version == "1.6" and (message.message_type_id, message.action) in _DECIMAL_1_6:
        validator = get_validator(message.message_type_id, message.action, version, parse_float=decimal.Decimal)
        payload = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    else:
        validator = get_validator(message.message_type_id, message.action, version)
    try:
        validator.validate(payload)
    except SchemaValidationError as e:
        if e.validator in ("type", "maxLength"):
            raise TypeConstraintViolationError(details={"cause": e.message, "ocpp_message": message}) from None
        if e.validator == "additionalProperties":
            raise FormatViolationError(details={"cause": e.message, "ocpp_message": message}) from None
        if e.validator == "required":
            raise ProtocolError(details={"cause": e.message}) from None
        raise FormatViolationError(details={"cause": f"Payload '{payload}' for action '{message.action}' is not "
                                                     f"valid: {e}", "ocpp_message": message}) from None


_VALIDATORS: dict[str, MessageValidator] = {}


def validator_for(version: str) -> MessageValidator:
    """The process-wide validator for ``version``, compiled on first use (``preload`` does it at start)."""
    v = _VALIDATORS.get(version)
    if v is None:
        v = _VALIDATORS[version] = MessageValidator(version)
    return v


def preload() -> None:
    """Compiles every schema of both versions now, so the first station does not wait for it."""
    for version in SCHEMA_DIRS:
        validator_for(version)
