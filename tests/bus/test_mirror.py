"""The controller's mirror of a station: replaying the gateway's messages gives the gateway's state, and its
listeners hear the gateway's events, in order; with messages lost, the state still comes out equal."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from csms.bus.codec import LinkInfo, NodeRecord, StationMessage, decode_station, encode_station
from csms.bus.mirror import StationMirror
from csms.domain.state import (
    BootInfo, Event, SiteState, StationBooted, StationConnected, StationDisconnected, StationState, Version,
)

from .strategies import STATION, calls, events, station_states


class Source:
    """A gateway's SiteState driven by OCPP-like calls, with the message each event would publish."""

    def __init__(self, node: str = "gw-a", run: str = "r1"):
        self.state = SiteState()
        self.node, self.run, self.seq = node, run, 0
        self.events: list[Event] = []
        self.messages: list[bytes] = []
        self.state.subscribe(self._on_event)

    def _on_event(self, e: Event) -> None:
        self.events.append(e)
        self.messages.append(self.snapshot(e))

    def snapshot(self, event: Event | None = None, link: LinkInfo = LinkInfo()) -> bytes:
        self.seq += 1
        return encode_station(StationMessage(self.node, self.run, self.seq, self.state.station(STATION), link, event))

    def call(self, name: str, args: tuple) -> None:
        getattr(self.state, name)(STATION, *args)


class Mirror:
    def __init__(self):
        self.state = SiteState()
        self.mirror = StationMirror(self.state)
        self.events: list[Event] = []
        self.state.subscribe(self.events.append)

    def feed(self, payload: bytes):
        msg = decode_station(payload, STATION)
        verdict = self.mirror.judge(msg)
        self.mirror.apply(msg, verdict)
        return verdict

    def station(self) -> StationState:
        return self.state.station(STATION)


@given(st.lists(calls, max_size=25))
@settings(max_examples=200, deadline=None)
def test_replaying_every_message_gives_the_same_state_and_the_same_events(script) -> None:
    src, dst = Source(), Mirror()
    for name, args in script:
        src.call(name, args)
        while src.messages:
            payload = src.messages.pop(0)
            dst.feed(payload)
            # After each message the mirror is exactly as the source was when it published (seen/maintenance
            # changes travel with the next message).
            assert dst.station() == decode_station(payload, STATION).state
    if src.events:
        assert dst.events == src.events
        dst.feed(src.snapshot())  # what a gateway publishes on reconnect: the state, no event
        assert dst.station() == src.state.station(STATION)
        assert dst.events == src.events  # nothing changed, so nothing is told


@given(st.lists(st.tuples(calls, st.booleans()), max_size=25))
@settings(max_examples=200, deadline=None)
def test_with_messages_lost_the_state_still_comes_out_equal(script) -> None:
    src, dst = Source(), Mirror()
    for (name, args), delivered in script:
        src.call(name, args)
        for payload in src.messages:
            if delivered:
                dst.feed(payload)
        src.messages.clear()
    dst.feed(src.snapshot())
    assert dst.station() == src.state.station(STATION)


@given(station_states(), st.none() | events())
@settings(max_examples=150, deadline=None)
def test_any_message_on_a_fresh_mirror_gives_its_state(state, event) -> None:
    """A late controller: one retained message of any content, replayed on an empty mirror."""
    dst = Mirror()
    dst.feed(encode_station(StationMessage("gw-a", "r1", 7, state, LinkInfo(), event)))
    assert dst.station() == state


def _connected(src: Source, at: float) -> bytes:
    src.call("connected", (Version.V16, at))
    return src.messages.pop()


def test_a_duplicate_or_older_message_of_the_same_run_is_ignored() -> None:
    src, dst = Source(), Mirror()
    first = _connected(src, 100.0)
    src.call("status", (1, "Charging", None, 101.0))
    second = src.messages.pop()
    assert dst.feed(first).new_session and dst.feed(second).why == "next"
    assert dst.feed(second).why == "duplicate" and dst.feed(first).why == "duplicate"
    assert dst.events == src.events


def test_the_old_gateways_late_disconnect_does_not_hide_the_new_session() -> None:
    """The station reconnected to gateway B; A notices the dead socket only later and says disconnected."""
    a, b, dst = Source("gw-a"), Source("gw-b"), Mirror()
    dst.feed(_connected(a, 100.0))
    assert dst.feed(_connected(b, 150.0)).new_session
    a.call("disconnected", (180.0,))
    assert dst.feed(a.messages.pop()).why == "superseded"
    assert dst.station().connected and dst.mirror.owner(STATION).node == "gw-b"
    assert [type(e) for e in dst.events] == [StationConnected, StationConnected]


def test_a_gateway_gone_offline_takes_its_stations_with_it_and_a_retained_message_of_it_stays_disconnected():
    src, dst = Source("gw-a", "r1"), Mirror()
    dst.feed(_connected(src, 100.0))
    gone = dst.mirror.node_record(NodeRecord("gw-a", "gateway", "offline", at=50.0, run="r1"), at=200.0)
    assert gone == [STATION] and not dst.station().connected and dst.station().disconnected_at == 200.0
    # A controller that joins now gets the offline record and the station's retained "connected" in any order.
    late = Mirror()
    late.mirror.node_record(NodeRecord("gw-a", "gateway", "offline", at=200.0, run="r1"))
    verdict = late.feed(src.snapshot())
    assert not verdict.new_session and not late.station().connected
    assert [type(e) for e in late.events] == []


def test_a_gateway_restarted_under_its_name_is_a_new_run_and_its_old_stations_are_gone() -> None:
    old, dst = Source("gw-a", "r1"), Mirror()
    dst.mirror.node_record(NodeRecord("gw-a", "gateway", "online", at=10.0, run="r1"))
    dst.feed(_connected(old, 100.0))
    assert dst.mirror.node_record(NodeRecord("gw-a", "gateway", "online", at=300.0, run="r2")) == [STATION]
    # The old run's Last Will, delivered after the new run's hello, changes nothing.
    assert dst.mirror.node_record(NodeRecord("gw-a", "gateway", "offline", at=250.0, run="r1")) == []
    assert dst.mirror.live("gw-a", "r2")


def test_a_reboot_reaches_the_listeners_even_when_its_message_follows_a_gap() -> None:
    src, dst = Source(), Mirror()
    dst.feed(_connected(src, 100.0))
    boot = BootInfo("V", "M")
    src.call("booted", (boot, 101.0))
    dst.feed(src.messages.pop())
    src.call("status", (1, "Available", None, 102.0))
    src.messages.pop()  # lost
    src.call("booted", (boot, 103.0))  # the same boot info again: a reboot
    verdict = dst.feed(src.messages.pop())
    assert verdict.why == "resync" and dst.mirror.counts["gap"] == 1
    assert [type(e) for e in dst.events].count(StationBooted) == 2
    assert dst.station() == src.state.station(STATION)


def test_after_its_gateway_came_back_a_station_is_a_new_session() -> None:
    src, dst = Source("gw-a", "r1"), Mirror()
    dst.feed(_connected(src, 100.0))
    dst.mirror.node_record(NodeRecord("gw-a", "gateway", "offline", at=200.0, run="r1"))
    dst.mirror.node_record(NodeRecord("gw-a", "gateway", "online", at=201.0, run="r1"))  # it reconnected
    verdict = dst.feed(src.snapshot())
    assert verdict.new_session and dst.station().connected
    assert [type(e) for e in dst.events] == [StationConnected, StationDisconnected, StationConnected]
