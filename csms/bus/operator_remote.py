"""A controller's operator commands to stations: sent to the gateway that holds the station, answered from there.

A controller holds no station sessions, so the operator's commands that need one (everything but the operator's
caps) are forwarded: :class:`RemoteCommander` is the :class:`~csms.operations.port.StationCommander` the
controller's own operator commands hand them to. It finds the gateway holding the station in the controller's
mirror, sends the request (:mod:`csms.bus.operator_messages`) and returns that gateway's answer, or raises the
CommandError the gateway raised, as the same class (with ``ran_on`` naming the gateway, which logged it). What the
bus adds, raised here (``ran_on`` None, so the controller logs it):

=========================================================  =====================================================
no gateway holds the station (the mirror)                  StationOffline naming that no gateway holds it
the broker is away, the gateway went offline or did not    StationTimeout naming the gateway
answer within the wait, or did not start it in time
the station left that gateway before the command ran       StationOffline
too many operator's commands wait for the station there    StationBusy
=========================================================  =====================================================

The wait: the gateway must start the command within ``call_timeout`` (its deadline), and one command may take
:data:`CALLS_PER_COMMAND` calls' timeouts there (a SendLocalList refused as a difference and sent in full; a
GetBaseReport and the reports it brings), so the controller waits for that plus ``margin``.
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
from .mirror import StationMirror
from .operator_messages import OperatorReply, OperatorRequest, encode_request, error_of, refusal_error
from .topics import Topics

log = logging.getLogger("csms.bus.controller")

#: The most station calls (each bounded by ``call_timeout`` on the gateway) one operator's command makes.
CALLS_PER_COMMAND = 2


@dataclass
class _Waiting:
    future: asyncio.Future[OperatorReply | str]
    node: str


class RemoteCommander:
    """The operator's station commands of a controller, run by the gateways (see the module's docstring)."""

    def __init__(self, node: str, topics: Topics, conn: BusConnection, mirror: StationMirror, *,
                 call_timeout: float, margin: float, clock: Callable[[], float], counts: Counter[str]):
        self.node = node
        self.topics = topics
        self.conn = conn
        self.mirror = mirror
        self.call_timeout = call_timeout
        self.clock = clock
        self.counts = counts
        #: Seconds the controller waits for a gateway's answer.
        self.wait = call_timeout * (1 + CALLS_PER_COMMAND) + margin
        self._waiting: dict[str, _Waiting] = {}

    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        gateway = self.mirror.holder(station_id)
        if gateway is None:
            raise StationOffline(f"station {station_id!r} is not connected: no gateway currently holds it; a command "
                                 "needs a live connection (try again once it reconnects)")
        rid = uuid.uuid4().hex
        req = OperatorRequest(rid, station_id, command, body if isinstance(body, dict) else {}, by,
                              self.clock() + self.call_timeout)
        future: asyncio.Future[OperatorReply | str] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = _Waiting(future, gateway)
        try:
            answer = await self._ask(gateway, req, future)
        finally:
            del self._waiting[rid]
        return self._result(answer, station_id, gateway)

    async def _ask(self, gateway: str, req: OperatorRequest,
                   future: asyncio.Future[OperatorReply | str]) -> OperatorReply | str:
        """The gateway's reply, or why there is none (a sentence naming the gateway)."""
        props = publish_properties(response_topic=self.topics.operator_replies(self.node), correlation=req.id,
                                   expiry=self.call_timeout)
        try:
            async with asyncio.timeout(self.wait):
                try:
                    await self.conn.publish(self.topics.operator(gateway, req.station_id), encode_request(req),
                                            qos=1, properties=props)
                except aiomqtt.MqttError as exc:
                    return f"the bus to gateway {gateway} is down ({exc}); the command was not sent: try again later"
                self.counts["operator_sent"] += 1
                return await future
        except TimeoutError:
            return (f"gateway {gateway} did not answer within {self.wait:g} s; the command may or may not have "
                    "reached the station (the event log says)")

    def _result(self, answer: OperatorReply | str, station_id: str, gateway: str) -> CommandResult:
        if isinstance(answer, str):
            self.counts["operator_unanswered"] += 1
            raise StationTimeout(answer)
        if answer.result is not None:
            self.counts["operator_answered"] += 1
            return answer.result
        error: CommandError
        if answer.failure is not None:
            error = error_of(answer.failure)
            error.ran_on = gateway  # the gateway ran it, and logged it
        else:
            assert answer.refused is not None  # a reply is a result, a failure or a refusal
            error = refusal_error(answer.refused, answer.detail, station_id, gateway)
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
        """No answer can come from ``node`` (None: from any gateway): its waiting commands end at once."""
        for w in self._waiting.values():
            if (node is None or w.node == node) and not w.future.done():
                w.future.set_result(f"gateway {w.node} {why}; the command may or may not have reached the station "
                                    "(the event log says)")
