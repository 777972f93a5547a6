"""The controller's side of the bus: every station's state mirrored, every station driven through a RemoteLink.

One :class:`ControllerBus` per controller process: one MQTT client, one subscription to every station's state
(``<prefix>/station/+``, retained, so a controller that starts late, or a new leader, has them all at once), one to
the node records (a gateway's Last Will marks its stations disconnected) and one to its own replies. Station
messages feed a :class:`~csms.bus.mirror.StationMirror` over the SiteState the balancer and the delivery listen
to; when a station's session starts (a new connection, another gateway, back after its gateway was offline) a new
:class:`~csms.bus.remote.RemoteLink` is handed to ``on_session``, as the OCPP server hands the delivery a new
link. A command waits for its reply at most ``call_timeout`` + ``margin`` s; a call never hangs: losing the
broker, or the gateway's node going offline, answers it OFFLINE at once.

A gateway's offline record is acted on after ``offline_grace`` s, unless it came back meanwhile or this
controller lost the broker too: mosquitto publishes every client's Will when it shuts down, and a broker restart
must not look like every gateway dying (each station's session would start over). After a reconnect, a gateway
that held stations and does not say it is online within ``confirm_window`` s (its own reconnect backoff) counts
as gone: a broker that lost its retained messages has no Will of a gateway that died while it was down.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from csms.config.cluster import ClusterConfig
from csms.domain.link import Outcome, StationLink
from csms.domain.state import BootInfo, SiteState, StationBooted
from csms.operations.port import StationCommander
from csms.runtime.aio import cancel_and_wait
from meter_gateway.backoff import Backoff
from meter_gateway.config import MqttConfig

from .codec import NodeRecord, StationMessage, decode_node, decode_station, encode_node
from .commands import Command, Refusal, Reply, decode_reply, encode_command
from .connection import BusConnection, Replies, payload_of, publish_properties, response_of
from .mirror import StationMirror
from .operator_messages import decode_reply as decode_operator_reply
from .operator_executor import OperatorExecutor
from .operator_messages import MARGIN
from .operator_remote import RemoteCommander, holder_target
from .remote import RemoteLink
from .topics import Topics
from .wire import BadMessage

log = logging.getLogger("csms.bus.controller")


@dataclass
class _Pending:
    future: asyncio.Future[Reply | Outcome]
    node: str
    station_id: str


class ControllerBus:
    """``async with ControllerBus(...) as bus:``.

    ``token_of(group)`` is this controller's fencing token for a group it leads, None when it does not lead it
    (its commands are then not sent); ``group_of(station_id)`` the station's group in the site config;
    ``on_fenced(group)`` hears that a gateway has seen a newer leader of the group (step down);
    ``groups()`` the groups it leads, for its node record (:meth:`announce` publishes it again)."""

    def __init__(self, mqtt: MqttConfig, cluster: ClusterConfig, state: SiteState, *,
                 on_session: Callable[[StationLink], None], token_of: Callable[[str | None], int | None],
                 group_of: Callable[[str], str | None], on_fenced: Callable[[str | None], None] = lambda group: None,
                 groups: Callable[[], Iterable[str]] = tuple, call_timeout: float = 15.0, margin: float = MARGIN,
                 offline_grace: float = 5.0, confirm_window: float = 40.0, clock: Callable[[], float] = time.time,
                 backoff: Backoff | None = None, operator: StationCommander | None = None):
        self.node = cluster.node
        self.topics = Topics(cluster.prefix)
        self.run = uuid.uuid4().hex[:12]
        self.state = state
        self.mirror = StationMirror(state)
        self.on_session = on_session
        self.token_of = token_of
        self.group_of = group_of
        self.on_fenced = on_fenced
        self.groups = groups
        self.call_timeout = call_timeout
        self.margin = margin
        self.offline_grace = offline_grace
        self.confirm_window = confirm_window
        self.clock = clock
        #: The current session's link of every station connected to some gateway.
        self.links: dict[str, RemoteLink] = {}
        #: Bad messages by reason; commands by result (sent, answered, refused_*, timeout, offline, late_reply).
        self.counts: Counter[str] = Counter()
        self._pending: dict[str, _Pending] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Per node: an offline record waiting out its grace, or a gateway's wait for its hello after a reconnect.
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.conn = BusConnection(
            mqtt, self.node, on_connect=self._connected, on_message=self._message, on_down=self._down,
            backoff=backoff,
            will=aiomqtt.Will(self.topics.node(self.node), encode_node(self._record("offline")), qos=1, retain=True))
        #: The operator's station commands, run by the gateway holding each station.
        self.operator = RemoteCommander(self.node, self.topics, self.conn,
                                        holder_target(self.topics, self.mirror.holder), call_timeout=call_timeout,
                                        margin=margin, clock=clock, counts=self.counts)
        #: The operator's commands a gateway relays for stations it does not hold, run by ``operator`` (this
        #: controller's own operator commands, which forward them to the holding gateway and log what the bus
        #: ended). Any station: where it is, is the commands' to find.
        self.replies = Replies(lambda topic, payload, props: self.conn.publish(topic, payload, qos=1, properties=props),
                               self.counts)
        self.relay = OperatorExecutor(self.node, operator, None, lambda sid: True, clock, self.replies.send,
                                      self.counts)

    async def __aenter__(self) -> ControllerBus:
        self.conn.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self, timeout: float = 2.0) -> None:
        await self.conn.stop(self._goodbye, timeout)
        self._cancel_timers()
        self._fail_pending(Outcome.OFFLINE)
        await self.relay.stop()
        await self.replies.stop()
        await cancel_and_wait(list(self._tasks))

    def announce(self) -> None:
        """Publishes the node record again (e.g. after the groups it leads changed)."""
        self._spawn(self._publish_record("online"))

    def _record(self, status: str) -> NodeRecord:
        return NodeRecord(self.node, "controller", status, len(self.links), tuple(sorted(self.groups())),
                          self.clock(), self.run)

    async def _publish_record(self, status: str, client: aiomqtt.Client | None = None) -> None:
        payload = encode_node(self._record(status))
        try:
            if client is not None:
                await client.publish(self.topics.node(self.node), payload, qos=1, retain=True)
            else:
                await self.conn.publish(self.topics.node(self.node), payload, qos=1, retain=True)
        except aiomqtt.MqttError as exc:
            log.info("%s: node record not published: %s", self.node, exc)

    async def _connected(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(self.topics.replies(self.node), 1), (self.topics.operator_replies(self.node), 1),
                                (self.topics.nodes, 1), (self.topics.stations, 1), (self.topics.relays, 1)])
        await client.publish(self.topics.node(self.node), encode_node(self._record("online")), qos=1, retain=True)
        for node, run in {(o.node, o.run) for sid, o in self.mirror.owners.items() if sid in self.links}:
            self._later(node, self.confirm_window, self._unconfirmed, node, run)

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        await self._publish_record("offline", client)

    def _down(self, reason: str) -> None:
        """The broker is away: no reply can come. The mirror keeps what it knows; what changed meanwhile comes
        with the retained messages after reconnecting."""
        self._cancel_timers()  # what the broker said of the gateways as it went down is not news about them
        self._fail_pending(Outcome.OFFLINE)

    def _later(self, node: str, delay: float, callback: Callable[..., None], *args: Any) -> None:
        if node not in self._timers:
            self._timers[node] = asyncio.get_running_loop().call_later(delay, callback, *args)

    def _cancel_timers(self, node: str | None = None) -> None:
        for key in [node] if node is not None else list(self._timers):
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def _unconfirmed(self, node: str, run: str) -> None:
        del self._timers[node]
        log.warning("gateway %s did not say it is online within %.0f s of our reconnect: counted as gone", node,
                    self.confirm_window)
        self._apply_record(NodeRecord(node, "gateway", "offline", at=self.clock(), run=run))

    def _fail_pending(self, outcome: Outcome, node: str | None = None) -> None:
        self.operator.fail("went offline before answering" if node is not None else
                           "cannot answer: this controller's connection to the broker ended", node)
        for p in self._pending.values():
            if (node is None or p.node == node) and not p.future.done():
                p.future.set_result(outcome)

    # -- incoming -------------------------------------------------------------------------------------------

    def _message(self, msg: aiomqtt.Message) -> None:
        topic = msg.topic.value
        payload = payload_of(msg)
        sid = self.topics.station_of(topic)
        try:
            if sid is not None:
                if payload:  # an empty retained message clears a station's topic
                    self._station(decode_station(payload, sid))
            elif topic == self.topics.replies(self.node):
                self._reply(decode_reply(payload))
            elif topic == self.topics.operator_replies(self.node):
                self.operator.reply(decode_operator_reply(payload))
            elif (relayed := self.topics.relay_of(topic)) is not None:
                self.relay.handle(relayed, topic, payload, *response_of(msg))
            elif (node := self.topics.node_of(topic)) is not None:
                if payload:
                    self._node(decode_node(payload, node))
            else:
                self.counts["bad_topic"] += 1
        except BadMessage as exc:
            self.counts[exc.reason] += 1
            log.warning("refused a message on %s%s: %s", topic, f" (station {sid})" if sid else "", exc)

    def _station(self, msg: StationMessage) -> None:
        sid = msg.state.station_id
        verdict = self.mirror.judge(msg)
        if not verdict.accepted:
            return
        link = self.links.get(sid)
        boots = None
        if link is not None and not verdict.new_session and link.node == msg.node:
            boots = link.boots
            link.update(msg.link)  # boots first: the delivery compares them when StationBooted reaches it
        emitted = self.mirror.apply(msg, verdict)
        st = self.state.station(sid)
        if verdict.new_session:
            if link is not None:
                link.close()
            link = self.links[sid] = RemoteLink(sid, msg.node, msg.state.version, msg.link, self)
            self.on_session(link)
        elif not st.connected and link is not None:
            link.close()
            del self.links[sid]
        elif boots is not None and msg.link.boots > boots and StationBooted not in emitted:
            # A reboot whose StationBooted message was coalesced away (the broker was down): tell it anyway,
            # leaving the mirror's boot info as the gateway's.
            boot = st.boot
            self.state.booted(sid, boot or BootInfo("", ""), self.clock())
            st.boot = boot

    def _node(self, rec: NodeRecord) -> None:
        if rec.status == "online":
            self._cancel_timers(rec.node)
            self._apply_record(rec)
        else:
            self._cancel_timers(rec.node)  # a hello it was waiting for is moot: the node says offline
            self._later(rec.node, self.offline_grace, self._offline, rec, self.clock())

    def _offline(self, rec: NodeRecord, received_at: float) -> None:
        del self._timers[rec.node]
        self._apply_record(rec, received_at)

    def _apply_record(self, rec: NodeRecord, at: float | None = None) -> None:
        gone = self.mirror.node_record(rec, at)
        for sid in gone:
            link = self.links.pop(sid, None)
            if link is not None:
                link.close()
        if rec.status != "online" or gone:
            self._fail_pending(Outcome.OFFLINE, rec.node)

    def _reply(self, reply: Reply) -> None:
        pending = self._pending.get(reply.id)
        if pending is None or pending.future.done():
            self.counts["late_reply"] += 1
            return
        pending.future.set_result(reply)

    # -- outgoing -------------------------------------------------------------------------------------------

    async def send(self, link: RemoteLink, op: str, kwargs: dict[str, Any]) -> Reply | Outcome:
        """One command to ``link``'s gateway: its Reply, or the Outcome that stands for a failure."""
        if self.conn.client is None:
            self.counts["offline"] += 1
            return Outcome.OFFLINE
        group = self.group_of(link.id)
        token = self.token_of(group)
        if token is None:
            self.counts["not_leader"] += 1
            log.warning("%s: %s not sent: this controller does not lead group %r", link.id, op, group)
            return Outcome.ERROR
        cid = uuid.uuid4().hex
        cmd = Command(cid, link.id, op, kwargs, group, token, self.clock() + self.call_timeout)
        future: asyncio.Future[Reply | Outcome] = asyncio.get_running_loop().create_future()
        self._pending[cid] = _Pending(future, link.node, link.id)
        props = publish_properties(response_topic=self.topics.replies(self.node), correlation=cid,
                                   expiry=self.call_timeout)
        publishing = self._spawn(self.conn.publish(self.topics.command(link.node, link.id), encode_command(cmd),
                                                   qos=1, properties=props))
        publishing.add_done_callback(lambda t: t.cancelled() or t.exception() is None or future.done()
                                     or future.set_result(Outcome.OFFLINE))
        self.counts["sent"] += 1
        try:
            async with asyncio.timeout(self.call_timeout + self.margin):
                answer = await future
        except TimeoutError:
            answer = Outcome.TIMEOUT
        finally:
            del self._pending[cid]
        self._count(answer)
        if isinstance(answer, Reply) and answer.refused is Refusal.FENCED:
            log.warning("%s: %s fenced for group %r (token %d): a newer leader has spoken", link.id, op, group, token)
            self.on_fenced(group)
        return answer

    def _count(self, answer: Reply | Outcome) -> None:
        if isinstance(answer, Outcome):
            self.counts[answer.name.lower()] += 1
        elif answer.refused is not None:
            self.counts[f"refused_{answer.refused.value}"] += 1
        else:
            self.counts["answered"] += 1

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
