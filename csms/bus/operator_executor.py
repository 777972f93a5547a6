"""A gateway runs the operator's commands a controller forwards (:mod:`csms.bus.operator_messages`); a
controller runs, the same way, those a gateway relays for stations it does not hold.

Each runs through the gateway's own operator commands (``commander``, the
:class:`~csms.operations.port.StationCommander` the gateway's HTTP API is given), so it is checked, sent, stored
and logged exactly as if the operator had asked this gateway, ``by`` included. What the bus adds is checked
before: the station must have a current session here (on a gateway), the request's deadline must not have
passed, and at most ``queue_limit`` of them wait per station (a queue of their own: an operator's commands never
take the balancer's places, nor are they held to a group's fencing token, since no group leads them).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Collection

from csms.operations.port import StationCommander
from csms.operations.results import CommandError

from .commands import Refusal
from .executor import admitted
from .operator_messages import (
    OperatorReply, OperatorRequest, decode_request, encode_reply, failure_reply, refusal_reply, result_reply,
)
from .queues import StationQueues

log = logging.getLogger("csms.bus.gateway")

#: Operator's commands that may wait per station: an operator (or a script) rarely has more than one going.
QUEUE_LIMIT = 4

SendReply = Callable[[str, str, bytes], None]


class OperatorExecutor:
    """``links`` are the stations this gateway holds (None on a controller: any station, its commander finds
    where), ``current(station_id)`` whether its session here is still the station's newest;
    ``send_reply(topic, correlation, payload)`` publishes an answer."""

    def __init__(self, node: str, commander: StationCommander | None, links: Collection[str] | None,
                 current: Callable[[str], bool], clock: Callable[[], float], send_reply: SendReply,
                 counts: Counter[str], queue_limit: int = QUEUE_LIMIT):
        self.node = node
        self.commander = commander
        self.links = links
        self.current = current
        self.clock = clock
        self.send_reply = send_reply
        self.counts = counts
        self.queues = StationQueues(queue_limit)

    async def stop(self) -> None:
        await self.queues.stop()

    def handle(self, sid: str, topic: str, payload: bytes, reply_to: str | None, corr: str | None) -> None:
        """One message on ``<prefix>/op/<this node>/<sid>``."""
        req = admitted(decode_request, payload, sid, topic, reply_to, corr, what="an operator's command",
                       counts=self.counts, refuse_bad=lambda to, rid, detail: self._answer(
                           to, rid, refusal_reply(rid, Refusal.BAD_REQUEST, detail)))
        if req is None or reply_to is None:
            return
        refusal = self._refusal(req)
        if refusal is not None:
            self._refuse(reply_to, req, *refusal)
        elif not self.queues.submit(sid, lambda: self._execute(req, reply_to)):
            self._refuse(reply_to, req, Refusal.BUSY, f"{self.queues.limit} operator's commands already wait for "
                                                      f"{sid}")

    def _refusal(self, req: OperatorRequest) -> tuple[Refusal, str] | None:
        """Why ``req`` may not run now (checked on arrival and again when its turn comes), or None."""
        if self.commander is None:
            return Refusal.BAD_REQUEST, f"{self.node} takes no operator's commands"
        if self.links is not None and (req.station_id not in self.links or not self.current(req.station_id)):
            return Refusal.NOT_HERE, f"{req.station_id} has no (current) session on gateway {self.node}"
        if self.clock() > req.deadline:
            return Refusal.EXPIRED, f"its deadline passed {self.clock() - req.deadline:.3f} s ago"
        return None

    def _refuse(self, reply_to: str, req: OperatorRequest, refused: Refusal, detail: str) -> None:
        self.counts[f"operator_refused_{refused.value}"] += 1
        log.info("%s: operator's command %r refused (%s): %s", req.station_id, req.command, refused.value, detail)
        self._answer(reply_to, req.id, refusal_reply(req.id, refused, detail))

    async def _execute(self, req: OperatorRequest, reply_to: str) -> None:
        refusal = self._refusal(req)
        if refusal is not None:
            return self._refuse(reply_to, req, *refusal)
        assert self.commander is not None  # _refusal says so
        try:
            result = await self.commander.execute(req.station_id, req.command, req.body, req.by)
            reply = result_reply(req.id, result)
        except CommandError as exc:
            reply = failure_reply(req.id, exc)
        except Exception:
            log.exception("%s: operator's command %r failed on %s", req.station_id, req.command, self.node)
            reply = failure_reply(req.id, CommandError(f"{self.node} failed running it; see its log"))
        self.counts["operator_run"] += 1
        self._answer(reply_to, req.id, reply)

    def _answer(self, reply_to: str, rid: str, reply: OperatorReply) -> None:
        self.send_reply(reply_to, rid, encode_reply(reply))
