"""The central system's side of standalone mode: readings and states from a ``meter-gateway`` via MQTT.

``csms serve`` with ``[gateway] mode = "mqtt"`` uses this instead of :class:`MeterGateway`, with the same
two callbacks. The gateway's own (retained) states are passed on; in addition a local stale timer per
meter reports a meter stale when no reading arrives here, which also covers a gateway host that died
without a word, and ``offline`` while the broker cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable

from .config import MqttConfig
from .mqtt import run_subscription
from .publisher import reading_topic, state_topic
from .reading import MeterReading, MeterState
from .tasks import cancel_and_wait
from .watch import MeterWatch

log = logging.getLogger(__name__)


class ReadingSubscriber:
    def __init__(
        self,
        mqtt: MqttConfig,
        serials: Iterable[str],
        on_reading: Callable[[MeterReading], None],
        on_state: Callable[[str, MeterState], None],
        stale_after: float | dict[str, float] = 10.0,
        clock: Callable[[], float] = time.time,
    ):
        self._cfg = mqtt
        self._serials = list(dict.fromkeys(serials))
        self._on_reading = on_reading
        self._on_state = on_state
        self._last: dict[str, tuple[str, str]] = {}
        limits = stale_after if isinstance(stale_after, dict) else {}
        default = stale_after if not isinstance(stale_after, dict) else 10.0
        self._watches = {
            s: MeterWatch(s, limits.get(s, default), self._forward, clock, "waiting for the meter gateway")
            for s in self._serials
        }
        self._topics: dict[str, tuple[str, str]] = {}
        for s in self._serials:
            self._topics[reading_topic(mqtt.publish_prefix, s)] = ("reading", s)
            self._topics[state_topic(mqtt.publish_prefix, s)] = ("state", s)
        #: Messages refused per meter, by kind ("bad_reading", "bad_state", "wrong_serial").
        self._refused: dict[str, Counter[str]] = {s: Counter() for s in self._serials}
        self._tasks: list[asyncio.Task[None]] = []

    def state(self, serial: str) -> MeterState:
        return self._watches[serial].state

    def refusals(self, serial: str) -> dict[str, int]:
        """Messages for meter ``serial`` refused so far, by reason (the same call as the gateway's)."""
        return dict(self._refused[serial])

    @property
    def refused(self) -> Counter[str]:
        """Messages refused for all meters together, by reason."""
        return sum(self._refused.values(), Counter())

    async def __aenter__(self) -> ReadingSubscriber:
        for watch in self._watches.values():
            watch.announce()
        self._tasks = [asyncio.create_task(w.run(), name=f"subscriber stale timer {s}") for s, w in self._watches.items()]
        if self._serials:
            self._tasks.append(asyncio.create_task(
                run_subscription(self._cfg, "csms-readings", list(self._topics), self._message,
                                 on_up=self._up, on_down=self._down, qos=1),
                name="subscriber mqtt",
            ))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    def _message(self, topic: str, payload: bytes) -> None:
        kind, serial = self._topics.get(topic, (None, ""))
        if kind == "reading":
            try:
                reading = MeterReading.from_json(payload)
            except ValueError as exc:
                self._refused[serial]["bad_reading"] += 1
                log.warning("meter %s: refused a reading from the meter gateway: %s", serial, exc)
                return
            if reading.serial != serial:
                self._refused[serial]["wrong_serial"] += 1
                log.warning("meter %s: reading on %s names meter %s; ignored", serial, topic, reading.serial)
                return
            self._watches[serial].valid_reading()
            try:
                self._on_reading(reading)
            except Exception:
                log.exception("meter %s: the reading handler failed", serial)
        elif kind == "state":
            if not payload:  # a cleared retained message
                return
            try:
                state = MeterState.from_json(payload)
            except ValueError as exc:
                self._refused[serial]["bad_state"] += 1
                log.warning("meter %s: refused a state from the meter gateway: %s", serial, exc)
                return
            self._forward(serial, state)

    def _up(self) -> None:
        for watch in self._watches.values():
            watch.source_up()

    def _down(self, reason: str) -> None:
        for watch in self._watches.values():
            watch.source_down(reason)

    def _forward(self, serial: str, state: MeterState) -> None:
        key = (state.status, state.reason)
        if self._last.get(serial) == key:
            return
        self._last[serial] = key
        try:
            self._on_state(serial, state)
        except Exception:
            log.exception("meter %s: the state handler failed", serial)
