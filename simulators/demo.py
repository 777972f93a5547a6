"""``csms demo``: the whole product on one machine, with nothing else to install or configure.

One process runs the central system exactly as ``csms serve`` does (embedded meter gateway, balancer,
smart-charging delivery, SQLite) against a simulated site: an Amp Guard served over Modbus TCP, and
chargers of both OCPP versions with 1- and 3-phase cars. A scripted scenario plays while a terminal view
shows each building phase against the fuse, and each charger's limit, draw, control state and the reason
for its limit. It lives with the simulators (the central system never imports them) and is registered as
a ``csms`` sub-command through the ``csms.commands`` entry point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from csms.config import SiteConfig, charger_phases, parse_config
from csms.runtime.app import CentralSystemApp
from simulators.ev import EVModel
from simulators.ports import free_port
from simulators.scenarios import Plan, Scenario, ScenarioPlayer
from simulators.simulation import Simulation
from simulators.site import Noise, Steps

log = logging.getLogger("csms.demo")

FUSE = 40.0
#: When the scenario steps the base load up, and how long it takes until the fuse is held again: a reading and
#: the cars' response to cut back (a few seconds), then one peak window (10 s, ``Tuning.peak_window``) at the new
#: level. The base load jitters ±0.8 A every second, twice the default margin (0.4 A on this fuse); the budget
#: allows for the highest jitter the window has seen, so until it has seen a few readings at the new level a
#: jitter above all of them can still reach past the fuse by up to the jitter minus the margin.
STEP_AT = 35.0
STEP_GRACE = 12.0
GROUP = "garage"
METER = "AG1234567G"
#: The sub-board: a carport on its own 20 A fuse (no meter of its own) holding the last two chargers, so the demo
#: shows nested limits (csms.balancer.circuits): the chargers on it share 20 A, the rest of the 40 A goes to others.
SUB_BOARD, SUB_FUSE = "carport", 20.0
#: (id, phases, rotation, max A, car max A, car phases) - both versions alternate in this order.
CHARGERS = [
    ("CP0001", 3, "RST", 32, 32, 3),
    ("CP0002", 3, "STR", 16, 16, 3),
    ("CP0003", 1, "TRS", 32, 32, 1),
    ("CP0004", 3, "RST", 32, 16, 1),   # a 1-phase car on a 3-phase charger
    ("CP0005", 3, "TRS", 22, 22, 3),
]


def demo_config(database: str, meter_port: int, http_port: int | None = None) -> SiteConfig:
    """The embedded example site: one cooperative, one Amp Guard, five chargers behind a 40 A fuse, two of them on a
    20 A carport sub-board."""
    data: dict = {
        "server": {"host": "127.0.0.1", "port": 0, "security_profile": 1, "heartbeat_interval": 60},
        "storage": {"database": database},
        "organisations": [{"id": "solbacken", "name": "BRF Solbacken", "email": "board@solbacken.example"}],
        "meters": [{"serial": METER, "pin": "12345678", "organisation": "solbacken", "variant": "home",
                    "source": "modbus", "host": "127.0.0.1", "port": meter_port, "unit": 1, "profile": "ampguard",
                    "poll_interval": 1.0}],
        "chargers": [{"id": cid, "password": secrets.token_hex(12), "organisation": "solbacken", "phases": phases,
                      "phase_rotation": rotation, "max_current": max_a, "offline_current": 6,
                      "offline_phase": "RST".index(rotation[0]) + 1}
                     for cid, phases, rotation, max_a, _, _ in CHARGERS],
        "load_balancers": [{"id": GROUP, "name": "Solbacken garage", "description": "Garage under house B",
                            "organisation": "solbacken", "meter": METER, "chargers": [c[0] for c in CHARGERS],
                            "phases": [1, 2, 3], "chargers_in_measurement": True, "supply_max_current": FUSE,
                            "max_current_online": FUSE, "max_current_offline": 16, "min_current": 6}],
        "circuits": [{"id": SUB_BOARD, "max_current": SUB_FUSE, "chargers": [c[0] for c in CHARGERS[3:]]}],
    }
    if http_port is not None:
        data["http"] = {"host": "127.0.0.1", "port": http_port, "token": secrets.token_urlsafe(24)}
    return parse_config(data, "<csms demo>")


def demo_scenario() -> Scenario:
    """Cars arrive, the base load steps up (dinner) and back, the meter drops out and returns, a car leaves."""

    def setup(sim: Simulation, t0: float) -> Plan:
        site = sim.sites[METER]
        steps = Steps(((t0 + STEP_AT, (20.0, 16.0, 22.0)), (t0 + 75, (9.0, 7.0, 10.0))), before=(9.0, 7.0, 10.0))
        site.loads.append(Noise(steps, 0.8, sim.clock))
        plan = Plan()
        for i, (cid, _, _, _, car_max, car_phases) in enumerate(CHARGERS):
            car = EVModel(max_current=car_max, phases=car_phases, capacity_kwh=60, soc_start=0.3 + 0.1 * i,
                          ramp_delay=1.0, ramp_time=1.5, name=f"car {i + 1}")
            plan.at(3.0 + 5.0 * i, f"a car ({car_phases}-phase, {car_max:g} A) arrives at {cid}",
                    lambda s, c=cid, ev=car: s.fleet[c].plug_in(ev))
        plan.at(STEP_AT, "base load steps up (dinner): about +11 A per phase", lambda s: None)
        plan.at(55.0, "the Amp Guard goes silent", lambda s: s.meters[METER].go_offline())
        plan.at(68.0, "the Amp Guard is back", lambda s: s.meters[METER].go_online())
        plan.at(75.0, "base load steps back down", lambda s: None)
        plan.at(85.0, f"the car at {CHARGERS[1][0]} leaves", lambda s: s.fleet[CHARGERS[1][0]].unplug())
        return plan

    return Scenario("demo", "the csms demo script", setup)


@dataclass
class Stats:
    """What the headless summary reports, gathered on every step.

    The scenario steps the base load up on purpose: the few seconds until the balancer has cut back (a reading,
    the EVs' response) are reported apart from the rest. Fuse use is counted while cars want more than they get
    and the meter is fresh (while it is silent the group deliberately keeps to max_current_offline).
    """

    fuse: float
    samples: int = 0
    peak: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    over_fuse_s: float = 0.0
    step_peak: float = 0.0
    step_over_fuse_s: float = 0.0
    utilisation: list[float] = field(default_factory=list)
    charging: list[float] = field(default_factory=list)
    last_t: float | None = None
    #: Per building phase, the most the chargers on the sub-board drew together, and the time above its fuse.
    sub_peak: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    over_sub_s: float = 0.0

    def add_sub_board(self, phases: list[float]) -> None:
        self.sub_peak = [max(p, a) for p, a in zip(self.sub_peak, phases)]
        if max(phases) > SUB_FUSE and self.last_t is not None:
            self.over_sub_s += 0.5  # the step's period

    def add(self, t: float, phases: tuple[float, float, float], constrained: bool, in_step: bool,
            charging_share: float | None) -> None:
        dt = 0.0 if self.last_t is None else t - self.last_t
        self.last_t = t
        self.samples += 1
        over = max(phases) > self.fuse
        if in_step:
            self.step_peak = max(self.step_peak, max(phases))
            self.step_over_fuse_s += dt if over else 0.0
        else:
            self.peak = [max(p, a) for p, a in zip(self.peak, phases)]
            self.over_fuse_s += dt if over else 0.0
        if constrained:
            self.utilisation.append(max(phases) / self.fuse)
        if charging_share is not None:
            self.charging.append(charging_share)


def sub_board_currents(app: CentralSystemApp, sim: Simulation) -> list[float]:
    """What the chargers on the sub-board draw together per building phase (their L1..L3 mapped by rotation)."""
    out = [0.0, 0.0, 0.0]
    on = set(app.cfg.circuit(SUB_BOARD).chargers)  # type: ignore[union-attr]
    for cp in sim.fleet:
        if cp.id in on:
            for phase, amps in zip(charger_phases(app.cfg.charger(cp.id)), cp.draw()):  # type: ignore[arg-type]
                out[phase - 1] += amps
    return out


def render(app: CentralSystemApp, sim: Simulation, events: list[str], started: float) -> Group:
    site = sim.sites[METER]
    phases = site.phase_currents()
    decision = app.balancer.decision(GROUP)
    state = app.meter_states.get(METER)
    meter_line = f"Amp Guard {METER}: {state.status} ({state.reason})" if state else f"Amp Guard {METER}: starting"
    head = Table.grid(padding=(0, 2))
    head.add_row(Text(f"csms demo  ·  {time.time() - started:5.0f} s  ·  group '{GROUP}'  ·  fuse {FUSE:g} A",
                      style="bold"), Text(meter_line, style="green" if state and state.status == "online" else "yellow"))
    phase_table = Table(title="Building phases (what flows through the main fuse)", expand=True)
    for col in ("phase", "current", "", "fuse", "EV budget"):
        phase_table.add_column(col, justify="right" if col not in ("", "phase") else "left")
    for i, amps in enumerate(phases):
        p = i + 1
        width = 30
        filled = max(0, min(width, int(round(amps / FUSE * width))))
        colour = "red" if amps > FUSE else "yellow" if amps > FUSE * 0.9 else "green"
        bar = Text("█" * filled + "·" * (width - filled), style=colour)
        budget = f"{decision.budget.get(p, 0):.1f} A" if decision else "-"
        phase_table.add_row(f"L{p}", f"{amps:5.1f} A", bar, f"{FUSE:g} A", budget)
    load = decision.circuits.get(SUB_BOARD) if decision else None
    for i, amps in enumerate(sub_board_currents(app, sim)):
        budget = f"{load.budget.get(i + 1, 0):.1f} A" if load else "-"
        phase_table.add_row(f"{SUB_BOARD} L{i + 1}", f"{amps:5.1f} A", "", f"{SUB_FUSE:g} A", budget)
    chargers = Table(title="Chargers", expand=True)
    for col in ("charger", "ocpp", "status", "limit", "draw (its L1/L2/L3)", "control", "why"):
        chargers.add_column(col, overflow="fold" if col == "why" else "ellipsis")
    for cp in sim.fleet:
        lim = decision.limits.get(cp.id) if decision else None
        channel = app.delivery.channels.get(cp.id)
        draw = "/".join(f"{a:.0f}" for a in cp.draw())
        chargers.add_row(cp.id, cp.config.version.removeprefix("ocpp"), cp.connectors[1].status,
                         f"{lim.limit:.1f} A" if lim else "-", draw,
                         channel.control.value if channel else "-", lim.reason if lim else "")
    log_text = Text("\n".join(events[-6:]) or "waiting for the first event", style="dim")
    return Group(head, phase_table, chargers, Panel(log_text, title="scenario"))


async def run_demo(args: argparse.Namespace) -> int:
    tmp = None
    if args.database:
        database = args.database
    else:
        tmp = tempfile.TemporaryDirectory(prefix="csms-demo-")
        database = str(Path(tmp.name) / "demo.sqlite")
    http_port = None
    if args.http_port is not None:
        http_port = args.http_port or free_port()
    cfg = demo_config(database, free_port(), http_port if "http" in SiteConfig.model_fields else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console = Console()
    events: list[str] = []
    started = time.time()
    sim = Simulation.from_config(cfg, versions="mixed")
    try:
        await sim.start_meters()  # the Amp Guard is up before the gateway first polls it
        async with CentralSystemApp(cfg) as app:
            await sim.fleet.start(f"ws://127.0.0.1:{app.port}{cfg.server.path_prefix}")
            try:
                console.print(f"[bold]csms demo[/bold]: central system on ws://127.0.0.1:{app.port}/ocpp, "
                              f"Amp Guard on Modbus TCP 127.0.0.1:{cfg.meters[0].port}, database {database}")
                url = _dashboard_url(cfg, app)
                if url:
                    console.print(f"dashboard: {url}")
                stats = await _play(app, sim, args, stop, events, started, console)
            finally:
                await sim.fleet.stop()
    finally:
        await sim.stop()
        if tmp is not None:
            tmp.cleanup()
    _summary(console, stats, events)
    return 0


def _dashboard_url(cfg: SiteConfig, app: CentralSystemApp) -> str | None:
    http = getattr(cfg, "http", None)
    if http is None:
        return None
    try:
        from csms.web import dashboard_url
    except ImportError:
        return None
    return dashboard_url(http.host, getattr(app, "http_port", http.port), http.token)


async def _play(app: CentralSystemApp, sim: Simulation, args: argparse.Namespace, stop: asyncio.Event,
                events: list[str], started: float, console: Console) -> Stats:
    player = ScenarioPlayer(sim, demo_scenario())
    stats = Stats(FUSE)

    def step() -> None:
        due = list(player.pending)
        elapsed = player.tick()
        for _, what, _ in due[: len(due) - len(player.pending)]:
            events.append(f"{elapsed:5.0f} s  {what}")
        site = sim.sites[METER]
        phases = site.phase_currents()
        decision = app.balancer.decision(GROUP)
        fresh = decision is not None and decision.meter_fresh
        plugged = [c.connectors[1] for c in sim.fleet if c.connectors[1].ev is not None]
        constrained = fresh and any(
            conn.offered + 0.5 < conn.ev.max_current and conn.offered + 0.5 < conn.ev.acceptance() for conn in plugged)
        in_step = STEP_AT <= elapsed < STEP_AT + STEP_GRACE
        # Every car that can charge is charging: the share of plugged-in cars with current, once they have had
        # time to start (the demo's cars start 1 s after being allowed and ramp within 1.5 s).
        wanting = [conn for conn in plugged if not conn.ev.full]
        share = (sum(1 for conn in wanting if conn.ev.current_at(sim.clock.now()) > 1.0) / len(wanting)
                 if wanting and fresh and elapsed > 30 else None)
        stats.add(sim.clock.now(), phases, constrained, in_step, share)
        stats.add_sub_board(sub_board_currents(app, sim))

    deadline = None if args.duration is None else time.monotonic() + args.duration
    live = None if args.no_ui else Live(render(app, sim, events, started), console=console, refresh_per_second=4,
                                        transient=False)
    with live if live is not None else contextlib.nullcontext():
        while not stop.is_set():
            step()
            if live is not None:
                live.update(render(app, sim, events, started))
            if deadline is not None and time.monotonic() >= deadline:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await stop.wait()
    return stats


def _summary(console: Console, stats: Stats, events: list[str]) -> None:
    table = Table(title="csms demo summary")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for i, peak in enumerate(stats.peak):
        table.add_row(f"peak L{i + 1} vs fuse (outside the base-load step)", f"{peak:.1f} A / {stats.fuse:g} A")
    table.add_row("time above the fuse (outside the base-load step)", f"{stats.over_fuse_s:.1f} s")
    for i, peak in enumerate(stats.sub_peak):
        table.add_row(f"{SUB_BOARD} sub-board: peak L{i + 1} vs its fuse", f"{peak:.1f} A / {SUB_FUSE:g} A")
    table.add_row(f"{SUB_BOARD} sub-board: time above its fuse", f"{stats.over_sub_s:.1f} s")
    table.add_row(f"the base-load step: peak, time above the fuse (first {STEP_GRACE:g} s)",
                  f"{stats.step_peak:.1f} A, {stats.step_over_fuse_s:.1f} s")
    if stats.utilisation:
        mean = sum(stats.utilisation) / len(stats.utilisation)
        table.add_row("fuse use while cars wanted more and the meter was fresh (busiest phase / fuse)", f"{mean:.0%}")
    if stats.charging:
        table.add_row("cars that want current and get it (mean share)",
                      f"{sum(stats.charging) / len(stats.charging):.0%}")
    table.add_row("samples", str(stats.samples))
    console.print(table)
    for line in events:
        console.print(f"  {line}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the central system against a simulated site, with a live view")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--no-ui", action="store_true", help="no live view; print a summary at the end")
    p.add_argument("--http-port", type=int, nargs="?", const=0, default=0,
                   help="port of the operator dashboard (default: a free port)")
    p.add_argument("--database", default=None, help="keep the demo's SQLite database here (default: a temporary file)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if args.no_ui and args.duration is None:
        args.duration = 60.0
    try:
        return asyncio.run(run_demo(args))
    except OSError as exc:
        print(f"csms demo: {exc}", file=sys.stderr)
        return 1
