"""The connection's message path keeps the handler contract and validates both ways, once."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import pytest
from ocpp.exceptions import FormatViolationError, NotSupportedError, ProtocolError
from ocpp.v16 import call, call_result

from csms.domain.state import Version
from csms.ocpp.connection import Connection
from csms.ocpp.protocol import InvalidReply, Protocol
from csms.ocpp.routing import after, on, routes_of
from csms.ocpp.schemas import validator_for


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[list] = []

    async def send(self, message: str) -> None:
        assert isinstance(message, str)  # OCPP-J frames are text frames
        self.sent.append(json.loads(message))

    async def recv(self) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self, code: int, reason: str) -> None:
        pass


class Handlers:
    def __init__(self) -> None:
        self.after_seen: list = []

    @on("Heartbeat")
    def heartbeat(self, call_unique_id: str, **kw):
        return call_result.Heartbeat(current_time=f"t-{call_unique_id}")

    @on("Authorize")
    async def authorize(self, id_tag: str, **kw):
        if id_tag == "boom":
            raise RuntimeError("handler bug")
        if id_tag == "refuse":
            raise ProtocolError(details={"cause": "no"})
        if id_tag == "bad-reply":
            return call_result.Authorize(id_tag_info={"status": "NotAStatus"})
        if id_tag == "none":
            return None
        return call_result.Authorize(id_tag_info={"status": "Accepted"})

    @after("Authorize")
    async def after_authorize(self, id_tag: str, **kw):
        self.after_seen.append(id_tag)

    @on("DataTransfer", skip_schema_validation=True)
    def data_transfer(self, vendor_id, **kw):
        return call_result.DataTransfer(status="Accepted", data=kw.get("vendor_extra"))


class Probe(Connection):
    def __init__(self) -> None:
        routes = routes_of(Handlers)
        protocol = Protocol(Version.V16, validator_for("1.6"), {a: r.validate for a, r in routes.items()},
                            frozenset({"Heartbeat", "Authorize", "DataTransfer", "StatusNotification", "Reset"}))
        self.handlers = Handlers()
        super().__init__("P1", FakeSocket(), protocol, self.handlers, routes, call_result, timeout=1, rate=1000,
                         burst=1000)

    @property
    def sent(self) -> list[list]:
        return self.socket.sent

    @property
    def after_seen(self) -> list:
        return self.handlers.after_seen


@pytest.fixture
def no_library_validation(monkeypatch):
    """Proves the package never validates on our path: its validator fails the test if called."""
    import ocpp.charge_point
    import ocpp.messages

    async def forbidden(*a, **kw):
        raise AssertionError("the ocpp package validated a message a second time")

    monkeypatch.setattr(ocpp.charge_point, "validate_payload", forbidden)
    monkeypatch.setattr(ocpp.messages, "validate_payload", forbidden)


async def test_replies_and_handler_failures(no_library_validation) -> None:
    p = Probe()
    await p.receive('[2,"h1","Heartbeat",{}]')
    assert p.sent[-1] == [3, "h1", {"currentTime": "t-h1"}]
    await p.receive('[2,"a1","Authorize",{"idTag":"ok"}]')
    assert p.sent[-1] == [3, "a1", {"idTagInfo": {"status": "Accepted"}}]
    await asyncio.sleep(0)
    assert p.after_seen == ["ok"]
    # A failing handler is our fault: InternalError, and the session carries on.
    for tag, code in (("boom", "InternalError"), ("bad-reply", "InternalError"), ("none", "InternalError"),
                      ("refuse", "ProtocolError")):
        await p.receive(json.dumps([2, tag, "Authorize", {"idTag": tag}]))
        assert p.sent[-1][:3] == [4, tag, code]
    # 1.6 spells it FormationViolation; the package says FormatViolation.
    await p.receive('[2,"x1","Authorize",{"idTag":"ok","extra":1}]')
    assert p.sent[-1][:3] == [4, "x1", "FormationViolation"]
    await p.receive('[2,"x2","Reset",{"type":"Hard"}]')
    assert p.sent[-1][:3] == [4, "x2", "NotSupported"]
    # skip_schema_validation is honoured both ways (vendor extras pass).
    await p.receive('[2,"d1","DataTransfer",{"vendorId":"v","vendorExtra":"y"}]')
    assert p.sent[-1] == [3, "d1", {"status": "Accepted", "data": "y"}]


async def answer(p: Probe, command, frame: list, **kw):
    """Runs ``p.call(command)`` and answers its CALL with ``frame`` (message id filled in)."""
    before = len(p.sent)
    task = asyncio.create_task(p.call(command, **kw))
    while len(p.sent) == before:
        await asyncio.sleep(0.001)
    assert p.sent[-1][0] == 2
    await p.receive(json.dumps([frame[0], p.sent[-1][1], *frame[1:]]))
    return await task


def profile(limit: float) -> call.SetChargingProfile:
    return call.SetChargingProfile(connector_id=1, cs_charging_profiles={
        "charging_profile_id": 1, "stack_level": 0, "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative", "charging_schedule": {"charging_rate_unit": "A",
                                                                   "charging_schedule_period": [
                                                                       {"start_period": 0, "limit": limit}]}})


async def test_outbound_calls_are_validated_before_sending_and_replies_after(no_library_validation) -> None:
    p = Probe()
    with pytest.raises(FormatViolationError):
        await p.call(profile(16.05))  # 1.6 limits are on a 0.1 A grid
    assert p.sent == []
    assert (await answer(p, profile(16.3), [3, {"status": "Accepted"}])).status == "Accepted"
    sent = p.sent[-1]
    assert sent[2] == "SetChargingProfile"
    assert sent[3]["csChargingProfiles"]["chargingSchedule"]["chargingSchedulePeriod"] == [
        {"startPeriod": 0, "limit": 16.3}]
    # A reply that breaks its schema raises, as the package's call() does.
    with pytest.raises(InvalidReply, match="'extra' was unexpected") as invalid:
        await answer(p, profile(16), [3, {"status": "Accepted", "extra": 1}])
    assert invalid.value.code == FormatViolationError.code  # our schema check's verdict, not the station's CALLERROR
    # ... unless validation is skipped for this call (then the dataclass refuses the unknown key).
    with pytest.raises(TypeError):
        await answer(p, call.GetConfiguration(key=["A"]), [3, {"vendorExtra": 1}], skip_schema_validation=True)
    reply = await answer(p, call.GetConfiguration(key=["A"]), [3, {"configurationKey": [], "unknownKey": ["A"]}],
                         skip_schema_validation=True)
    assert reply.unknown_key == ["A"]
    # A CALLERROR: the matching exception.
    with pytest.raises(NotSupportedError):
        await answer(p, call.ChangeConfiguration(key="K", value="V"), [4, "NotSupported", "no", {}])
    # No answer: TimeoutError, and the next call may go out.
    with pytest.raises(TimeoutError):
        await p.call(call.ChangeConfiguration(key="K", value="V"))
    assert (await answer(p, call.ChangeConfiguration(key="K", value="V"), [3, {"status": "Accepted"}])).status == \
        "Accepted"


async def test_a_reply_handled_while_its_call_is_still_being_sent_is_taken() -> None:
    """The socket's send may yield; a fast charger's reply can be handled before it returns."""
    p = Probe()
    sent = p.socket.send

    async def slow_send(message: str) -> None:
        await sent(message)
        frame = json.loads(message)
        if frame[0] == 2:
            await p.receive(json.dumps([3, frame[1], {"status": "Accepted"}]))
            await asyncio.sleep(0.01)

    p.socket.send = slow_send
    assert (await p.call(call.ChangeConfiguration(key="K", value="V"))).status == "Accepted"


async def test_a_call_whose_frame_could_not_be_sent_leaves_nothing_outstanding() -> None:
    p = Probe()
    sent = p.socket.send

    async def broken_send(message: str) -> None:
        raise ConnectionError("socket closed")

    p.socket.send = broken_send
    with pytest.raises(ConnectionError):
        await p.call(call.ChangeConfiguration(key="K", value="V"))
    assert p.protocol.pending is None
    p.socket.send = sent
    assert (await answer(p, call.ChangeConfiguration(key="K", value="V"), [3, {"status": "Accepted"}])).status == \
        "Accepted"


async def test_a_reply_taken_in_the_turn_its_deadline_passed_is_a_timeout_not_a_cancellation() -> None:
    """At the deadline the protocol gives the call up at once. With an ``asyncio.timeout`` around the wait, a
    reply read in the same turn of the loop as the deadline (the loop was busy) reached a cancelled future and
    was lost, and the caller, not cancelled by anyone, got CancelledError (a delivery worker ends on that)."""
    p = Probe()
    seen: list[tuple] = []
    p._observe = lambda *event: seen.append(event)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(p.call(call.ChangeConfiguration(key="K", value="V"), timeout=0.05))
    while not p.sent:
        await asyncio.sleep(0)
    deadline = p.protocol.pending.deadline
    reply = json.dumps([3, p.sent[-1][1], {"status": "Accepted"}])
    loop.call_at(deadline - 0.02, time.sleep, 0.04)  # the loop is busy past the deadline...
    loop.call_at(deadline - 1e-6, lambda: asyncio.ensure_future(p.receive(reply)))  # ...and the reply was read
    with pytest.raises(TimeoutError):
        await task
    await asyncio.sleep(0)
    assert p.protocol.pending is None
    assert sorted(e[3] for e in seen) == ["Timeout", "Unsolicited"]
    assert (await answer(p, call.ChangeConfiguration(key="K", value="V"), [3, {"status": "Accepted"}])).status == \
        "Accepted"


async def test_a_reply_before_the_deadline_is_taken_and_the_timer_is_gone() -> None:
    p = Probe()
    loop = asyncio.get_running_loop()
    timers = len(loop._scheduled)
    assert (await answer(p, call.ChangeConfiguration(key="K", value="V"), [3, {"status": "Accepted"}])).status == \
        "Accepted"
    assert all(h.cancelled() for h in loop._scheduled[timers:])


async def test_a_connection_looks_its_loop_up_once_not_per_call(monkeypatch) -> None:
    """On CPython 3.11 each ``asyncio.get_running_loop()`` is a ``getpid()`` system call; a decision makes a
    call on every charger's connection, and each connection's calls reuse the loop it looked up first."""
    lookups: list[str] = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        caller = sys._getframe(1).f_code.co_filename
        if f"{os.sep}csms{os.sep}" in caller:
            lookups.append(caller)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    p = Probe()
    for n in range(6):
        assert (await answer(p, call.ChangeConfiguration(key="K", value="V"), [3, {"status": "Accepted"}])).status \
            == "Accepted"
        if n == 0:
            first = len(lookups)
    assert len(lookups) == first, lookups[first:]
