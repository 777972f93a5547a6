"""Whole-path test rig: a real ``csms serve`` process, the simulated site, and what the building's fuse sees.

The central system runs as a subprocess started from a generated TOML config on free ports, exactly as
an operator runs it. The chargers, cars, loads and the mains meter run in the test process as the
simulators (``simulators.simulation.Simulation``); the meter is served over Modbus TCP or published
over MQTT, optionally through a ``meter-gateway run`` subprocess. Assertions are made on the site
physics the :class:`Observer` samples - what flows through the fuse and what each charger draws - never
on the central system's own view of itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from csms.config import SiteConfig, SmartChargingConfig, default_margin, load_config
from simulators.charger_config import SimChargerConfig
from simulators.chargepoint import SimCharger
from simulators.clock import SimClock
from simulators.ev import EVModel
from simulators.ports import free_port
from simulators.simulation import Simulation
from simulators.site import Constant, Load, Site, to_building

PASSWORD = "0123456789abcdef"
METER = "AG1234567G"
GROUP = "garage"
#: Seconds between two samples of the site physics.
SAMPLE_EVERY = 0.05

Phases = tuple[float, float, float]


async def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout} s")
            await asyncio.sleep(0.05)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Waits until ``predicate()`` holds; returns the seconds it took, fails naming ``what`` after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout:.1f} s: {what}")
        await asyncio.sleep(SAMPLE_EVERY)
    return time.monotonic() - start


# ---- the config ---------------------------------------------------------------------------------

@dataclass
class ChargerSpec:
    id: str
    version: str = "ocpp1.6"
    phases: int = 3
    rotation: str = "RST"
    max_current: float = 32
    offline_current: float = 6
    offline_phase: int = 1


@dataclass
class SiteSpec:
    """What a scenario needs from the site config. Everything else, and every field left at None here, is the
    shipped default an operator gets: a test proves the product only at the settings a user runs. A test that
    sets a tuning value (``margin``, ``poll_interval``, ``stale_after``, ``smart_charging``, ``group``) must be
    about that setting, and says why in a comment."""

    chargers: list[ChargerSpec]
    fuse: float = 40.0
    #: None: the default margin (1 % of the fuse, at least 0.25 A, :func:`csms.config.default_margin`).
    margin: float | None = None
    max_current_online: float | None = None
    max_current_offline: float = 20.0
    #: "modbus": csms polls the simulated meter; "mqtt": the meter publishes on a broker and csms
    #: subscribes; "gateway": ``meter-gateway run`` polls Modbus and csms reads its normalised readings.
    meter_path: str = "modbus"
    variant: str = "public"
    #: None: the meter gateway's default poll interval and the meter's and group's default stale_after.
    poll_interval: float | None = None
    stale_after: float | None = None
    smart_charging: dict[str, Any] = field(default_factory=dict)
    group: dict[str, Any] = field(default_factory=dict)
    #: Who may charge (not tuning): the organisation's ``authorization`` and its ``[[id_tokens]]``
    #: (organisation "org" is filled in).
    authorization: str = "accept-all"
    id_tokens: list[dict[str, Any]] = field(default_factory=list)
    #: The operator view with both tokens (not tuning): a port for it is then picked, see :data:`READ_TOKEN`.
    http: bool = False

    @property
    def versions(self) -> dict[str, str]:
        return {c.id: c.version for c in self.chargers}

    @property
    def effective_margin(self) -> float:
        """The margin ``csms serve`` applies: the one set here, else the default for this fuse."""
        return self.margin if self.margin is not None else default_margin(self.fuse)


#: EV response times as (ramp_delay, ramp_time) in s: a car starts ``ramp_delay`` after it is first allowed
#: to charge, then follows every change (up and down) linearly within ``ramp_time``. Real cars take 0.5-5 s
#: (IEC 61851-1 allows 5 s); :meth:`Rig.plug_in_all` hands these out in turn, so every site mixes them.
EV_RESPONSES = ((2.0, 1.5), (0.5, 2.5), (1.0, 4.0))
#: The slowest of them, start to full draw; and the longest a car takes to follow a change once charging.
SLOWEST_EV = max(d + r for d, r in EV_RESPONSES)
SLOWEST_RAMP = max(r for _, r in EV_RESPONSES)
#: The shipped delivery settings (what the bounds of a test derive from, unless it sets its own).
DEFAULTS = SmartChargingConfig()


#: The operator view's tokens when a scenario has one (``SiteSpec.http``).
READ_TOKEN = "e2e-read-token-0123456789"
OPERATOR_TOKEN = "e2e-operator-token-0123456789"


def config_data(spec: SiteSpec, tmp: Path, csms_port: int, meter_port: int, mqtt_port: int | None) -> dict:
    meter: dict[str, Any] = {"serial": METER, "pin": "12345678", "organisation": "org", "variant": spec.variant,
                             "host": "127.0.0.1", "port": meter_port}
    tuned_stale = {} if spec.stale_after is None else {"stale_after": spec.stale_after}
    meter.update(tuned_stale)
    if spec.poll_interval is not None:
        meter["poll_interval"] = spec.poll_interval
    if spec.meter_path == "mqtt":
        meter["source"] = "mqtt"
    data: dict[str, Any] = {
        "server": {"host": "127.0.0.1", "port": csms_port, "security_profile": 1},
        "storage": {"database": str(tmp / "csms.sqlite")},
        "gateway": {"mode": "mqtt" if spec.meter_path == "gateway" else "embedded"},
        "smart_charging": dict(spec.smart_charging),
        "organisations": [{"id": "org", "name": "E2E housing cooperative", "authorization": spec.authorization}],
        "id_tokens": [{"organisation": "org", **t} for t in spec.id_tokens],
        "meters": [meter],
        "chargers": [{"id": c.id, "password": PASSWORD, "organisation": "org", "phases": c.phases,
                      "phase_rotation": c.rotation, "max_current": c.max_current,
                      "offline_current": c.offline_current, "offline_phase": c.offline_phase}
                     for c in spec.chargers],
        "load_balancers": [{
            "id": GROUP, "name": "Garage", "organisation": "org", "meter": METER,
            "chargers": [c.id for c in spec.chargers], "supply_max_current": spec.fuse,
            "max_current_online": spec.max_current_online or spec.fuse,
            "max_current_offline": spec.max_current_offline, **tuned_stale, **spec.group}],
    }
    if spec.margin is not None:
        data["load_balancers"][0]["margin"] = spec.margin
    if spec.http:
        data["http"] = {"host": "127.0.0.1", "port": free_port(), "token": READ_TOKEN,
                        "operator_token": OPERATOR_TOKEN}
    if mqtt_port is not None:
        data["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "keepalive": 5}
    return data


# ---- processes ----------------------------------------------------------------------------------

class Process:
    """A child process (``csms serve``, ``meter-gateway run``) with its output in a log file.

    ``stop`` sends SIGTERM and returns the exit code (a process that ignores it is killed and the test
    fails with its stack dump); ``kill`` sends SIGKILL, as a power cut would. The process can be started
    again after either, on the same port.
    """

    def __init__(self, name: str, argv: list[str], log_path: Path, port: int | None = None):
        self.name, self.argv, self.log_path, self.port = name, argv, log_path, port
        self.proc: subprocess.Popen | None = None

    async def start(self, timeout: float = 15.0) -> None:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} is already running")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        if self.port is not None:
            try:
                await wait_port(self.port, timeout, self.proc, self.name)
            except BaseException:
                self.kill()
                raise

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then wait; a process that does not exit in time is killed (and that is reported)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # with -X faulthandler: every thread's stack goes to the log
            await asyncio.sleep(0.5)
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout} s of SIGTERM; its log ends:\n"
                                 f"{self.log_tail()}") from None
        self.proc = None
        return code

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def csms_process(config_path: Path, port: int, log_path: Path, *options: str) -> Process:
    argv = [sys.executable, "-X", "faulthandler", "-m", "csms.runtime.cli", "serve", "--config", str(config_path),
            *options]
    return Process("csms serve", argv, log_path, port)


def gateway_process(config_path: Path, log_path: Path) -> Process:
    return Process("meter-gateway run",
                   [sys.executable, "-m", "meter_gateway.cli", "run", "--config", str(config_path)], log_path)


# ---- what the fuse sees ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    t: float
    building: Phases
    others: Phases
    #: Per charger, A drawn on each building phase.
    evs: dict[str, Phases]
    offered: dict[str, float]

    def ev_total(self, phase: int) -> float:
        return sum(d[phase - 1] for d in self.evs.values())


class Observer:
    """Samples the site physics every :data:`SAMPLE_EVERY` s into ``samples`` (and the Site's own record)."""

    def __init__(self, sim: Simulation, site: Site):
        self.sim, self.site = sim, site
        self.samples: list[Sample] = []
        self._task: asyncio.Task | None = None

    def sample(self) -> Sample:
        now = self.sim.clock.now()
        self.site.record(now)
        s = Sample(now, self.site.phase_currents(now), self.site.other_loads(now),
                   {c.id: to_building(c.draw(), c.phase_rotation) for c in self.sim.fleet},
                   {c.id: c.limit().amps or 0.0 for c in self.sim.fleet})
        self.samples.append(s)
        return s

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="e2e-observer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def last(self) -> Sample:
        return self.samples[-1] if self.samples else self.sample()

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.t >= t]

    def overshoot(self, fuse: float, since: float = float("-inf")) -> str:
        """Where the building went above ``fuse`` since ``since``: first and last moment, peak and A·s."""
        over = [(s.t, max(s.building)) for s in self.samples if s.t >= since and max(s.building) > fuse + 1e-9]
        if not over:
            return "never above the fuse"
        area = sum((a - fuse) * SAMPLE_EVERY for _, a in over)
        return (f"above the {fuse:g} A fuse from +{over[0][0] - since:.1f} s to +{over[-1][0] - since:.1f} s, "
                f"peak {max(a for _, a in over):.2f} A, about {area:.1f} A·s")

    def worst(self, since: float = float("-inf")) -> float:
        """Largest building phase current seen since ``since``."""
        return max((max(s.building) for s in self.samples if s.t >= since), default=0.0)


