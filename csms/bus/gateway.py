"""The gateway's side of the bus: what its stations say goes out as state, what controllers ask comes in as calls.

:class:`GatewayBridge` listens to the gateway's SiteState and publishes, for every event, the station's full
state with that event (retained, QoS 1, in order per station: :mod:`csms.bus.codec`), plus the station's link
whenever it changes (ready set, a reboot counted, a command found unsupported). While the broker is away it keeps
no backlog of events, only which stations changed: on reconnect each of them (and every station it holds, in
case the broker lost its retained messages) is published once, as it is then. The snapshot is the truth, so a
controller loses nothing it needs.

Commands for ``<prefix>/cmd/<node>/<station>`` run on that station's live link (given by :meth:`attach`, as the
OCPP server's ``on_session`` does for the delivery), one at a time per station, after the fencing checks
(:mod:`csms.bus.fencing`); the answer goes to the command's MQTT 5 ResponseTopic with its CorrelationData.

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
from csms.domain.link import Outcome, StationLink
from csms.domain.state import Event, SiteState, StationConnected, StationDisconnected
from csms.runtime.aio import cancel_and_wait
from meter_gateway.backoff import Backoff
from meter_gateway.config import MqttConfig

from .codec import LinkInfo, NodeRecord, StationMessage, decode_station, encode_node, encode_station
from .commands import (
    OPS, Command, Refusal, Reply, command_id_of, decode_command, encode_reply, refusal_reply, result_reply,
)
from .connection import BusConnection, payload_of, publish_properties, response_of
from .fencing import FenceBook, check
from .queues import StationQueues
from .topics import Topics
from .wire import BadMessage

log = logging.getLogger("csms.bus.gateway")

#: Station messages queued in order while connected before the bridge falls back to "latest state only".
BACKLOG_LIMIT = 10_000


def link_info(link: StationLink) -> LinkInfo:
    """What a controller mirrors of a live link (see :class:`csms.ocpp.station.Station`)."""
    return LinkInfo(ready=link.ready.is_set(), ready_reason=str(getattr(link, "ready_reason", "") or ""),
                    boots=int(getattr(link, "boots", 0) or 0), unsupported=frozenset(link.unsupported))


class GatewayBridge:
    """``async with GatewayBridge(...) as bridge:``; the OCPP server's ``on_session`` calls :meth:`attach`.

    ``group_of(station_id)`` is the station's group id in the site config in force (None: in no group)."""

    def __init__(self, mqtt: MqttConfig, cluster: ClusterConfig, state: SiteState,
                 group_of: Callable[[str], str | None], *, clock: Callable[[], float] = time.time,
                 queue_limit: int = 16, backlog_limit: int = BACKLOG_LIMIT, backoff: Backoff | None = None,
                 on_superseded: Callable[[str], None] = lambda station_id: None):
        self.node = cluster.node
        self.topics = Topics(cluster.prefix)
        #: This process's run: a gateway restarted under the same node name is another run.
        self.run = uuid.uuid4().hex[:12]
        self.state = state
        self.group_of = group_of
        self.clock = clock
        self.book = FenceBook()
        #: The live link of every station this gateway holds.
        self.links: dict[str, StationLink] = {}
        #: Messages by what became of them: published, coalesced; commands run; refusals and bad input by reason.
        self.counts: Counter[str] = Counter()
        self._backlog_limit = backlog_limit
        self._commands = StationQueues(queue_limit)
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
            workers=lambda client: [self._send(client)], backoff=backoff,
            will=aiomqtt.Will(self.topics.node(self.node), encode_node(self._record("offline")), qos=1, retain=True))
        self._unsubscribe: Callable[[], None] | None = None
        self.on_superseded = on_superseded
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
        await self._commands.stop()
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
        await client.subscribe(self.topics.commands(self.node), qos=1)
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
        for sid, _ in self._queue:
            self._dirty[sid] = None
        self._queue.clear()

    async def _send(self, client: aiomqtt.Client) -> None:
        """Publishes queued messages in order, then stations to publish as they are, then the node record."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._resubscribe:
                sid = self._resubscribe.pop()
                topic = self.topics.station(sid)
                if sid in self._watched:
                    await client.subscribe(topic, options=SubscribeOptions(qos=1, noLocal=True))
                else:
                    await client.unsubscribe(topic)
            while self._queue or self._dirty or self._node_dirty:
                if self._queue:
                    sid, payload = self._queue.popleft()
                elif self._dirty:
                    sid = next(iter(self._dirty))
                    del self._dirty[sid]
                    payload = self._encode(sid, None)
                else:
                    self._node_dirty = False
                    await client.publish(self.topics.node(self.node), encode_node(self._record("online")), qos=1,
                                         retain=True)
                    continue
                try:
                    await client.publish(self.topics.station(sid), payload, qos=1, retain=True)
                except aiomqtt.MqttError:
                    self._dirty[sid] = None  # unconfirmed: published again, as it then is, after reconnecting
                    raise
                self.counts["published"] += 1

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """On a clean stop: what is pending, then the offline record (the Last Will is not sent on a clean
        disconnect). Stations still held are left to the controllers' reading of the offline record."""
        self._wake.set()
        while self._queue or self._dirty:
            await asyncio.sleep(0.01)
        await client.publish(self.topics.node(self.node), encode_node(self._record("offline")), qos=1, retain=True)

    # -- commands -------------------------------------------------------------------------------------------

    def _message(self, msg: aiomqtt.Message) -> None:
        topic = msg.topic.value
        station = self.topics.station_of(topic)
        if station is not None:
            self._claim(station, payload_of(msg))
            return
        parsed = self.topics.command_of(topic)
        if parsed is None or parsed[0] != self.node:
            self.counts["bad_topic"] += 1
            return
        sid = parsed[1]
        payload = payload_of(msg)
        reply_to, corr = response_of(msg)
        try:
            cmd = decode_command(payload, sid)
        except BadMessage as exc:
            self.counts[exc.reason] += 1
            log.warning("%s: refused a command on %s: %s", sid, topic, exc)
            cid = corr or command_id_of(payload)
            if reply_to and cid:
                self._reply(reply_to, cid, refusal_reply(cid, Refusal.BAD_REQUEST, str(exc)))
            return
        if not reply_to or corr != cmd.id:
            self.counts["no_reply_topic"] += 1
            log.warning("%s: command %s on %s has no ResponseTopic or a CorrelationData other than its id; "
                        "not run", sid, cmd.id, topic)
            return
        refusal = self._refusal(cmd)
        if refusal is not None:
            self._refuse(reply_to, cmd, *refusal)
        elif not self._commands.submit(sid, lambda: self._execute(cmd, reply_to)):
            self._refuse(reply_to, cmd, Refusal.BUSY, f"{self._commands.limit} commands already wait for {sid}")

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

    def _refusal(self, cmd: Command) -> tuple[Refusal, str] | None:
        if cmd.station_id not in self.links or cmd.station_id in self.superseded:
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
        if link is None:
            return self._refuse(reply_to, cmd, Refusal.NOT_HERE, f"{sid} disconnected before the command's turn")
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
            failed = Outcome.ERROR if OPS[cmd.op].returns == "outcome" else None
            reply = result_reply(cmd.id, cmd.op, failed, link_info(link)) if failed is not None \
                else refusal_reply(cmd.id, Refusal.BAD_REQUEST, "the link failed; see the gateway's log")
        self.counts["commands_run"] += 1
        self._reply(reply_to, cmd.id, reply)
        self.link_changed(sid)

    def _reply(self, reply_to: str, cid: str, reply: Reply) -> None:
        async def send() -> None:
            try:
                await self.conn.publish(reply_to, encode_reply(reply), qos=1,
                                        properties=publish_properties(correlation=cid))
            except aiomqtt.MqttError as exc:
                self.counts["reply_lost"] += 1  # the controller times out, or sees its own connection drop
                log.info("reply %s to %s lost: %s", cid, reply_to, exc)
        self._spawn(send(), f"bus reply {cid}")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
