"""``simulate`` command line: run a site's chargers and meters against a running central system.

    simulate site --config FILE [--scenario NAME] [--duration S] [--versions mixed|ocpp1.6|ocpp2.0.1]
                  [--misbehave CHARGER_ID:KNOB ...] [--fault FAULT ...] [--seed N]
    simulate scenarios
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import sys

from csms.config import ConfigError, load_config
from simulators.charger_config import SimChargerConfig
from simulators.clock import SimClock
from simulators.misbehaviour import KNOBS, Misbehaviour, parse_knob
from simulators.scenarios import SCENARIOS, get_scenario, run_scenario
from simulators.simulation import Simulation, central_system_url
from simulators.wiring_faults import FAULTS, parse_faults

log = logging.getLogger("simulate")


def _status_line(sim: Simulation) -> str:
    snap = sim.snapshot()
    parts = []
    for serial, m in snap["meters"].items():
        state = "" if m["online"] else " OFFLINE"
        parts.append(f"{serial}{state} {'/'.join(f'{a:.1f}' for a in m['building_a'])} A (fuse {m['fuse_a']:.0f})")
    for cid, c in snap["chargers"].items():
        link = "" if c["connected"] else "!"
        parts.append(f"{link}{cid} {c['status'][0] or '-'} {'/'.join(f'{a:.0f}' for a in c['draw_a'])}")
    return " | ".join(parts)


class UsageError(ValueError):
    """A command-line argument that cannot be used: exit 2, as argparse's own refusals."""


async def _run_site(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    url = args.url or central_system_url(cfg)
    scenario = get_scenario(args.scenario)
    knobs: dict[str, list[str]] = {}
    for item in args.misbehave:
        station, sep, knob = item.partition(":")
        if not sep or cfg.charger(station) is None:
            raise UsageError(f"--misbehave {item!r}: write CHARGER_ID:KNOB with a charger id from {args.config}")
        try:
            parse_knob(Misbehaviour(), knob)  # refused here, before anything starts
        except ValueError as exc:
            raise UsageError(f"--misbehave {item!r}: {exc}") from None
        knobs.setdefault(station, []).append(knob)

    try:
        faults = parse_faults(args.fault)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for cid in faults.rotations:
        if cfg.charger(cid) is None:
            raise UsageError(f"--fault {cid}:wired-rotation: no charger {cid!r} in {args.config}")

    def tweak(sc: SimChargerConfig) -> SimChargerConfig:
        mis = sc.misbehaviour
        for knob in knobs.get(sc.id, []):
            mis = parse_knob(mis, knob)
        return faults.tweak(dataclasses.replace(sc, misbehaviour=mis))

    sim = Simulation.from_config(cfg, SimClock(seed=args.seed), versions=args.versions, tweak=tweak)
    faults.apply(sim)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    last_print = [0.0]

    def report(s: Simulation) -> None:
        if s.clock.now() - last_print[0] >= args.print_every:
            last_print[0] = s.clock.now()
            print(_status_line(s), flush=True)

    print(f"simulate: {len(sim.fleet)} chargers -> {url}; {len(sim.meters)} meters; scenario {scenario.name} "
          f"(Ctrl+C stops)", flush=True)
    try:
        await sim.start(url)
        await run_scenario(sim, scenario, args.duration, stop, on_step=report)
    finally:
        await sim.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    for serial, site in sim.sites.items():
        over = site.overload_integral()
        peak = site.peak()
        print(f"{serial}: peak {'/'.join(f'{a:.1f}' for a in peak)} A, above the {site.fuse:.0f} A fuse "
              f"{'/'.join(f'{a:.0f}' for a in over)} A·s")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("websockets", "ocpp", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return asyncio.run(_run_site(args))
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"simulate site: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"simulate site: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl+C while stopping
        return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    for s in SCENARIOS.values():
        print(f"{s.name:15} {s.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simulate", description="Simulated chargers, cars and mains meters.")
    sub = p.add_subparsers(dest="command", required=True)
    site = sub.add_parser("site", help="run the chargers and meters of a site config against a central system")
    site.add_argument("--config", required=True, help="the operator's site TOML")
    site.add_argument("--scenario", default="steady", choices=sorted(SCENARIOS), help="what happens (default steady)")
    site.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl+C)")
    site.add_argument("--versions", default="mixed", choices=["mixed", "ocpp1.6", "ocpp2.0.1"],
                      help="OCPP version of the simulated chargers; mixed alternates in config order")
    site.add_argument("--url", help="central system base URL (default from [server]: ws://host:port/path_prefix)")
    site.add_argument("--misbehave", action="append", default=[], metavar="CHARGER_ID:KNOB",
                      help=f"make a charger misbehave (repeatable); knobs: {', '.join(KNOBS)}")
    site.add_argument("--fault", action="append", default=[], metavar="FAULT",
                      help=f"plant a wiring fault for `csms commission` to find (repeatable): {', '.join(FAULTS)}")
    site.add_argument("--seed", type=int, default=0, help="random seed for cars and load noise")
    site.add_argument("--print-every", type=float, default=5.0, help="seconds between status lines")
    site.add_argument("--log-level", default="warning")
    site.set_defaults(func=cmd_site)
    sc = sub.add_parser("scenarios", help="list the scenarios")
    sc.set_defaults(func=cmd_scenarios)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        return args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
