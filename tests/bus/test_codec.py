"""The bus's wire formats: everything sent reads back equal, and nothing a broken peer sends raises anything
but BadMessage (which the receivers count and log)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.bus.codec import (
    LinkInfo, NodeRecord, StationMessage, decode_node, decode_station, encode_node, encode_station,
)
from csms.bus.commands import (
    OPS, Command, Refusal, decode_command, decode_reply, encode_command, encode_reply, refusal_reply,
    result_reply, result_value,
)
from csms.bus.topics import Topics, valid_level
from csms.bus.wire import BadMessage
from csms.domain.link import Purpose
from csms.domain.state import StationState

from .strategies import STATION, capabilities, composites, events, outcomes, specs, station_states, text

links = st.builds(LinkInfo, st.booleans(), text, st.integers(0, 5), st.frozensets(text, max_size=3))
messages = st.builds(StationMessage, text, text, st.integers(0, 2**53), station_states(), links,
                     st.none() | events())


@given(messages)
@settings(max_examples=200, deadline=None)
def test_a_station_message_reads_back_equal(msg: StationMessage) -> None:
    assert decode_station(encode_station(msg), STATION) == msg


@given(st.builds(NodeRecord, text, st.sampled_from(["gateway", "controller"]), st.sampled_from(["online", "offline"]),
                 st.integers(0, 10**6), st.lists(text, max_size=3).map(tuple), st.floats(0, 4e9), text))
def test_a_node_record_reads_back_equal(rec: NodeRecord) -> None:
    assert decode_node(encode_node(rec), rec.node) == rec


def _kwargs(op: str) -> st.SearchStrategy[dict]:
    return {
        "read_capabilities": st.fixed_dictionaries({"connector": st.integers(0, 4)}),
        "set_measurands": st.fixed_dictionaries({"measurands": st.lists(text, max_size=4)}),
        "set_meter_interval": st.fixed_dictionaries({"interval": st.integers(0, 3600)}),
        "trigger_meter_values": st.fixed_dictionaries({"connector": st.integers(0, 4)}),
        "set_profile": st.fixed_dictionaries({"spec": specs}),
        "clear_profile": st.fixed_dictionaries({
            "profile_id": st.none() | st.integers(0, 10**6), "purpose": st.none() | st.sampled_from(list(Purpose)),
            "stack_level": st.none() | st.integers(0, 10), "connector": st.none() | st.integers(0, 4)}),
        "get_composite": st.fixed_dictionaries({"connector": st.integers(0, 4), "duration": st.integers(1, 86400),
                                                "unit": st.sampled_from(["A", "W"])}),
        "set_availability": st.fixed_dictionaries({"connector": st.integers(0, 4), "operative": st.booleans()}),
    }[op]


@st.composite
def commands(draw: st.DrawFn) -> Command:
    op = draw(st.sampled_from(sorted(OPS)))
    return Command(draw(text), STATION, op, draw(_kwargs(op)), draw(st.none() | text), draw(st.integers(0, 2**53)),
                   draw(st.floats(0, 4e9)))


@given(commands())
@settings(max_examples=300, deadline=None)
def test_a_command_reads_back_equal(cmd: Command) -> None:
    assert decode_command(encode_command(cmd), STATION) == cmd


@given(capabilities, st.none() | links)
def test_capabilities_come_back_exactly(caps, link) -> None:
    reply = decode_reply(encode_reply(result_reply("c1", "read_capabilities", caps, link)))
    assert result_value("read_capabilities", reply) == caps and reply.link == link


@given(composites)
def test_a_composite_limit_comes_back_exactly(limit) -> None:
    assert result_value("get_composite", decode_reply(encode_reply(result_reply("c1", "get_composite", limit)))) \
        == limit


@given(outcomes, st.sampled_from(["set_profile", "clear_profile", "set_availability", "set_meter_interval"]))
def test_an_outcome_comes_back_exactly(outcome, op) -> None:
    assert result_value(op, decode_reply(encode_reply(result_reply("c1", op, outcome)))) is outcome


@given(st.sampled_from(list(Refusal)), text)
def test_a_refusal_comes_back_with_its_detail(refused, detail) -> None:
    reply = decode_reply(encode_reply(refusal_reply("c1", refused, detail)))
    assert (reply.id, reply.refused, reply.detail, reply.outcome) == ("c1", refused, detail, None)


# -- what a broken or foreign peer may send ------------------------------------------------------------------

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                           max_leaves=10)


def _mutations(obj: dict) -> st.SearchStrategy[dict]:
    """``obj`` with one field somewhere removed or replaced by any JSON value."""
    @st.composite
    def mutate(draw: st.DrawFn) -> dict:
        doc = json.loads(json.dumps(obj))
        node = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                return doc
            key = draw(st.sampled_from(keys))
            child = node[key]
            if isinstance(child, (dict, list)) and child and draw(st.booleans()):
                node = child
                continue
            if isinstance(node, dict) and draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(json_values)
            return doc
    return mutate()


DECODERS = [lambda p: decode_station(p, STATION), lambda p: decode_command(p, STATION), decode_reply,
            lambda p: decode_node(p, "n1")]


@given(st.data(), messages, commands())
@settings(max_examples=120, deadline=None)
def test_a_damaged_message_is_refused_with_bad_message_only(data, msg, cmd) -> None:
    for valid in (encode_station(msg), encode_command(cmd), encode_node(NodeRecord("n1", "gateway", "online")),
                  encode_reply(result_reply("c", "read_capabilities", data.draw(capabilities)))):
        damaged = json.dumps(data.draw(_mutations(json.loads(valid))))
        for decode in DECODERS:
            try:
                decode(damaged)
            except BadMessage:
                pass


@given(st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
def test_garbage_is_refused_with_bad_message_only(payload: bytes) -> None:
    for decode in DECODERS:
        try:
            decode(payload)
        except BadMessage:
            pass


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{", "bad_json"), (b"[1]", "bad_json"), (b'{"v": 2}', "unknown_version"), (b"{}", "missing_field"),
    (b'{"v": 1, "op": "reboot"}', "unknown_op"),
])
def test_each_kind_of_refusal_is_named(payload: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as err:
        decode_command(payload, STATION)
    assert err.value.reason == reason


def test_a_state_for_another_station_is_refused() -> None:
    payload = encode_station(StationMessage("gw", "r", 1, StationState("CP-2")))
    with pytest.raises(BadMessage, match="CP-2") as err:
        decode_station(payload, STATION)
    assert err.value.reason == "wrong_station"


def test_topics_build_and_parse() -> None:
    t = Topics("site7")
    assert t.station("CP1") == "site7/station/CP1" and t.station_of("site7/station/CP1") == "CP1"
    assert t.command_of(t.command("gw-1", "CP1")) == ("gw-1", "CP1")
    assert t.node_of(t.node("ctl")) == "ctl" and t.replies("ctl") == "site7/res/ctl"
    assert t.station_of("other/station/CP1") is None and t.command_of("site7/cmd/gw-1") is None
    assert not valid_level("a/b") and not valid_level("+") and not valid_level("") and valid_level("gw-1.a")
