"""MQTT plumbing shared by the gateway's MQTT meter source, the standalone publisher and the subscriber.

Each role gets its own client id (``{client_id}-{role}``): two connections with the same id would make
the broker drop one whenever the other connects, an endless reconnect loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence

import aiomqtt

from .backoff import READINGS_RETRY_MAX, Backoff
from .config import MqttConfig
from .tasks import raise_if_cancel_requested

log = logging.getLogger(__name__)

#: Seconds any single MQTT operation (connect, subscribe, publish) may take.
MQTT_TIMEOUT = 10.0


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """The TLS context for ``cfg`` (CA file, optional client certificate), or None without TLS."""
    if not cfg.tls:
        return None
    ctx = ssl.create_default_context(cafile=cfg.tls_ca)
    if cfg.tls_cert:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


def make_client(cfg: MqttConfig, role: str, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        cfg.host,
        cfg.port,
        username=cfg.username,
        password=cfg.password,
        identifier=f"{cfg.client_id}-{role}" if cfg.client_id else None,
        keepalive=cfg.keepalive,
        tls_context=tls_context(cfg),
        timeout=MQTT_TIMEOUT,
        will=will,
    )


def describe(cfg: MqttConfig) -> str:
    """The broker as it appears in logs: host, port and user, never the password."""
    user = f"{cfg.username}@" if cfg.username else ""
    return f"mqtt{'s' if cfg.tls else ''}://{user}{cfg.host}:{cfg.port}"


async def run_subscription(
    cfg: MqttConfig,
    role: str,
    topics: Sequence[str],
    on_message: Callable[[str, bytes], None],
    on_up: Callable[[], None] = lambda: None,
    on_down: Callable[[str], None] = lambda reason: None,
    backoff: Backoff | None = None,
    qos: int = 0,
) -> None:
    """Subscribes to ``topics`` and hands every message to ``on_message(topic, payload)`` until cancelled.

    Reconnects with backoff whenever the broker goes away and subscribes again after each reconnect
    (the broker may have lost the session). ``on_down(reason)`` hears each failure.
    """
    backoff = backoff or Backoff(initial=0.5, maximum=READINGS_RETRY_MAX)
    client = make_client(cfg, role)
    where = describe(cfg)
    while True:
        try:
            async with client:
                await client.subscribe([(t, qos) for t in topics])
                raise_if_cancel_requested()  # aiomqtt's connect and subscribe can swallow it (meter_gateway.tasks)
                log.info("%s: subscribed to %s on %s", role, ", ".join(topics), where)
                backoff.reset()
                on_up()
                async for msg in client.messages:
                    payload = msg.payload
                    if isinstance(payload, str):
                        payload = payload.encode()
                    elif not isinstance(payload, bytes | bytearray):
                        payload = b"" if payload is None else str(payload).encode()
                    try:
                        on_message(msg.topic.value, bytes(payload))
                    except Exception:  # one bad message or handler bug must not end the subscription
                        log.exception("%s: handling a message on %s failed", role, msg.topic.value)
        except aiomqtt.MqttError as exc:
            reason = f"MQTT broker {where}: {exc}"
            log.warning("%s: %s; reconnecting", role, reason)
            on_down(reason)
        raise_if_cancel_requested()
        await asyncio.sleep(backoff.next_delay())


def topic_matches(topic: str, pattern: str) -> bool:
    return aiomqtt.Topic(topic).matches(pattern)
