"""The meter gateway: reads every configured meter, judges each sample, and hands on readings and states.

``csms serve`` embeds it (``[gateway] mode = "embedded"``); ``meter-gateway run`` wraps it to publish on
MQTT for a central system on another host. Either way the owner passes two plain callbacks, which are
called on the event loop and must not block::

    async with MeterGateway(cfg.meters, cfg.mqtt, on_reading, on_state) as gw:
        ...
        gw.stats("AG1234567G")  # {"accepted": 120, "current_out_of_range": 2, ...}
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .config import MeterConfig, MqttConfig
from .modbus import poll_meter
from .mqtt import run_subscription, topic_matches
from .reading import MeterReading, MeterState
from .registers import RegisterMap, load_register_map
from .tasks import cancel_and_wait
from .validate import REJECTIONS, ReadingJudge, Rejected
from .watch import MeterWatch

log = logging.getLogger(__name__)

#: Source problems counted next to the rejections of :data:`meter_gateway.validate.REJECTIONS`.
SOURCE_ERRORS = ("connect_failed", "read_error", "modbus_exception")


class MeterGateway:
    def __init__(
        self,
        meters: Sequence[MeterConfig],
        mqtt: MqttConfig | None,
        on_reading: Callable[[MeterReading], None],
        on_state: Callable[[str, MeterState], None],
        register_dirs: Sequence[str | Path] = (),
        clock: Callable[[], float] = time.time,
    ):
        """Checks the whole setup before anything starts: raises ``RegisterMapError`` for an unknown or
        broken profile and ``ValueError`` for MQTT meters without a broker."""
        self._meters = {m.serial: m for m in meters}
        if len(self._meters) != len(meters):
            raise ValueError("meters: a serial is listed twice")
        self._mqtt = mqtt
        self._on_reading = on_reading
        self._on_state = on_state
        self._clock = clock
        self._maps: dict[str, RegisterMap] = {
            m.serial: load_register_map(m.profile, register_dirs) for m in meters if m.source == "modbus"
        }
        self._mqtt_meters = [m for m in meters if m.source == "mqtt"]
        if self._mqtt_meters and mqtt is None:
            raise ValueError(f"meter {self._mqtt_meters[0].serial}: source = \"mqtt\" needs an [mqtt] section naming the broker")
        self._judges = {m.serial: ReadingJudge.for_meter(m) for m in meters}
        self._counts: dict[str, Counter[str]] = {m.serial: Counter() for m in meters}
        self._watches = {m.serial: MeterWatch(m.serial, m.stale_after, self._state_changed, clock) for m in meters}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> MeterGateway:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def start(self) -> None:
        """Announces every meter's initial state, then starts one task per Modbus meter, one for all MQTT
        meters and one stale timer per meter."""
        for watch in self._watches.values():
            watch.announce()
        for serial, regmap in self._maps.items():
            self._spawn(self._poll(self._meters[serial], regmap), f"modbus {serial}")
        if self._mqtt_meters:
            self._spawn(self._subscribe(), "mqtt meters")
        for serial, watch in self._watches.items():
            self._spawn(watch.run(), f"stale timer {serial}")

    async def aclose(self) -> None:
        """Cancels and awaits every task, then reports every meter offline (the gateway no longer reads it)."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        for watch in self._watches.values():
            watch.set("offline", "meter gateway stopped")

    def stats(self, serial: str) -> dict[str, int]:
        """Counters of meter ``serial``: accepted, saturated, and one per rejection kind or source error."""
        return dict(self._counts[serial])

    def refusals(self, serial: str) -> dict[str, int]:
        """Samples of meter ``serial`` refused so far, by reason (:data:`meter_gateway.validate.REJECTIONS`)."""
        return {kind: n for kind, n in self._counts[serial].items() if kind in REJECTIONS}

    def state(self, serial: str) -> MeterState:
        return self._watches[serial].state

    @property
    def serials(self) -> list[str]:
        return list(self._meters)

    # ---- sources ------------------------------------------------------------------------------------

    def _spawn(self, coro, name: str) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro, name=f"meter-gateway {name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s crashed", task.get_name(), exc_info=task.exception())

    async def _poll(self, meter: MeterConfig, regmap: RegisterMap) -> None:
        serial = meter.serial
        watch = self._watches[serial]
        await poll_meter(
            meter,
            regmap,
            on_values=lambda values: self._judge(serial, lambda at: self._judges[serial].from_registers(values, at)),
            on_error=lambda kind, detail: self._source_error(serial, kind, detail),
            on_connected=watch.source_up,
        )

    async def _subscribe(self) -> None:
        assert self._mqtt is not None
        meters = self._mqtt_meters

        def on_message(topic: str, payload: bytes) -> None:
            meter = next((m for m in meters if topic_matches(topic, m.mqtt_topic)), None)
            if meter is not None:
                self._judge(meter.serial, lambda at: self._judges[meter.serial].from_payload(payload, at))

        def on_down(reason: str) -> None:
            for m in meters:
                self._source_error(m.serial, "connect_failed", reason)

        def on_up() -> None:
            for m in meters:
                self._watches[m.serial].source_up()

        await run_subscription(self._mqtt, "gateway-meters", [m.mqtt_topic for m in meters], on_message, on_up, on_down)

    # ---- judging and counting -------------------------------------------------------------------------

    def _judge(self, serial: str, make: Callable[[float], MeterReading]) -> None:
        counts = self._counts[serial]
        try:
            reading = make(self._clock())
        except Rejected as exc:
            counts[exc.kind] += 1
            if exc.kind == "conflicting_sources":
                self._watches[serial].suspect(f"{exc.kind} ({exc.detail})")
            else:
                self._watches[serial].refused(f"{exc.kind} ({exc.detail})")
            _log_counted(logging.WARNING, counts[exc.kind], "meter %s: refused a reading: %s", serial, exc)
            return
        counts["accepted"] += 1
        if reading.saturated:
            counts["saturated"] += 1
            _log_counted(logging.WARNING, counts["saturated"], "meter %s: clamp saturated on phase(s) %s",
                         serial, reading.saturated_phases)
        self._watches[serial].valid_reading()
        try:
            self._on_reading(reading)
        except Exception:
            log.exception("meter %s: the reading handler failed", serial)

    def _source_error(self, serial: str, kind: str, detail: str) -> None:
        counts = self._counts[serial]
        counts[kind] += 1
        _log_counted(logging.WARNING, counts[kind], "meter %s: %s: %s", serial, kind, detail)
        if kind == "modbus_exception":
            self._watches[serial].refused(f"{kind} ({detail})")
        else:
            self._watches[serial].source_down(detail)

    def _state_changed(self, serial: str, state: MeterState) -> None:
        try:
            self._on_state(serial, state)
        except Exception:
            log.exception("meter %s: the state handler failed", serial)


def _log_counted(level: int, count: int, msg: str, *args: object) -> None:
    """Logs the 1st, 2nd, 4th, 8th... occurrence at ``level`` and the rest at DEBUG, so a meter that
    keeps sending bad data cannot flood the log but its first problems are always visible."""
    loud = count & (count - 1) == 0
    log.log(level if loud else logging.DEBUG, msg + (f" (x{count})" if count > 1 else ""), *args)


def counts_summary(stats: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(stats.items())) or "nothing yet"
