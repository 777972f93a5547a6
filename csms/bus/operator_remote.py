"""The operator's commands to stations a node does not hold: sent over the bus, answered from where they ran.

A controller holds no station sessions, so the operator's commands that need one (everything but the operator's
caps) are forwarded: :class:`RemoteCommander` is the :class:`~csms.operations.port.StationCommander` the
controller's own operator commands hand them to. It finds the gateway holding the station in the controller's
mirror, sends the request (:mod:`csms.bus.operator_messages`) and returns that gateway's answer, or raises the
CommandError the gateway raised, as the same class (with ``ran_on`` naming the node that logged it). What the
bus adds, raised here (``ran_on`` None, so the asking node logs it):

=========================================================  =====================================================
no gateway holds the station (the mirror)                  StationOffline naming that no gateway holds it
the broker is away, the gateway went offline or did not    StationTimeout naming the gateway
answer within the wait, or did not start it in time
the station left that gateway before the command ran       StationOffline
too many operator's commands wait for the station there    StationBusy
=========================================================  =====================================================

A gateway holds only its own stations and no mirror (every station's every message on every gateway would
multiply the bus's traffic by their number). A command its operator sends for a station it does not hold is
relayed (:func:`relay_target`): one controller takes it (a shared subscription), runs it through its own operator
commands, so through this forwarding to the holding gateway, and answers the gateway with what came of it. The
asking gateway waits one ``call_timeout`` (the relayed command may queue behind another for the station on the
controller) and one ``margin`` longer than the controller does.

The wait: the gateway must start the command within ``call_timeout`` (its deadline), and one command may take
:data:`~.operator_messages.CALLS_PER_COMMAND` calls' timeouts there (a SendLocalList refused as a difference and
sent in full; a GetBaseReport and the reports it brings), so the controller waits for that plus ``margin``
(:func:`~.operator_messages.answer_within`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from csms.operations.results import CommandError, CommandResult, StationOffline, StationTimeout

from .connection import BusConnection, publish_properties
from .operator_messages import (
    OperatorReply, OperatorRequest, answer_within, encode_request, error_of, refusal_error,
)
from .topics import Topics

log = logging.getLogger("csms.bus.controller")



@dataclass(frozen=True)
class Target:
    """Where one command goes: ``topic``; ``who`` answers it (for the operator's messages); ``node`` is the node
    whose going offline ends the wait (None: no one node)."""

    topic: str
    who: str
    node: str | None
    #: What the operator is told when no answer came within the wait.
    silence: str


def holder_target(topics: Topics, holder: Callable[[str], str | None]) -> Callable[[str], Target]:
    """A controller's route: the gateway ``holder(station_id)`` names (its mirror's)."""
    def route(station_id: str) -> Target:
        gateway = holder(station_id)
        if gateway is None:
            raise StationOffline(f"station {station_id!r} is not connected: no gateway currently holds it; a "
                                 "command needs a live connection (try again once it reconnects)")
        return Target(topics.operator(gateway, station_id), f"gateway {gateway}", gateway,
                      f"gateway {gateway} did not answer")
    return route


def relay_target(topics: Topics, node: str) -> Callable[[str], Target]:
    """A gateway's route for a station it does not hold: the controllers, one of which relays it."""
    def route(station_id: str) -> Target:
        return Target(topics.relay(station_id), "the controller relaying it", None,
                      f"station {station_id!r} is not on gateway {node}, and no controller relayed the command to "
                      "the gateway holding it (is a controller running, connected to the broker?)")
    return route


@dataclass
class _Waiting:
    future: asyncio.Future[OperatorReply | str]
    node: str | None


class RemoteCommander:
    """The operator's station commands of a node, run where ``route(station_id)`` sends them (see the module's
    docstring); ``hops`` is how many forwardings lie between (1: to the gateway; 2: through a controller)."""

    def __init__(self, node: str, topics: Topics, conn: BusConnection, route: Callable[[str], Target], *,
                 call_timeout: float, margin: float, clock: Callable[[], float], counts: Counter[str],
                 hops: int = 1):
        self.node = node
        self.topics = topics
        self.conn = conn
        self.route = route
        self.call_timeout = call_timeout
        self.clock = clock
        self.counts = counts
        #: Seconds this node waits for the answer.
        self.wait = answer_within(call_timeout, hops, margin)
        self._waiting: dict[str, _Waiting] = {}

    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        target = self.route(station_id)
        rid = uuid.uuid4().hex
        req = OperatorRequest(rid, station_id, command, body if isinstance(body, dict) else {}, by,
                              self.clock() + self.call_timeout)
        future: asyncio.Future[OperatorReply | str] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = _Waiting(future, target.node)
        try:
            answer = await self._ask(target, req, future)
        finally:
            del self._waiting[rid]
        return self._result(answer, station_id, target)

    async def _ask(self, target: Target, req: OperatorRequest,
                   future: asyncio.Future[OperatorReply | str]) -> OperatorReply | str:
        """The reply, or why there is none (a sentence naming who was asked)."""
        props = publish_properties(response_topic=self.topics.operator_replies(self.node), correlation=req.id,
                                   expiry=self.call_timeout)
        try:
            async with asyncio.timeout(self.wait):
                try:
                    await self.conn.publish(target.topic, encode_request(req), qos=1, properties=props)
                except aiomqtt.MqttError as exc:
                    return f"the bus to {target.who} is down ({exc}); the command was not sent: try again later"
                self.counts["operator_sent"] += 1
                return await future
        except TimeoutError:
            return (f"{target.silence} within {self.wait:g} s; the command may or may not have reached the station "
                    "(the event log says)")

    def _result(self, answer: OperatorReply | str, station_id: str, target: Target) -> CommandResult:
        if isinstance(answer, str):
            self.counts["operator_unanswered"] += 1
            raise StationTimeout(answer)
        if answer.result is not None:
            self.counts["operator_answered"] += 1
            return answer.result
        error: CommandError
        if answer.failure is not None:
            error = error_of(answer.failure)
            error.ran_on = target.node or target.who  # it ran (or the relay ended it) there, and was logged there
        else:
            assert answer.refused is not None  # a reply is a result, a failure or a refusal
            error = refusal_error(answer.refused, answer.detail, station_id, target.who)
        self.counts["operator_failed"] += 1
        raise error

    def reply(self, answer: OperatorReply) -> None:
        """A message on this controller's ``<prefix>/opres/<node>``."""
        waiting = self._waiting.get(answer.id)
        if waiting is None or waiting.future.done():
            self.counts["operator_late_reply"] += 1
            return
        waiting.future.set_result(answer)

    def fail(self, why: str, node: str | None = None) -> None:
        """No answer can come from ``node`` (None: from anywhere): its waiting commands end at once."""
        for w in self._waiting.values():
            if (node is None or w.node == node) and not w.future.done():
                w.future.set_result(f"{'gateway ' + w.node if w.node else 'the controller relaying it'} {why}; the "
                                    "command may or may not have reached the station (the event log says)")
