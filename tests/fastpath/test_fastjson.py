"""csms.ocpp.frames gives what the ``ocpp`` package gives: same frames read, same payloads sent."""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import unpack as library_unpack
from ocpp.v16 import call as call16, call_result as result16
from ocpp.v201 import call as call201, call_result as result201

from csms.ocpp import frames as fastjson

KEYS = st.sampled_from(["charge_point_vendor", "chargePointVendor", "soc", "state_of_charge", "evse_id", "ocppCSMSURL",
                        "V2XChargingCtrlr", "responder_url", "_x", "a__b", "customData", "id", "SoCLimitReached",
                        "e", ""]) | st.text(max_size=12)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=20)


@given(JSON)
def test_key_conversion_is_the_packages(value) -> None:
    assert fastjson.to_snake(value) == camel_to_snake_case(value)
    assert fastjson.to_camel(value) == snake_to_camel_case(value)


def library_payload(obj) -> dict:
    """What ``ChargePoint._handle_call`` sends for a handler's reply."""
    return snake_to_camel_case(remove_nones(serialize_as_dict(obj)))


def example(cls, draw_value):
    """An instance of an ocpp payload dataclass with every field set (optional ones sometimes None)."""
    kwargs = {}
    for f in fields(cls):
        kwargs[f.name] = draw_value(f.name)
    return cls(**kwargs)


PAYLOAD_CLASSES = [c for m in (call16, result16, call201, result201) for c in vars(m).values()
                   if isinstance(c, type) and is_dataclass(c)]


@pytest.mark.parametrize("cls", PAYLOAD_CLASSES, ids=lambda c: f"{c.__module__.split('.')[1]}.{c.__module__.split('.')[2]}.{c.__name__}")
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_reply_payload_is_the_packages(cls, data) -> None:
    obj = example(cls, lambda name: data.draw(JSON, label=name))
    assert fastjson.to_payload(obj) == library_payload(obj)


def test_enums_and_decimals_are_sent_as_the_package_sends_them() -> None:
    reply = result16.BootNotification(current_time="2026-01-01T00:00:00Z", interval=300, status="Accepted")
    frame = fastjson.call_result_frame("1", fastjson.to_payload(reply))
    assert json.loads(frame) == [3, "1", {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}]
    assert json.loads(fastjson.dumps({"limit": Decimal("16.0")})) == {"limit": 16.0}
    assert json.loads(fastjson.dumps({"n": 2**70})) == {"n": 2**70}
    with pytest.raises(TypeError):
        fastjson.dumps({"x": object()})


FRAMES = [
    '[2,"1","Heartbeat",{}]', '[3,"1",{"currentTime":"x"}]', '[4,"1","NotImplemented","",{}]',
    '[2.0,"1","Heartbeat",{}]', '{not json', '{"a":1}', '[2,"b1"]', '[]', '[7,"b2","Heartbeat",{}]', '3', '"x"',
    '[2,"1","Heartbeat",{},5]', '[2,"1","Heartbeat",{"n":123456789012345678901234567890}]',
    '[2,"1","Heartbeat",{"s":"\\ud800"}]', b'\xff\xfe', b'[2,"1","Heartbeat",{}]',
]


def described(fn, raw):
    try:
        msg = fn(raw)
    except OCPPError as exc:
        return "error", type(exc).__name__, str(exc.details.get("cause"))
    return type(msg).__name__, vars(msg)


@pytest.mark.parametrize("raw", FRAMES)
def test_unpack_reads_and_refuses_what_the_package_does(raw) -> None:
    assert described(fastjson.unpack, raw) == described(library_unpack, raw)


@given(st.lists(JSON, max_size=6).map(json.dumps))
def test_unpack_on_any_json(raw) -> None:
    if "Infinity" in raw:  # not JSON, though ``json`` writes and reads it: refused (next test)
        return
    assert described(fastjson.unpack, raw) == described(library_unpack, raw)


@pytest.mark.parametrize("raw", ['[2,"1","Heartbeat",{"x":NaN}]', '[2,"1","Heartbeat",{"x":-Infinity}]',
                                 '[2,"1","Heartbeat",{"x":%s}]' % ("9" * 65), "[" * 33 + "]" * 33])
def test_what_the_package_would_read_but_must_not_is_a_format_violation(raw) -> None:
    """NaN/Infinity are not JSON, a 65-digit number is no OCPP value (and past 4,300 digits ``json`` raises
    ValueError), and deep nesting makes every later step recurse: all are refused, as FormatViolation."""
    with pytest.raises(fastjson.FrameRefused):
        fastjson.unpack(raw)
