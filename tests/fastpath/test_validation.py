"""The compiled validators hold the same verdicts as the ``ocpp`` package's jsonschema, on every schema.

For each schema the package ships (1.6 and 2.0.1, requests and responses), hypothesis draws valid
payloads from the schema itself and mutates them (a key dropped or added, a value of another type,
a string too long, a list emptied, a number off its grid...). For every payload the compiled verdict
must equal ``jsonschema``'s, and a rejection must raise the package's exception with the package's
cause, which is what a station gets back as its CALLERROR.
"""

from __future__ import annotations

import copy
import decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis_jsonschema import from_schema
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, _validate_payload

from csms.ocpp.schemas import MessageValidator, load_schemas, validator_for

VERSIONS = ("1.6", "2.0.1")


def message_for(version: str, name: str, payload: Any) -> Call | CallResult:
    if name.endswith("Response"):
        return CallResult("u1", payload, action=name[: -len("Response")])
    return Call("u1", name[: -len("Request")] if version != "1.6" else name, payload)


def reference_verdict(message: Call | CallResult, version: str) -> tuple[type, str] | None:
    """What the ``ocpp`` package says: None for valid, else (exception type, cause)."""
    probe = copy.copy(message)
    probe.payload = copy.deepcopy(message.payload)
    try:
        _validate_payload(probe, version)
    except OCPPError as exc:
        return type(exc), str(exc.details.get("cause"))
    except decimal.DecimalException:
        return DECIMAL_CRASH
    return None


#: The package's Decimal check of 1.6 limits raises InvalidOperation on numbers past 28 digits.
DECIMAL_CRASH = (decimal.DecimalException, "")


def our_verdict(validator: MessageValidator, message: Call | CallResult) -> tuple[type, str] | None:
    try:
        validator.validate(message)
    except OCPPError as exc:
        return type(exc), str(exc.details.get("cause"))
    return None


SCHEMAS = [(v, name, schema) for v in VERSIONS for name, schema in sorted(load_schemas(v).items())]

OTHER_VALUES = [None, True, 0, -1, 1.5, 0.05, 2**40, "", "x", "x" * 2000, [], [1], {}, {"k": 1}]


def narrowed(schema: Any) -> Any:
    """The schema with short lists, only to draw valid payloads quickly (a payload valid
    for it is valid for the original; long lists come from the mutations)."""
    if isinstance(schema, list):
        return [narrowed(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: narrowed(v) for k, v in schema.items() if k not in ("$schema", "$id")}
    if out.get("type") == "array":
        out["maxItems"] = min(out.get("maxItems", 3), 3)
    return out


def paths(value: Any, at: tuple = ()) -> list[tuple]:
    """Every container in ``value`` (as a key path), the root first."""
    out = [at] if isinstance(value, (dict, list)) else []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        out += paths(v, at + (k,))
    return out


def get(value: Any, path: tuple) -> Any:
    for k in path:
        value = value[k]
    return value


@st.composite
def mutated(draw, valid: st.SearchStrategy) -> Any:
    payload = copy.deepcopy(draw(valid))
    for _ in range(draw(st.integers(1, 2))):
        containers = paths(payload)
        if not containers:
            return copy.deepcopy(draw(st.sampled_from(OTHER_VALUES)))
        target = get(payload, draw(st.sampled_from(containers)))
        if isinstance(target, dict):
            op = draw(st.sampled_from(["drop", "add", "replace"] if target else ["add"]))
            if op == "add":
                target[draw(st.sampled_from(["extra", "customData", "vendorId", "id"]))] = draw(
                    st.sampled_from(OTHER_VALUES))
            else:
                key = draw(st.sampled_from(sorted(target)))
                if op == "drop":
                    del target[key]
                else:
                    target[key] = copy.deepcopy(draw(st.sampled_from(OTHER_VALUES + [target[key] * 2 if isinstance(
                        target[key], (str, int, float)) and not isinstance(target[key], bool) else None])))
        else:
            op = draw(st.sampled_from(["clear", "append", "replace"] if target else ["clear", "append"]))
            if op == "clear":
                target.clear()
            elif op == "append":
                target.extend([copy.deepcopy(target[0]) if target else None] * draw(st.integers(1, 8)))
            else:
                target[draw(st.integers(0, len(target) - 1))] = copy.deepcopy(draw(st.sampled_from(OTHER_VALUES)))
    return payload


@pytest.mark.parametrize("version,name,schema", SCHEMAS, ids=[f"{v}-{n}" for v, n, _ in SCHEMAS])
def test_compiled_verdicts_equal_jsonschema(version: str, name: str, schema: dict) -> None:
    validator = validator_for(version)
    valid = from_schema(narrowed(schema))
    seen = {"valid": 0, "invalid": 0}

    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(valid, mutated(valid)))
    def check(payload: Any) -> None:
        message = message_for(version, name, payload)
        expected = reference_verdict(message, version)
        if expected is DECIMAL_CRASH:
            # The package would crash the session; we accept an exact multiple, else refuse it as
            # FormatViolation. Either way the session survives. Nothing to compare.
            verdict = our_verdict(validator, message)
            assert verdict is None or verdict[0].__name__ == "FormatViolationError"
            return
        assert validator.is_valid(message.message_type_id, message.action, payload) == (expected is None), payload
        assert our_verdict(validator, message) == expected, payload
        seen["valid" if expected is None else "invalid"] += 1

    check()
    assert seen["invalid"] > 0  # the mutations did produce rejected payloads


@pytest.mark.parametrize("payload,error,cause_part", [
    ({"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0,
      "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": {
          "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.05}]}}},
     "FormatViolationError", "16.05"),
    ({"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 1, "stackLevel": 0,
      "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative", "chargingSchedule": {
          "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.3}]}}}, None, None),
])
def test_one_decimal_grid_of_16_set_charging_profile(payload, error, cause_part) -> None:
    """1.6 limits must be multiples of 0.1; the package checks them as Decimals, and so do we."""
    message = Call("u", "SetChargingProfile", payload)
    verdict = our_verdict(validator_for("1.6"), message)
    assert verdict == reference_verdict(message, "1.6")
    if error is None:
        assert verdict is None
    else:
        assert verdict[0].__name__ == error and cause_part in verdict[1]


def test_every_schema_is_compiled_at_start() -> None:
    assert len(validator_for("1.6")) == len(load_schemas("1.6")) == 78
    assert len(validator_for("2.0.1")) == len(load_schemas("2.0.1")) == 128
    assert validator_for("1.6").check_for(MessageType.Call, "NoSuchAction") is None
