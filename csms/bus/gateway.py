"""The gateway's side of the bus: what its stations say goes out as state, what controllers ask comes in as calls.

:class:`GatewayBridge` listens to the gateway's SiteState and publishes, for every event, the station's full
state with that event (retained, QoS 1, in order per station: :mod:`csms.bus.codec`), plus the station's link
whenever it changes (ready set, a reboot counted, a command found unsupported). While the broker is away it keeps
no backlog of events, only which stations changed: on reconnect each of them (and every station it holds, in
case the broker lost its retained messages) is published once, as it is then. The snapshot is the truth, so a
controller loses nothing it needs.

Commands for ``<prefix>/cmd/<node>/<station>`` run on that station's live link (given by :meth:`attach`, as the
OCPP server's ``on_session`` does for the delivery), one at a time per station, after the fencing checks
(:mod:`csms.bus.fencing`); the answer goes to the command's MQTT 5 ResponseTopic with its CorrelationData. The
operator's commands a controller forwards (``<prefix>/op/<node>/<station>``) run through this gateway's own
operator commands (:mod:`csms.bus.operator_executor`), answered the same way; its operator's commands for a
station another gateway holds go to the controllers to relay (:attr:`GatewayBridge.relay`).

A station that reconnects to another gateway usually does so before this one notices its old socket is dead;
this one's late "disconnected" would then overwrite the new gateway's retained state. So the bridge listens (MQTT
5 No Local: only the others' messages) to the topic of each station it holds, and once another gateway reports
a later connection of it, publishes nothing more about it and tells ``on_superseded`` (the server may close the
stale session).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from typing import Any

import aiomqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from csms.config.cluster import ClusterConfig
from csms.domain.link import StationLink
from csms.domain.state import Event, SiteState, StationConnected, StationDisconnected
from csms.operations.port import StationCommander
from csms.runtime.aio import cancel_and_wait
from meter_gateway.backoff import Backoff
from meter_gateway.config import MqttConfig

from .codec import LinkInfo, NodeRecord, StationMessage, decode_station, encode_node, encode_station
from .connection import BusConnection, payload_of, response_of
from .executor import CommandExecutor, link_info
from .operator_executor import OperatorExecutor
from .operator_messages import decode_reply as decode_operator_reply
from .operator_messages import MARGIN
from .operator_remote import RemoteCommander, relay_target
from .topics import Topics
from .wire import BadMessage

log = logging.getLogger("csms.bus.gateway")

#: Station messages queued in order while connected before the bridge falls back to "latest state only".
BACKLOG_LIMIT = 10_000
#: Publishes (and subscription changes) in flight at once.
PUBLISH_WINDOW = 64


class GatewayBridge:
    """``async with GatewayBridge(...) as bridge:``; the OCPP server's ``on_session`` calls :meth:`attach`.

    ``group_of(station_id)`` is the station's group id in the site config in force (None: in no group)."""

    def __init__(self, mqtt: MqttConfig, cluster: ClusterConfig, state: SiteState,
                 group_of: Callable[[str], str | None], *, clock: Callable[[], float] = time.time,
                 queue_limit: int = 16, backlog_limit: int = BACKLOG_LIMIT, backoff: Backoff | None = None,
                 on_superseded: Callable[[str], None] = lambda station_id: None, refresh_interval: float = 120.0,
                 operator: StationCommander | None = None, call_timeout: float = 15.0, margin: float = MARGIN):
        self.node = cluster.node
        self.topics = Topics(cluster.prefix)
        #: This process's run: a gateway restarted under the same node name is another run.
        self.run = uuid.uuid4().hex[:12]
        self.state = state
        self.group_of = group_of
        self.clock = clock
        #: The live link of every station this gateway holds.
        self.links: dict[str, StationLink] = {}
        #: Messages by what became of them: published, coalesced; commands run; refusals and bad input by reason.
        self.counts: Counter[str] = Counter()
        self._backlog_limit = backlog_limit
        self._seq: dict[str, int] = {}
        self._sent_link: dict[str, LinkInfo] = {}
        self._queue: deque[tuple[str, bytes]] = deque()
        #: Stations whose state is to be published as it is when their turn comes (insertion-ordered set).
        self._dirty: dict[str, None] = {}
        self._node_dirty = False
        self._wake = asyncio.Event()
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.conn = BusConnection(
            mqtt, self.node, on_connect=self._connected, on_message=self._message, on_down=self._down,
            workers=lambda client: [self._send(client), self._refresh_all()], backoff=backoff,
            will=aiomqtt.Will(self.topics.node(self.node), encode_node(self._record("offline")), qos=1, retain=True))
        self._unsubscribe: Callable[[], None] | None = None
        #: Seconds in which every held station is published once more, spread evenly (0: never): a message the
        #: broker dropped (a controller's queue full) is healed within it, and last_seen travels.
        self.refresh_interval = refresh_interval
        self.on_superseded = on_superseded
        self.commands = CommandExecutor(
            self.node, self.links, lambda sid: sid not in self.superseded, group_of, clock,
            lambda topic, payload, props: self.conn.publish(topic, payload, qos=1, properties=props),
            self.link_changed, self.counts, queue_limit)
        #: The highest fencing token seen per group.
        self.book = self.commands.book
        #: The operator's commands controllers forward, run by ``operator`` (this gateway's own operator commands).
        self.operator = OperatorExecutor(self.node, operator, self.links, lambda sid: sid not in self.superseded,
                                         clock, self.commands.send_reply, self.counts)
        #: This gateway's operator's commands for stations it does not hold: a controller relays each to the
        #: gateway holding the station (the operator commands' ``forward``).
        self.relay = RemoteCommander(self.node, self.topics, self.conn, relay_target(self.topics, self.node),
                                     call_timeout=call_timeout, margin=margin, clock=clock, counts=self.counts,
                                     hops=2)
        #: Stations held whose topic this bridge listens to, and those whose subscription is to be changed.
        self._watched: set[str] = set()
        self._resubscribe: set[str] = set()
        #: Stations held here that another gateway reports connected later: by that gateway's node.
        self.superseded: dict[str, str] = {}

    async def __aenter__(self) -> GatewayBridge:
        self._unsubscribe = self.state.subscribe(self._on_event)
        self.conn.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Publishes what is pending and the node's offline record (at most ``flush_timeout`` s), disconnects,
        and cancels and awaits every task it owns."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.conn.stop(self._goodbye, flush_timeout)
        await self.operator.stop()
        await self.commands.stop()
        await cancel_and_wait([*self._watchers.values(), *self._tasks])
        self._watchers.clear()

    # -- the station's side: sessions and events ------------------------------------------------------------

    def attach(self, link: StationLink) -> None:
        """A station's session started on this gateway: its commands run on ``link`` from now on."""
        sid = link.id
        self.links[sid] = link
        old = self._watchers.pop(sid, None)
        if old is not None:
            old.cancel()
        if not link.ready.is_set():
            self._watchers[sid] = self._spawn(self._watch_ready(sid, link), f"bus ready {sid}")
        self._node_dirty = True
        self._watch(sid, True)
        self.link_changed(sid)

    def _watch(self, sid: str, on: bool) -> None:
        if on:
            self._watched.add(sid)
        else:
            self._watched.discard(sid)
        self._resubscribe.add(sid)
        self._wake.set()

    def link_changed(self, station_id: str) -> None:
        """Publishes the station's state if its link differs from the one last published (ready, boots,
        unsupported); the bridge calls it itself after every command and when a link becomes ready."""
        link = self.links.get(station_id)
        if link is not None and link_info(link) != self._sent_link.get(station_id):
            self._publish_state(station_id, None)

    def refresh(self, station_id: str) -> None:
        """Publishes a held station's state now, with no event: what changes without one (last_seen from
        heartbeats, maintenance status) otherwise travels with the station's next event."""
        if station_id in self.links and station_id not in self.superseded:
            self._publish_state(station_id, None)

    async def _refresh_all(self) -> None:
        if self.refresh_interval <= 0:
            return
        while True:
            held = list(self.links)
            if not held:
                await asyncio.sleep(self.refresh_interval)
            for sid in held:
                await asyncio.sleep(self.refresh_interval / len(held))
                self.refresh(sid)

    async def _watch_ready(self, sid: str, link: StationLink) -> None:
        await link.ready.wait()
        if self._watchers.get(sid) is asyncio.current_task():
            del self._watchers[sid]
        self.link_changed(sid)

    def _on_event(self, event: Event) -> None:
        sid = event.station_id
        if isinstance(event, StationConnected):
            # A new connection: its link (attached next) starts unready, with no boot and nothing unsupported.
            self._sent_link[sid] = LinkInfo()
            self.superseded.pop(sid, None)
        if sid in self.superseded:
            self.counts["superseded"] += 1  # another gateway holds it now: its state is not ours to say
        else:
            self._publish_state(sid, event)
        if isinstance(event, StationDisconnected):
            self.superseded.pop(sid, None)
            self._watch(sid, False)
            self.links.pop(sid, None)
            watcher = self._watchers.pop(sid, None)
            if watcher is not None:
                watcher.cancel()
            self._node_dirty = True
            self._wake.set()

    def _publish_state(self, sid: str, event: Event | None) -> None:
        """Queues the station's state (with ``event``) in order; while the broker is away, or the backlog is
        full, or the station already waits to be published as it is, only marks it to be published as it is."""
        if self.conn.client is None or sid in self._dirty or len(self._queue) >= self._backlog_limit:
            if event is not None:
                self.counts["coalesced"] += 1
            self._dirty[sid] = None
        else:
            self._queue.append((sid, self._encode(sid, event)))
        self._wake.set()

    def _encode(self, sid: str, event: Event | None) -> bytes:
        link = self.links.get(sid)
        info = self._sent_link.get(sid, LinkInfo()) if isinstance(event, StationConnected) or link is None \
            else link_info(link)
        self._sent_link[sid] = info
        seq = self._seq[sid] = self._seq.get(sid, 0) + 1
        return encode_station(StationMessage(self.node, self.run, seq, self.state.station(sid), info, event))

    def _record(self, status: str) -> NodeRecord:
        return NodeRecord(self.node, "gateway", status, len(self.links), (), self.clock(), self.run)

    # -- the broker's side ----------------------------------------------------------------------------------

    async def _connected(self, client: aiomqtt.Client) -> None:
        await client.subscribe([(self.topics.commands(self.node), 1), (self.topics.operators(self.node), 1),
                                (self.topics.operator_replies(self.node), 1)])
        await client.publish(self.topics.node(self.node), encode_node(self._record("online")), qos=1, retain=True)
        # Whatever was queued may not have arrived, and the broker may have lost its retained messages: every
        # station held, and every one that changed, goes out as it is now.
        for sid, _ in self._queue:
            self._dirty[sid] = None
        self._queue.clear()
        for sid in self.links:
            if sid not in self.superseded:
                self._dirty[sid] = None
        self._resubscribe = set(self._watched)
        self._wake.set()

    def _down(self, reason: str) -> None:
        self.relay.fail("cannot answer: this gateway's connection to the broker ended")
        for sid, _ in self._queue:
            self._dirty[sid] = None
        self._queue.clear()

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publishes queued messages in order, then stations to publish as they are, then the node record; up to
        ``PUBLISH_WINDOW`` at a time (the client writes them in the order they were started, and the broker
        keeps one publisher's order per topic), so a round trip per message does not bound the rate."""
        inflight: dict[asyncio.Task[None], str | None] = {}
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._resubscribe or self._queue or self._dirty or self._node_dirty:
                    sid: str | None = None
                    if self._resubscribe:
                        watched = self._resubscribe.pop()
                        topic = self.topics.station(watched)
                        work = client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True)) \
                            if watched in self._watched else client.unsubscribe(topic)
                    elif self._queue:
                        sid, payload = self._queue.popleft()
                        work = client.publish(self.topics.station(sid), payload, qos=1, retain=True)
                    elif self._dirty:
                        sid = next(iter(self._dirty))
                        del self._dirty[sid]
                        work = client.publish(self.topics.station(sid), self._encode(sid, None), qos=1, retain=True)
                    else:
                        self._node_dirty = False
                        work = client.publish(self.topics.node(self.node), encode_node(self._record("online")),
                                              qos=1, retain=True)
                    inflight[asyncio.create_task(work)] = sid
                    if len(inflight) >= PUBLISH_WINDOW:
                        await self._settle(inflight, asyncio.FIRST_COMPLETED)
                await self._settle(inflight, asyncio.ALL_COMPLETED)
        finally:
            for task, sid in inflight.items():
                task.cancel()
                if sid is not None:
                    self._dirty[sid] = None  # unconfirmed: published again, as it then is, after reconnecting

    async def _settle(self, inflight: dict[asyncio.Task[None], str | None], until: str) -> None:
        """Waits for in-flight publishes; a failed one ends the connection (and is published again after it)."""
        if not inflight:
            return
        done, _ = await asyncio.wait(inflight, return_when=until)
        failed: BaseException | None = None
        for task in done:
            sid = inflight.pop(task)
            exc = task.exception()
            if exc is not None:
                failed = failed or exc
                if sid is not None:
                    self._dirty[sid] = None
            elif sid is not None:
                self.counts["published"] += 1
        if failed is not None:
            raise failed

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """On a clean stop: what is pending, then the offline record (the Last Will is not sent on a clean
        disconnect). Stations still held are left to the controllers' reading of the offline record."""
        self._wake.set()
        while self._queue or self._dirty:
            await asyncio.sleep(0.01)
        await client.publish(self.topics.node(self.node), encode_node(self._record("offline")), qos=1, retain=True)

    # -- incoming: commands, and other gateways' word on the stations held here ------------------------------

    def _message(self, msg: aiomqtt.Message) -> None:
        topic = msg.topic.value
        station = self.topics.station_of(topic)
        if station is not None:
            self._claim(station, payload_of(msg))
            return
        if topic == self.topics.operator_replies(self.node):
            try:
                self.relay.reply(decode_operator_reply(payload_of(msg)))
            except BadMessage as exc:
                self.counts[exc.reason] += 1
                log.warning("refused a message on %s: %s", topic, exc)
            return
        reply_to, corr = response_of(msg)
        for kind, executor in (("cmd", self.commands), ("op", self.operator)):
            parsed = self.topics.command_of(topic, kind)
            if parsed is not None and parsed[0] == self.node:
                executor.handle(parsed[1], topic, payload_of(msg), reply_to, corr)
                return
        self.counts["bad_topic"] += 1

    def _claim(self, sid: str, payload: bytes) -> None:
        """Another process's message on the topic of a station held here: superseded if it reports a later
        connection of the station to another gateway (or another run of this one)."""
        mine = self.state.stations.get(sid)
        if not payload or sid not in self.links or mine is None or mine.connected_at is None:
            return
        try:
            msg = decode_station(payload, sid)
        except BadMessage as exc:
            self.counts[exc.reason] += 1
            return
        theirs = msg.state.connected_at
        if (msg.node, msg.run) == (self.node, self.run) or not msg.state.connected or theirs is None \
                or theirs <= mine.connected_at or sid in self.superseded:
            return
        self.superseded[sid] = msg.node
        log.warning("%s: reconnected to gateway %s (%.3f s after its session here began); this session is stale "
                    "and nothing more of it is published", sid, msg.node, theirs - mine.connected_at)
        self.on_superseded(sid)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
