"""The operator's commands forwarded over the bus: requests and replies read back equal, every CommandError comes
back as the same class with the same text and fields, and nothing a broken peer sends raises anything but
BadMessage."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.bus.commands import Refusal
from csms.bus.operator_messages import (
    ERRORS, OPERATOR_REFUSALS, OperatorReply, OperatorRequest, decode_reply, decode_request, encode_reply,
    encode_request, error_of, failure_of, failure_reply, refusal_error, refusal_reply, result_reply,
)
from csms.bus.topics import Topics
from csms.bus.wire import BadMessage
from csms.operations.results import (
    BadArguments, CommandError, CommandResult, NotBalanced, StationBusy, StationError, StationOffline,
    StationTimeout, UnknownCommand, UnknownStation,
)
from csms.web.operator import STATUS

from .strategies import STATION, text
from .test_codec import _mutations, json_values

json_objects = st.dictionaries(text, json_values, max_size=4)
requests = st.builds(OperatorRequest, text, st.just(STATION), text, json_objects, text, st.floats(0, 4e9))
results = st.builds(CommandResult, text, text, text, json_objects)


@st.composite
def command_errors(draw: st.DrawFn) -> CommandError:
    cls = draw(st.sampled_from(sorted(ERRORS.values(), key=lambda c: c.__name__)))
    if cls is BadArguments:
        return BadArguments(draw(text), draw(text))
    if issubclass(cls, StationError):
        return cls(draw(text), draw(text))
    return cls(draw(text))


replies = (st.builds(result_reply, text, results) | st.builds(failure_reply, text, command_errors())
           | st.builds(refusal_reply, text, st.sampled_from(sorted(OPERATOR_REFUSALS)), text))


@given(requests)
@settings(max_examples=200, deadline=None)
def test_a_request_reads_back_equal(req: OperatorRequest) -> None:
    assert decode_request(encode_request(req), STATION) == req


@given(replies)
@settings(max_examples=200, deadline=None)
def test_a_reply_reads_back_equal(reply: OperatorReply) -> None:
    assert decode_reply(encode_reply(reply)) == reply


@given(command_errors())
def test_an_error_comes_back_as_the_same_class_text_and_fields(exc: CommandError) -> None:
    back = error_of(decode_reply(encode_reply(failure_reply("r1", exc))).failure)  # type: ignore[arg-type]
    assert type(back) is type(exc) and str(back) == str(exc) and back.outcome == exc.outcome
    assert getattr(back, "field", None) == getattr(exc, "field", None)
    assert (getattr(back, "code", None), getattr(back, "description", None)) == \
        (getattr(exc, "code", None), getattr(exc, "description", None))


def test_every_error_the_http_api_knows_travels() -> None:
    """A CommandError class the HTTP API gives a status code, but the bus cannot carry, would come back from a
    gateway as a plain 500."""
    assert set(STATUS) <= set(ERRORS.values())
    assert {UnknownCommand, UnknownStation, StationOffline, StationTimeout, NotBalanced, StationBusy} <= set(STATUS)


def test_a_subclass_travels_as_its_known_base() -> None:
    class Odd(StationTimeout):
        pass
    assert type(error_of(failure_of(Odd("slow")))) is StationTimeout


@pytest.mark.parametrize(("refused", "cls", "words"), [
    (Refusal.NOT_HERE, StationOffline, "no longer on gateway gw-2"),
    (Refusal.BUSY, StationBusy, "gateway gw-2"),
    (Refusal.EXPIRED, StationTimeout, "gateway gw-2 did not start"),
    (Refusal.BAD_REQUEST, CommandError, "gateway gw-2 could not read"),
])
def test_a_refusal_becomes_the_error_a_single_node_would_give(refused, cls, words) -> None:
    exc = refusal_error(refused, "why", "CP-1", "gateway gw-2")
    assert type(exc) is cls and words in str(exc) and exc.ran_on is None  # the controller logs these itself


def test_a_balancers_refusal_is_no_answer_to_an_operator() -> None:
    for refused in (Refusal.FENCED, Refusal.WRONG_GROUP):
        payload = json.dumps({"v": 1, "id": "r", "refused": refused.value, "detail": ""})
        with pytest.raises(BadMessage):
            decode_reply(payload)
    with pytest.raises(BadMessage, match="failure.outcome"):
        decode_reply(json.dumps({"v": 1, "id": "r", "failure": {"outcome": "Exploded", "message": ""}}))


@given(st.data(), requests, replies)
@settings(max_examples=120, deadline=None)
def test_a_damaged_message_is_refused_with_bad_message_only(data, req, reply) -> None:
    for valid in (encode_request(req), encode_reply(reply)):
        damaged = json.dumps(data.draw(_mutations(json.loads(valid))))
        for decode in (lambda p: decode_request(p, STATION), decode_reply):
            try:
                decode(damaged)
            except BadMessage:
                pass


@given(st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_garbage_is_refused_with_bad_message_only(payload: bytes) -> None:
    for decode in (lambda p: decode_request(p, STATION), decode_reply):
        try:
            decode(payload)
        except BadMessage:
            pass


def test_operator_topics_build_and_parse_apart_from_the_balancers() -> None:
    t = Topics("site7")
    assert t.operator("gw-1", "CP1") == "site7/op/gw-1/CP1" and t.operators("gw-1") == "site7/op/gw-1/+"
    assert t.command_of(t.operator("gw-1", "CP1"), "op") == ("gw-1", "CP1")
    assert t.command_of(t.operator("gw-1", "CP1")) is None and t.command_of(t.command("gw-1", "CP1"), "op") is None
    assert t.operator_replies("ctl") == "site7/opres/ctl" != t.replies("ctl")
