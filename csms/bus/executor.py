"""Controllers' commands run on a gateway's live station links: checked, queued per station, answered.

A command is refused at once when its station has no current session here, when the fencing checks say no
(:mod:`csms.bus.fencing`), or when the station's queue is full; otherwise it waits its turn (one command in flight
per station, :mod:`csms.bus.queues`), is checked again (a newer leader may have spoken, the deadline may have
passed, the station may have left) and runs on the link. The answer, or the refusal, goes to the command's MQTT 5
ResponseTopic with its CorrelationData, and carries the link as it is after the command.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from csms.domain.link import Outcome, StationLink

from .codec import LinkInfo
from .commands import (
    OPS, Command, Refusal, Reply, command_id_of, decode_command, encode_reply, refusal_reply, result_reply,
)
from .connection import Publish, Replies
from .fencing import FenceBook, check
from .queues import StationQueues
from .wire import BadMessage

log = logging.getLogger("csms.bus.gateway")


class Identified(Protocol):
    @property
    def id(self) -> str: ...


R = TypeVar("R", bound=Identified)


def admitted(decode: Callable[[bytes, str], R], payload: bytes, sid: str, topic: str, reply_to: str | None,
             corr: str | None, *, what: str, counts: Counter[str],
             refuse_bad: Callable[[str, str, str], None]) -> R | None:
    """The decoded request of one message on a command topic (the balancer's or an operator's), or None, counted
    and logged, when it is unreadable (answered ``bad_request`` through ``refuse_bad(reply_to, id, detail)`` if
    it says where) or has no ResponseTopic or a CorrelationData other than its id (nobody could read an answer)."""
    try:
        req = decode(payload, sid)
    except BadMessage as exc:
        counts[exc.reason] += 1
        log.warning("%s: refused %s on %s: %s", sid, what, topic, exc)
        rid = corr or command_id_of(payload)
        if reply_to and rid:
            refuse_bad(reply_to, rid, str(exc))
        return None
    if not reply_to or corr != req.id:
        counts["no_reply_topic"] += 1
        log.warning("%s: %s %s on %s has no ResponseTopic or a CorrelationData other than its id; not run", sid,
                    what, req.id, topic)
        return None
    return req


def link_info(link: StationLink) -> LinkInfo:
    """What a controller mirrors of a live link (see :class:`csms.ocpp.station.Station`)."""
    return LinkInfo(ready=link.ready.is_set(), ready_reason=str(getattr(link, "ready_reason", "") or ""),
                    boots=int(getattr(link, "boots", 0) or 0), unsupported=frozenset(link.unsupported))


class CommandExecutor:
    """``links`` are the gateway's live links; ``current(station_id)`` says whether this gateway's session of the
    station is still the station's newest; ``after(station_id)`` runs after each command (the bridge publishes
    the link if it changed)."""

    def __init__(self, node: str, links: Mapping[str, StationLink], current: Callable[[str], bool],
                 group_of: Callable[[str], str | None], clock: Callable[[], float], publish: Publish,
                 after: Callable[[str], None], counts: Counter[str], queue_limit: int = 16):
        self.node = node
        self.links = links
        self.current = current
        self.group_of = group_of
        self.clock = clock
        self.publish = publish
        self.after = after
        self.counts = counts
        self.book = FenceBook()
        self.queues = StationQueues(queue_limit)
        #: Answers go out through here (the operator's commands answer through it too).
        self.replies = Replies(publish, counts)
        self.send_reply = self.replies.send

    async def stop(self) -> None:
        await self.queues.stop()
        await self.replies.stop()

    def handle(self, sid: str, topic: str, payload: bytes, reply_to: str | None, corr: str | None) -> None:
        """One message on ``<prefix>/cmd/<this node>/<sid>``."""
        cmd = admitted(decode_command, payload, sid, topic, reply_to, corr, what="a command", counts=self.counts,
                       refuse_bad=lambda to, cid, detail: self._reply(
                           to, cid, refusal_reply(cid, Refusal.BAD_REQUEST, detail)))
        if cmd is None or reply_to is None:
            return
        refusal = self._refusal(cmd)
        if refusal is not None:
            self._refuse(reply_to, cmd, *refusal)
        elif not self.queues.submit(sid, lambda: self._execute(cmd, reply_to)):
            self._refuse(reply_to, cmd, Refusal.BUSY, f"{self.queues.limit} commands already wait for {sid}")

    def _refusal(self, cmd: Command) -> tuple[Refusal, str] | None:
        if cmd.station_id not in self.links or not self.current(cmd.station_id):
            return Refusal.NOT_HERE, f"{cmd.station_id} has no (current) session on gateway {self.node}"
        return check(self.book, group=cmd.group, token=cmd.token, deadline=cmd.deadline,
                     station_group=self.group_of(cmd.station_id), now=self.clock())

    def _refuse(self, reply_to: str, cmd: Command, refused: Refusal, detail: str) -> None:
        self.counts[f"refused_{refused.value}"] += 1
        level = logging.WARNING if refused in (Refusal.FENCED, Refusal.WRONG_GROUP) else logging.INFO
        log.log(level, "%s: %s refused (%s): %s", cmd.station_id, cmd.op, refused.value, detail)
        self._reply(reply_to, cmd.id, refusal_reply(cmd.id, refused, detail))

    async def _execute(self, cmd: Command, reply_to: str) -> None:
        """Runs one command on the station's link, unless it became stale while it waited its turn."""
        sid = cmd.station_id
        link = self.links.get(sid)
        if link is None or not self.current(sid):
            return self._refuse(reply_to, cmd, Refusal.NOT_HERE, f"{sid} left before the command's turn")
        if not self.book.current(cmd.group, cmd.token):
            return self._refuse(reply_to, cmd, Refusal.FENCED, f"a newer leader of group {cmd.group!r} spoke "
                                "while the command waited")
        if self.clock() > cmd.deadline:
            return self._refuse(reply_to, cmd, Refusal.EXPIRED, "its deadline passed while it waited")
        try:
            value = await getattr(link, cmd.op)(**cmd.kwargs)
            reply = result_reply(cmd.id, cmd.op, value, link_info(link))
        except Exception:
            log.exception("%s: %s failed on the link", sid, cmd.op)
            reply = result_reply(cmd.id, cmd.op, Outcome.ERROR, link_info(link)) if OPS[cmd.op].returns == "outcome" \
                else refusal_reply(cmd.id, Refusal.BAD_REQUEST, "the link failed; see the gateway's log")
        self.counts["commands_run"] += 1
        self._reply(reply_to, cmd.id, reply)
        self.after(sid)

    def _reply(self, reply_to: str, cid: str, reply: Reply) -> None:
        self.send_reply(reply_to, cid, encode_reply(reply))