# ---- the whole rig --------------------------------------------------------------------------------

@dataclass
class Rig:
    spec: SiteSpec
    tmp: Path
    config_path: Path
    #: The config ``csms serve`` runs, defaults filled in: what a test's bounds derive from.
    cfg: SiteConfig
    sim: Simulation
    csms: Process
    observer: Observer
    gateway: Process | None = None

    @property
    def sc(self) -> SmartChargingConfig:
        return self.cfg.smart_charging

    @property
    def poll_interval(self) -> float:
        """Seconds between two mains readings (MQTT: the simulated meter publishes at this interval too)."""
        return self.cfg.meters[0].poll_interval

    @property
    def stale_after(self) -> float:
        return self.cfg.load_balancers[0].stale_after

    @property
    def site(self) -> Site:
        return self.sim.sites[METER]

    @property
    def meter(self):
        return self.sim.meters[METER]

    @property
    def db_path(self) -> Path:
        return self.tmp / "csms.sqlite"

    def charger(self, cid: str) -> SimCharger:
        return self.sim.fleet[cid]

    def add_load(self, load: Load) -> None:
        self.site.loads.append(load)

    def plug_in_all(self, **ev: Any) -> None:
        """A car on every charger; unless given, their response times are :data:`EV_RESPONSES` in turn."""
        for i, c in enumerate(self.sim.fleet):
            delay, ramp = EV_RESPONSES[i % len(EV_RESPONSES)]
            c.plug_in(ev_model(**{"name": f"car@{c.id}", "ramp_delay": delay, "ramp_time": ramp, **ev}))

    def now(self) -> float:
        return self.sim.clock.now()

    async def settle(self, predicate: Callable[[Sample], bool], timeout: float, what: str) -> float:
        return await wait_until(lambda: predicate(self.observer.sample()), timeout, what)

    async def hold(self, seconds: float) -> list[Sample]:
        """Lets the site run for ``seconds`` and returns what the observer saw meanwhile."""
        t0 = self.now()
        await asyncio.sleep(seconds)
        return self.observer.since(t0)


