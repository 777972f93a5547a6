"""RemoteLink without a broker: what each answer of the bus becomes for the delivery."""

from __future__ import annotations

import inspect

import pytest

from csms.bus.codec import LinkInfo
from csms.bus.commands import OPS, Refusal, Reply, refusal_reply, result_reply
from csms.bus.remote import REFUSAL_OUTCOMES, RemoteLink
from csms.domain.link import Capabilities, CompositeLimit, Outcome, StationLink


class Sender:
    def __init__(self, answer):
        self.answer = answer
        self.sent = []

    async def send(self, link, op, kwargs):
        self.sent.append((op, kwargs))
        return self.answer(op) if callable(self.answer) else self.answer


def test_every_op_is_a_method_with_the_ports_signature() -> None:
    for op in OPS:
        assert inspect.signature(getattr(RemoteLink, op)) == inspect.signature(getattr(StationLink, op))
    assert set(REFUSAL_OUTCOMES) == set(Refusal)


@pytest.mark.parametrize(("answer", "outcome"), [
    (Outcome.OFFLINE, Outcome.OFFLINE), (Outcome.TIMEOUT, Outcome.TIMEOUT),
    *((refusal_reply("c", r, ""), o) for r, o in REFUSAL_OUTCOMES.items()),
])
async def test_a_failure_is_an_outcome_the_delivery_knows(answer, outcome) -> None:
    link = RemoteLink("CP1", "gw", None, LinkInfo(), Sender(answer))
    assert await link.set_availability(1, True) is outcome
    # Only silence (a timeout, a gateway or broker away) is worth asking again: a refusal is an answer.
    silent = outcome in (Outcome.TIMEOUT, Outcome.OFFLINE)
    assert await link.read_capabilities(1) == Capabilities(read=False, unanswered=silent)
    assert await link.get_composite(1, 60, "A") is None


async def test_a_reply_updates_the_link_and_a_closed_link_sends_nothing() -> None:
    sender = Sender(lambda op: result_reply("c", op, CompositeLimit(6.0, "A", 1),
                                            LinkInfo(True, "rebooted", 2, frozenset({"TriggerMessage"}))))
    link = RemoteLink("CP1", "gw", None, LinkInfo(), sender)
    assert not link.ready.is_set()
    assert await link.get_composite(1, 60, "A") == CompositeLimit(6.0, "A", 1)
    assert link.ready.is_set() and link.boots == 2 and link.unsupported == {"TriggerMessage"}
    link.close()
    assert await link.set_profile(None) is Outcome.OFFLINE and len(sender.sent) == 1


async def test_an_answered_outcome_comes_back_as_sent() -> None:
    link = RemoteLink("CP1", "gw", None, LinkInfo(), Sender(Reply("c", Outcome.NOT_SUPPORTED)))
    assert await link.trigger_meter_values(0) is Outcome.NOT_SUPPORTED
