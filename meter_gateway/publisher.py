"""Publishing normalised readings and meter states to MQTT, for a standalone ``meter-gateway``.

Readings go to ``{prefix}/{serial}/reading`` (QoS 0: the next one follows within a poll interval);
states go to ``{prefix}/{serial}/state`` retained with QoS 1, so a central system that connects later
learns every meter's state at once. While the broker is away, readings queue up to ``max_backlog`` (the
oldest are dropped: a late reading is of little use to a balancer) and only each meter's latest state is
kept; every state is published again after each reconnect, in case the broker lost its retained messages.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import aiomqtt

from .backoff import READINGS_RETRY_MAX, Backoff
from .config import MqttConfig
from .mqtt import describe, make_client
from .reading import MeterReading, MeterState
from .tasks import cancel_and_wait, raise_if_cancel_requested

log = logging.getLogger(__name__)


def reading_topic(prefix: str, serial: str) -> str:
    return f"{prefix}/{serial}/reading"


def state_topic(prefix: str, serial: str) -> str:
    return f"{prefix}/{serial}/state"


class ReadingPublisher:
    """``async with ReadingPublisher(cfg) as pub:`` then ``pub.reading(r)`` / ``pub.state(serial, s)`` (non-blocking)."""

    def __init__(self, cfg: MqttConfig, max_backlog: int = 1000):
        self._cfg = cfg
        self._prefix = cfg.publish_prefix
        self._readings: deque[MeterReading] = deque(maxlen=max_backlog)
        self._states: dict[str, MeterState] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        #: Readings dropped because the backlog was full.
        self.dropped = 0
        self.published = 0

    def reading(self, reading: MeterReading) -> None:
        if len(self._readings) == self._readings.maxlen:
            self.dropped += 1
        self._readings.append(reading)
        self._kick()

    def state(self, serial: str, state: MeterState) -> None:
        self._states[serial] = state
        self._dirty.add(serial)
        self._kick()

    async def flush(self, timeout: float) -> bool:
        """Waits until everything queued is published; False if that took longer than ``timeout``."""
        if not self._pending():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def __aenter__(self) -> ReadingPublisher:
        self._task = asyncio.create_task(self._run(), name="meter-gateway publisher")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    def _pending(self) -> bool:
        return bool(self._readings or self._dirty)

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        backoff = Backoff(initial=0.5, maximum=READINGS_RETRY_MAX)
        client = make_client(self._cfg, "gateway-publisher")
        where = describe(self._cfg)
        while True:
            try:
                async with client:
                    log.info("publishing meter readings to %s under %s/", where, self._prefix)
                    backoff.reset()
                    self._dirty.update(self._states)
                    while True:
                        await self._drain(client)
                        raise_if_cancel_requested()  # aiomqtt's publish can swallow it (meter_gateway.tasks)
                        self._idle.set()
                        await self._wake.wait()
                        self._wake.clear()
            except aiomqtt.MqttError as exc:
                log.warning("MQTT broker %s: %s; %d readings queued, reconnecting", where, exc, len(self._readings))
            raise_if_cancel_requested()
            await asyncio.sleep(backoff.next_delay())

    async def _drain(self, client: aiomqtt.Client) -> None:
        while self._dirty or self._readings:
            while self._dirty:
                serial = next(iter(self._dirty))
                state = self._states[serial]
                await client.publish(state_topic(self._prefix, serial), state.to_json(), qos=1, retain=True)
                if self._states[serial] is state:  # not replaced while we were publishing
                    self._dirty.discard(serial)
            if self._readings:
                reading = self._readings.popleft()
                try:
                    await client.publish(reading_topic(self._prefix, reading.serial), reading.to_json(), qos=0)
                except aiomqtt.MqttError:
                    self._readings.appendleft(reading)
                    raise
                self.published += 1