def ev_model(**kw: Any) -> EVModel:
    """A 32 A car that starts 2 s after it is allowed and follows a changed offer, up or down, within 1.5 s
    (the first of :data:`EV_RESPONSES`); keywords override."""
    defaults = dict(max_current=32.0, phases=3, capacity_kwh=60, soc_start=0.3, ramp_delay=2.0, ramp_time=1.5,
                    ramp_down=True)
    return EVModel(**{**defaults, **kw})


@contextlib.asynccontextmanager
async def running_site(tmp: Path, spec: SiteSpec, *, base_load: Phases = (10.0, 8.0, 12.0),
                       mqtt_port: int | None = None,
                       tweak: Callable[[SimChargerConfig], SimChargerConfig] | None = None,
                       serve_options: tuple[str, ...] = ()) -> AsyncIterator[Rig]:
    """Starts the meter, ``csms serve`` (with ``serve_options``; and ``meter-gateway run`` for the gateway path)
    and the chargers; yields when every charger is connected and booted. Everything is stopped on the way out;
    the central system must then exit 0 on SIGTERM."""
    csms_port, meter_port = free_port(), free_port()
    data = config_data(spec, tmp, csms_port, meter_port, mqtt_port)
    config_path = tmp / "site.toml"
    config_path.write_text(tomli_w.dumps(data))
    cfg = load_config(config_path)

    def configure(sc: SimChargerConfig) -> SimChargerConfig:
        # The charger's own meter-value interval (until csms configures one) stays the simulator's 10 s.
        sc.version = spec.versions[sc.id]  # type: ignore[assignment]
        sc.backoff_min, sc.backoff_max, sc.response_timeout = 0.2, 1.0, 5.0
        return tweak(sc) if tweak else sc

    sim = Simulation.from_config(cfg, SimClock(seed=7), tweak=configure)
    site = sim.sites[METER]
    site.loads.append(Constant(base_load))
    csms = csms_process(config_path, csms_port, tmp / "csms.log", *serve_options)
    gateway = gateway_process(config_path, tmp / "meter-gateway.log") if spec.meter_path == "gateway" else None
    observer = Observer(sim, site)
    rig = Rig(spec, tmp, config_path, cfg, sim, csms, observer, gateway)
    ok = False
    try:
        await sim.start_meters()
        if gateway is not None:
            await gateway.start()
        await csms.start()
        await sim.fleet.start(f"ws://127.0.0.1:{csms_port}/ocpp")
        await sim.fleet.wait_connected(timeout=15)
        observer.start()
        yield rig
        ok = True
    finally:
        await observer.stop()
        await sim.stop()
        if gateway is not None:
            with contextlib.suppress(AssertionError):
                await gateway.stop()
            gateway.kill()
        try:
            code = await csms.stop()
        finally:
            csms.kill()
        if not ok:
            print(f"---- csms serve log ({csms.log_path}) ----\n{csms.log_tail()}", file=sys.stderr)
    assert code in (0, None), f"csms serve exited with {code} on SIGTERM:\n{csms.log_tail()}"


def ev_budget(spec: SiteSpec, base: Phases, phase: int) -> float:
    """What the group's cars may use on ``phase`` by the operator's rules, from the true other load."""
    online = spec.max_current_online or spec.fuse
    return min(online, spec.fuse - spec.effective_margin - base[phase - 1])


def balanced(s: Sample, phase: int, budget: float, chargers: list[str] | None = None) -> bool:
    """At least 95 % of ``budget`` used on ``phase`` and the (equal) cars within 1 A of each other."""
    draws = [d[phase - 1] for cid, d in s.evs.items() if chargers is None or cid in chargers]
    return sum(draws) >= 0.95 * budget and max(draws) - min(draws) <= 1.0


async def until_balanced(rig: Rig, phase: int, budget: float, chargers: list[str] | None = None,
                         timeout: float = 30.0) -> float:
    """Waits until the cars share ``budget`` on ``phase`` (see :func:`balanced`); returns the seconds it took."""
    return await rig.settle(lambda s: balanced(s, phase, budget, chargers), timeout,
                            f"cars {chargers or 'all'} share {budget:.1f} A on L{phase} (>= 95 %, within 1 A)")
