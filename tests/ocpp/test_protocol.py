"""The OCPP-J protocol as a pure state machine: frames in, events and frames out, no socket, no loop."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import FormatViolationError, NotSupportedError, ProtocolError

from csms.ocpp.protocol import (
    CallAnswered, CallFailed, CallReceived, CallRefused, CallTimedOut, InvalidReply, Protocol, ReplyDropped,
)
from csms.domain.state import Version
from csms.ocpp.schemas import validator_for

KNOWN = frozenset({"Heartbeat", "Authorize", "DataTransfer", "Reset"})
HANDLED = {"Heartbeat": True, "Authorize": True, "DataTransfer": False}


def protocol(version: Version = Version.V16) -> Protocol:
    ids = iter(str(i) for i in range(1, 1000))
    schemas = "1.6" if version is Version.V16 else "2.0.1"
    return Protocol(version, validator_for(schemas), HANDLED, KNOWN, new_id=lambda: next(ids))


def feed(p: Protocol, frame: object) -> tuple[list, list[list]]:
    p.receive_data(frame if isinstance(frame, str) else json.dumps(frame))
    return p.events_received(), [json.loads(f) for f in p.data_to_send()]


def test_a_valid_call_reaches_the_application_and_nothing_is_sent_until_it_answers() -> None:
    p = protocol()
    events, out = feed(p, [2, "a", "Authorize", {"idTag": "X"}])
    assert events == [CallReceived("a", "Authorize", {"idTag": "X"})] and out == []
    assert p.send_result(events[0], {"idTagInfo": {"status": "Accepted"}}) is None
    assert [json.loads(f) for f in p.data_to_send()] == [[3, "a", {"idTagInfo": {"status": "Accepted"}}]]


def test_our_reply_that_breaks_its_schema_becomes_an_internal_error() -> None:
    p = protocol()
    (call,), _ = feed(p, [2, "a", "Authorize", {"idTag": "X"}])
    error = p.send_result(call, {"idTagInfo": {"status": "Nope"}})
    assert error is not None
    assert [json.loads(f)[:3] for f in p.data_to_send()] == [[4, "a", "InternalError"]]


@pytest.mark.parametrize("version,frame,code,uid", [
    (Version.V16, "not json", "FormationViolation", "-1"),
    (Version.V201, "not json", "RpcFrameworkError", "-1"),
    (Version.V16, [7, "x", "Heartbeat", {}], "FormationViolation", "x"),
    (Version.V201, [7, "x", "Heartbeat", {}], "MessageTypeNotSupported", "x"),
    (Version.V16, {"a": 1}, "FormationViolation", "-1"),
    (Version.V16, [2, "x"], "ProtocolError", "x"),
    (Version.V201, [2, "x"], "RpcFrameworkError", "x"),
    (Version.V16, [2, "x", "Authorize", {"idTag": "X", "extra": 1}], "FormationViolation", "x"),
    (Version.V201, [2, "x", "Heartbeat", {"extra": 1}], "FormatViolation", "x"),
    (Version.V16, [2, "x", "Reset", {"type": "Hard"}], "NotSupported", "x"),
    (Version.V16, [2, "x", "Teleport", {}], "NotImplemented", "x"),
    (Version.V16, [2, 5, "Heartbeat", {}], "FormationViolation", "-1"),
    (Version.V201, [2, "x", 5, {}], "RpcFrameworkError", "x"),
    (Version.V16, "[" * 40 + "]" * 40, "FormationViolation", "-1"),
])
def test_a_bad_frame_gets_the_error_its_version_names(version, frame, code, uid) -> None:
    p = protocol(version)
    events, out = feed(p, frame)
    assert [type(e) for e in events] == [CallRefused]
    assert out[0][:3] == [4, uid, code] and len(out) == 1


@pytest.mark.parametrize("frame", ['[3]', '[4, "x", 5]', [3, "x", {"currentTime": "t"}]])
def test_a_broken_or_unawaited_reply_is_never_answered(frame) -> None:
    events, out = feed(protocol(), frame)
    assert out == []
    assert len(events) == 1 and isinstance(events[0], (CallRefused, ReplyDropped))


def test_one_outstanding_call_its_reply_and_a_late_reply_after_the_deadline() -> None:
    p = protocol()
    uid = p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=100.0, timeout=5.0)
    assert [json.loads(f) for f in p.data_to_send()] == [[2, uid, "ChangeConfiguration", {"key": "K", "value": "V"}]]
    with pytest.raises(RuntimeError):
        p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=101.0, timeout=5.0)
    p.expire(104.9)
    assert p.events_received() == [] and p.pending is not None
    p.expire(105.0)
    assert p.events_received() == [CallTimedOut(uid, "ChangeConfiguration")] and p.pending is None
    events, out = feed(p, [3, uid, {"status": "Accepted"}])
    assert events == [ReplyDropped(uid)] and out == []
    uid2 = p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=106.0, timeout=5.0)
    events, _ = feed(p, [3, uid2, {"status": "Accepted"}])
    assert events == [CallAnswered(uid2, "ChangeConfiguration", {"status": "Accepted"})]


def test_a_call_error_or_a_reply_its_schema_refuses_fails_the_call() -> None:
    p = protocol()
    uid = p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=0, timeout=5)
    (event,), _ = feed(p, [4, uid, "NotSupported", "no", {}])
    assert isinstance(event, CallFailed) and isinstance(event.error, NotSupportedError)
    assert not isinstance(event.error, InvalidReply)  # what the station said
    uid = p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=0, timeout=5)
    (event,), _ = feed(p, [3, uid, {"status": "Accepted", "extra": 1}])
    assert isinstance(event, CallFailed) and isinstance(event.error, InvalidReply)  # our verdict, not theirs
    assert event.error.code == FormatViolationError.code and "extra" in str(event.error.description)
    uid = p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=0, timeout=5, validate=False)
    (event,), _ = feed(p, [3, uid, {"status": "Accepted", "extra": 1}])
    assert event == CallAnswered(uid, "ChangeConfiguration", {"status": "Accepted", "extra": 1})


@pytest.mark.parametrize("broken", [[4, "{uid}"], [4, "{uid}", "NotSupported"], [3, "{uid}"]])
def test_a_broken_answer_to_our_call_fails_it_at_once(broken) -> None:
    """Found by a user test: a CALLERROR missing its fields was logged as unparsable and the call waited its
    whole timeout."""
    p = protocol()
    uid = p.send_call("ChangeConfiguration", {"key": "K", "value": "V"}, now=0, timeout=5)
    p.data_to_send()
    events, out = feed(p, [uid if x == "{uid}" else x for x in broken])
    assert out == [] and p.pending is None
    assert [type(e) for e in events] == [CallRefused, CallFailed]
    assert events[1].unique_id == uid and isinstance(events[1].error, InvalidReply)


def test_a_call_its_schema_refuses_is_not_sent() -> None:
    p = protocol()
    with pytest.raises(ProtocolError):
        p.send_call("ChangeConfiguration", {"key": "K"}, now=0, timeout=5)
    assert p.data_to_send() == [] and p.pending is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=40),
    st.lists(st.one_of(st.integers(-1, 5), st.text(max_size=8), st.none(), st.dictionaries(st.text(max_size=6),
                                                                                           st.integers())),
             max_size=5).map(json.dumps),
    st.sampled_from(['[2,"a","Heartbeat",{}]', '[3,"1",{"status":"Accepted"}]', '[4,"1","X","y",{}]']),
), max_size=20))
def test_any_frames_get_at_most_one_answer_each_and_every_answer_is_a_call_error_or_nothing(raws) -> None:
    """Whatever a station sends, the protocol does not raise, answers no reply, and answers each frame it
    does not hand to the application with exactly one CALLERROR carrying a string MessageId."""
    p = protocol()
    for raw in raws:
        p.receive_data(raw)
        events = p.events_received()
        out = [json.loads(f) for f in p.data_to_send()]
        assert len(events) == 1
        assert len(out) <= 1
        for frame in out:
            assert frame[0] == 4 and isinstance(frame[1], str) and isinstance(frame[2], str)
        if isinstance(events[0], (CallReceived, ReplyDropped, CallAnswered, CallFailed)):
            assert out == []
        elif isinstance(events[0], CallRefused):
            assert len(out) == (1 if events[0].answered else 0)


def test_the_operator_is_told_which_side_a_failed_call_came_from() -> None:
    """A reply that fails its schema was never a CALLERROR from the station: the operator reads which it was."""
    from ocpp.exceptions import FormatViolationError as Format

    from csms.ocpp.operation import station_error
    from csms.operations.results import InvalidAnswer, StationError

    theirs = station_error(NotSupportedError("no Reset here"))
    assert type(theirs) is StationError and str(theirs) == "the station answered CALLERROR NotSupported: no Reset here"
    ours = station_error(InvalidReply(Format("'Weird' is not one of ['Accepted', 'Rejected']")))
    assert type(ours) is InvalidAnswer and ours.outcome == "InvalidAnswer"
    assert str(ours).startswith("the station's answer does not follow the OCPP schema (FormatViolation: 'Weird'")
