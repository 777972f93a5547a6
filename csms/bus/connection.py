"""One MQTT 5 client kept connected to the ``[mqtt]`` broker, for either side of the bus.

Like :func:`meter_gateway.mqtt.run_subscription` (reconnect with backoff, subscribe again after each connect,
a bad message or a handler bug never ends the loop), plus what the bus needs: MQTT 5 (a command's reply topic
and correlation id travel as properties), a Last Will, and worker coroutines that run only while connected
(a gateway's publisher). When any of them fails the connection is dropped and made again, so no part runs on
a half-dead client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from csms.runtime.aio import cancel_and_wait
from meter_gateway.backoff import Backoff
from meter_gateway.config import MqttConfig
from meter_gateway.mqtt import MQTT_TIMEOUT, describe, tls_context

log = logging.getLogger("csms.bus")


#: Publishes one message with QoS 1 and these properties.
Publish = Callable[[str, bytes, Properties], Awaitable[None]]


class Replies:
    """Answers to requests (a balancer's command, an operator's), each published to the request's ResponseTopic
    with its CorrelationData without the handler waiting for it; the sends are tasks owned here."""

    def __init__(self, publish: Publish, counts: dict[str, int]):
        self.publish = publish
        self.counts = counts
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, reply_to: str, correlation: str, payload: bytes) -> None:
        async def send() -> None:
            try:
                await self.publish(reply_to, payload, publish_properties(correlation=correlation))
            except aiomqtt.MqttError as exc:
                self.counts["reply_lost"] += 1  # the asker times out, or sees its own connection drop
                log.info("reply %s to %s lost: %s", correlation, reply_to, exc)
        task = asyncio.create_task(send(), name=f"bus reply {correlation}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        await cancel_and_wait(list(self._tasks))


class NotConnected(aiomqtt.MqttError):
    """A publish while the broker is away (the caller treats it as any other MQTT failure)."""


def publish_properties(*, response_topic: str | None = None, correlation: str | None = None,
                       expiry: float | None = None) -> Properties:
    """PUBLISH properties: where to answer, which request an answer belongs to, how long the broker may keep it."""
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation.encode()
    if expiry is not None:
        props.MessageExpiryInterval = max(1, math.ceil(expiry))
    return props


def response_of(msg: aiomqtt.Message) -> tuple[str | None, str | None]:
    """A request's (ResponseTopic, CorrelationData) properties, each None when absent."""
    props = msg.properties
    topic = getattr(props, "ResponseTopic", None) if props is not None else None
    corr = getattr(props, "CorrelationData", None) if props is not None else None
    if isinstance(corr, (bytes, bytearray)):
        try:
            corr = bytes(corr).decode()
        except UnicodeDecodeError:
            corr = None
    return topic, corr


def payload_of(msg: aiomqtt.Message) -> bytes:
    p = msg.payload
    if isinstance(p, (bytes, bytearray)):
        return bytes(p)
    return b"" if p is None else str(p).encode()


class BusConnection:
    """Keeps one client connected until :meth:`stop`.

    After each connect ``on_connect(client)`` runs first (subscribe, announce), then the messages are read and
    each ``workers(client)`` coroutine runs beside them; ``on_down(reason)`` hears every loss of the connection.
    """

    def __init__(self, cfg: MqttConfig, node: str, *, on_connect: Callable[[aiomqtt.Client], Awaitable[None]],
                 on_message: Callable[[aiomqtt.Message], None],
                 on_down: Callable[[str], None] = lambda reason: None,
                 workers: Callable[[aiomqtt.Client], list[Coroutine[Any, Any, None]]] = lambda client: [],
                 will: aiomqtt.Will | None = None, backoff: Backoff | None = None):
        self.cfg = cfg
        self.node = node
        self.where = describe(cfg)
        self._on_connect = on_connect
        self._on_message = on_message
        self._on_down = on_down
        self._workers = workers
        self._backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self._mqtt = aiomqtt.Client(
            cfg.host, cfg.port, username=cfg.username, password=cfg.password,
            identifier=f"{cfg.client_id or 'csms'}-bus-{node}", keepalive=cfg.keepalive,
            tls_context=tls_context(cfg), timeout=MQTT_TIMEOUT, will=will, protocol=aiomqtt.ProtocolVersion.V5,
            # Small messages answered at once: with Nagle's algorithm a command and its reply wait ~40 ms each.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self._mqtt.pending_calls_threshold = 10_000  # a gateway's many stations each have a publish in flight
        #: The client while it is connected (subscribed and announced), else None.
        self.client: aiomqtt.Client | None = None
        self.up = asyncio.Event()
        self.connects = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bus {self.node}")

    async def stop(self, goodbye: Callable[[aiomqtt.Client], Awaitable[None]] | None = None,
                   timeout: float = 2.0) -> None:
        """Says ``goodbye`` (if connected; at most ``timeout`` s), then disconnects cleanly and ends the loop."""
        client = self.client
        if goodbye is not None and client is not None:
            try:
                async with asyncio.timeout(timeout):
                    await goodbye(client)
            except (TimeoutError, aiomqtt.MqttError) as exc:
                log.warning("%s: could not say goodbye on %s: %s", self.node, self.where, exc or "timed out")
        await cancel_and_wait([self._task])
        self._task = None

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      properties: Properties | None = None) -> None:
        """Publishes on the current connection; NotConnected (an MqttError) while there is none."""
        client = self.client
        if client is None:
            raise NotConnected("not connected to the broker")
        await client.publish(topic, payload, qos=qos, retain=retain, properties=properties)

    async def _run(self) -> None:
        client = self._mqtt
        while True:
            reason = ""
            try:
                async with client:
                    await self._on_connect(client)
                    self.connects += 1
                    self._backoff.reset()
                    log.info("%s: connected to %s", self.node, self.where)
                    self.client = client
                    self.up.set()
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._read(client), name=f"bus {self.node} reader")
                        for work in self._workers(client):
                            group.create_task(work)
            except* aiomqtt.MqttError as eg:
                reason = "; ".join(str(e) for e in eg.exceptions)
            except* Exception as eg:  # a bug in a worker: logged, and the connection is made again
                log.error("%s: bus worker failed", self.node, exc_info=eg.exceptions[0])
                reason = f"worker failed: {eg.exceptions[0]!r}"
            finally:
                was_up = self.client is not None
                self.client = None
                self.up.clear()
            log.warning("%s: MQTT broker %s: %s; reconnecting", self.node, self.where, reason)
            if was_up or reason:
                try:
                    self._on_down(reason)
                except Exception:
                    log.exception("%s: on_down failed", self.node)
            await asyncio.sleep(self._backoff.next_delay())

    async def _read(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            try:
                self._on_message(msg)
            except Exception:  # one bad message or handler bug must not end the subscription
                log.exception("%s: handling a message on %s failed", self.node, msg.topic.value)
