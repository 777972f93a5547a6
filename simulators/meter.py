"""Amp Guard simulator: the site's mains meter, served over Modbus TCP and/or published over MQTT.

It measures what a real clamp meter would: the building's phase currents as the :class:`~simulators.site.Site`
computes them, saturated at the variant's clamp range (home 100 A, public 400 A) with the over-range
status bit set, and with installation faults applied on demand - a clamp mounted backwards (its current
and power change sign), two clamps swapped between phases, or an open clamp. Going offline closes its
Modbus port (clients see the connection drop and then refused) and pauses publishing; coming back
online serves the same port again.

Register encoding goes through ``meter_gateway.registers``, so every shipped map (``ampguard``,
``sdm630``, ...) is served exactly as the gateway decodes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import aiomqtt
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from meter_gateway.config import VARIANT_RANGE_A
from meter_gateway.registers import RegisterMap, StatusFlag, load_register_map
from simulators.clock import SimClock
from csms.runtime.isotime import iso_millis

log = logging.getLogger(__name__)

Phases = tuple[float, float, float]
_FC = {3: "holding", 4: "input"}


@dataclass
class MeterFaults:
    #: Building phases (1..3) whose clamp is mounted backwards.
    reversed_clamps: frozenset[int] = frozenset()
    #: Two building phases whose clamps are swapped (each measures the other's current, against its own
    #: terminal's voltage: power factor -0.5 on both).
    swapped: tuple[int, int] | None = None
    #: Building phases (1..3) whose clamp is open: reads 0 A with the clamp-fault status bit.
    open_clamps: frozenset[int] = frozenset()


@dataclass
class _Endpoint:
    """One Modbus TCP endpoint of the meter; ``server`` is None while the meter is offline."""

    host: str
    port: int
    device: SimDevice
    profile: str
    unit: int
    server: ModbusTcpServer | None = None
    task: asyncio.Task | None = None


@dataclass(frozen=True)
class MeterSample:
    current: Phases
    voltage: Phases
    power: Phases
    status: StatusFlag

    @property
    def power_total(self) -> float:
        return sum(self.power)

    def quantities(self) -> dict[str, float]:
        """Values by register-map quantity name."""
        q = {f"current_l{i + 1}": self.current[i] for i in range(3)}
        q |= {f"voltage_l{i + 1}": self.voltage[i] for i in range(3)}
        q |= {f"power_l{i + 1}": self.power[i] for i in range(3)}
        q["power_total"] = self.power_total
        q["status"] = float(int(self.status))
        return q

    def mqtt_payload(self, serial: str, at: float) -> dict:
        return {"serial": serial, "timestamp": iso_millis(at), "current": [round(a, 3) for a in self.current],
                "voltage": [round(v, 1) for v in self.voltage], "power": round(self.power_total, 1)}


@dataclass
class AmpGuardSim:
    """One simulated Amp Guard. ``currents`` gives the true building phase currents now (usually
    ``site.metered_currents``); ``voltages`` the phase voltages."""

    serial: str
    currents: Callable[[], Phases]
    clock: SimClock = field(default_factory=SimClock)
    variant: str = "home"
    voltages: Callable[[], Phases] = lambda: (230.0, 230.0, 230.0)
    faults: MeterFaults = field(default_factory=MeterFaults)
    online: bool = True

    def __post_init__(self) -> None:
        if self.variant not in VARIANT_RANGE_A:
            raise ValueError(f"meter {self.serial}: variant must be one of {sorted(VARIANT_RANGE_A)}")
        self._online_event = asyncio.Event()
        if self.online:
            self._online_event.set()
        self._endpoints: list[_Endpoint] = []
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self.published = 0

    @property
    def range_a(self) -> float:
        return VARIANT_RANGE_A[self.variant]

    def go_offline(self) -> asyncio.Task | None:
        """Stops answering: the Modbus servers close their port (clients see refused connections) and
        publishing pauses. Returns the task that does it, for callers that want to wait."""
        self.online = False
        self._online_event.clear()
        return self._schedule_reconcile()

    def go_online(self) -> asyncio.Task | None:
        """Serves again on the same ports and resumes publishing."""
        self.online = True
        self._online_event.set()
        return self._schedule_reconcile()

    def _schedule_reconcile(self) -> asyncio.Task | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._endpoints:
                raise
            return None  # nothing served (a pure-physics run): the flag is all there is to change
        task = loop.create_task(self._reconcile(), name=f"{self.serial}-online={self.online}")
        self._tasks = [t for t in self._tasks if not t.done()] + [task]
        return task

    async def _reconcile(self) -> None:
        """Brings every Modbus endpoint in line with ``online`` (serialised, so quick toggles end right)."""
        async with self._lock:
            for ep in self._endpoints:
                if self.online and ep.server is None:
                    await self._open(ep)
                elif not self.online and ep.server is not None:
                    server, task, ep.server, ep.task = ep.server, ep.task, None, None
                    await server.shutdown()
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    def sample(self) -> MeterSample:
        """What the meter measures now, faults and saturation included."""
        true = list(self.currents())
        volts = self.voltages()
        if self.faults.swapped is not None:
            a, b = (p - 1 for p in self.faults.swapped)
            true[a], true[b] = true[b], true[a]
        status = StatusFlag(0)
        measured = []
        for i, amps in enumerate(true):
            phase = i + 1
            if phase in self.faults.reversed_clamps:
                amps = -amps
            if phase in self.faults.open_clamps:
                amps = 0.0
                status |= StatusFlag(1 << i)
            if abs(amps) >= self.range_a:
                amps = self.range_a if amps > 0 else -self.range_a
                status |= StatusFlag.OVERRANGE
            measured.append(amps)
        current = (measured[0], measured[1], measured[2])
        # A clamp on another phase than its voltage terminal sees its current 120 degrees off that voltage: the
        # meter computes power factor -0.5 for it (cos 120°), as a real meter does with a misplaced clamp.
        moved = set(self.faults.swapped or ())
        power: Phases = tuple(current[i] * volts[i] * (-0.5 if i + 1 in moved else 1.0) for i in range(3))
        return MeterSample(current, volts, power, status)

    # ---- Modbus TCP -----------------------------------------------------------------------------

    def modbus_device(self, register_map: RegisterMap, unit: int = 1) -> SimDevice:
        """A pymodbus device whose registers hold the live sample encoded with ``register_map``."""
        layout = register_map.encode({})
        by_function: dict[str, list[int]] = {"holding": [], "input": []}
        for function, address in layout:
            by_function[function].append(address)

        def blocks(addresses: list[int]) -> list[SimData]:
            if not addresses:
                return [SimData(address=65534, values=0, datatype=DataType.UINT16)]  # placeholder, never read
            out: list[SimData] = []
            addresses = sorted(addresses)
            start = prev = addresses[0]
            for a in addresses[1:] + [None]:  # type: ignore[list-item]
                if a is not None and a == prev + 1:
                    prev = a
                    continue
                out.append(SimData(address=start, count=prev - start + 1, values=0, datatype=DataType.UINT16))
                if a is not None:
                    start = prev = a
            return out

        async def action(fc: int, start: int, address: int, count: int, registers: list[int], values) -> None:
            words = register_map.encode(self.sample().quantities())
            function = _FC.get(fc)
            for (f, a), w in words.items():
                if f == function and 0 <= a - start < len(registers):
                    registers[a - start] = w
            return None

        bits = [SimData(address=65534, values=False, datatype=DataType.BITS)]
        return SimDevice(id=unit, simdata=(bits, bits, blocks(by_function["holding"]), blocks(by_function["input"])),
                         action=action)

    async def serve_modbus(self, host: str = "127.0.0.1", port: int = 0, profile: str = "ampguard",
                           unit: int = 1, register_dirs: tuple[str, ...] = ()) -> int:
        """Serves the meter on ``host:port`` (0 = a free port) in register map ``profile``; returns the port.
        Raises OSError if the port is taken, and the register map's own error if ``profile`` is unknown."""
        ep = _Endpoint(host, port, self.modbus_device(load_register_map(profile, register_dirs), unit), profile, unit)
        async with self._lock:
            if self.online:
                await self._open(ep)
            self._endpoints.append(ep)
        return ep.port

    async def _open(self, ep: _Endpoint) -> None:
        server = ModbusTcpServer(ep.device, address=(ep.host, ep.port))
        task = asyncio.create_task(server.serve_forever(), name=f"{self.serial}-modbus")
        async with asyncio.timeout(5):
            while server.transport is None:
                if task.done():
                    try:
                        task.result()
                    except RuntimeError as exc:  # pymodbus words a failed bind so, and drops the OSError
                        raise OSError(errno.EADDRINUSE, "could not listen (the port in use, or an address this "
                                                        "machine does not have)") from exc
                await asyncio.sleep(0.01)
        ep.server, ep.task = server, task
        ep.port = server.transport.sockets[0].getsockname()[1]
        log.info("meter %s: Modbus TCP on %s:%d, map %s, unit %d", self.serial, ep.host, ep.port, ep.profile, ep.unit)

    # ---- MQTT -----------------------------------------------------------------------------------

    def start_mqtt(self, host: str = "127.0.0.1", port: int = 1883, topic: str | None = None,
                   interval: float = 1.0, username: str | None = None, password: str | None = None) -> None:
        """Publishes a reading every ``interval`` s of clock time to ``topic`` (default
        ``ampguard/{serial}/measurement``), reconnecting with backoff when the broker goes away."""
        topic = topic or f"ampguard/{self.serial}/measurement"
        self._tasks.append(asyncio.create_task(
            self._publish(host, port, topic, interval, username, password), name=f"{self.serial}-mqtt"))

    async def _publish(self, host: str, port: int, topic: str, interval: float, username: str | None,
                       password: str | None) -> None:
        client = aiomqtt.Client(host, port, username=username, password=password,
                                identifier=f"ampguard-sim-{self.serial}", keepalive=30, timeout=5)
        delay = 0.2
        while True:
            try:
                async with client:
                    delay = 0.2
                    while True:
                        await self._online_event.wait()
                        payload = self.sample().mqtt_payload(self.serial, self.clock.now())
                        await client.publish(topic, json.dumps(payload), qos=0)
                        self.published += 1
                        await self.clock.sleep(interval)
            except aiomqtt.MqttError as exc:
                log.info("meter %s: MQTT broker %s:%d unavailable (%s); retrying in %.1f s",
                         self.serial, host, port, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        async with self._lock:
            for ep in self._endpoints:
                if ep.server is not None:
                    with contextlib.suppress(Exception):
                        await ep.server.shutdown()
                    ep.task.cancel()
                    await asyncio.gather(ep.task, return_exceptions=True)
                    ep.server = ep.task = None
            self._endpoints = []
