"""``csms`` command line: serve, check-config, reload, stations, transactions, station (+ plugin commands such as demo)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import sqlite3
import sys
from datetime import datetime
from importlib.metadata import entry_points

from rich.console import Console
from rich.table import Table

from csms.config import ConfigError, SiteConfig, config_warnings, load_config, read_config
from csms.storage.migrations import SchemaError
from csms.runtime.cli_args import positive_int


def _load(path: str) -> SiteConfig | None:
    try:
        return load_config(path)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return None


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("ocpp").setLevel(logging.WARNING)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    for w in config_warnings(cfg):
        print(f"{args.config}: warning: {w.path}: {w.message}")
    print(f"{args.config}: OK ({len(cfg.organisations)} organisations, {len(cfg.meters)} meters, "
          f"{len(cfg.chargers)} chargers, {len(cfg.load_balancers)} load balancer groups)")
    return 0


async def _serve_with_frozen_heap(serving):
    from csms.runtime.gcpolicy import FrozenHeap

    async with FrozenHeap():  # keeps full garbage collections from pausing every station (see csms.runtime.gcpolicy)
        return await serving


def _node_overrides(cfg: SiteConfig, args: argparse.Namespace) -> SiteConfig:
    """What differs between the nodes sharing one site file: the node's name and its OCPP port."""
    if args.node is not None:
        cfg = cfg.model_copy(update={"cluster": cfg.cluster.model_copy(update={"node": args.node})})
    if args.port is not None:
        cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"port": args.port})})
    if args.http_port is not None and cfg.http is not None:
        cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"port": args.http_port})})
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        cfg, digest = read_config(args.config)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2
    cfg = _node_overrides(cfg, args)
    problems: list[str] = []
    if args.role != "all":  # the scaled-out roles' module loads psycopg and the bus: one process needs neither
        from csms.runtime.roles import role_problems

        problems = role_problems(cfg, args.role)
    for line in problems:
        print(f"{args.config}: {line}", file=sys.stderr)
    if problems:
        return 2
    _setup_logging(args.log_level)
    for w in config_warnings(cfg):
        logging.getLogger("csms").warning("%s: %s: %s", args.config, w.path, w.message)
    from csms.runtime.app import serve_until_signalled
    from csms.ocpp.schemas import preload

    loop_factory = None
    if getattr(args, "uvloop", False):
        try:
            import uvloop
        except ImportError:
            print("csms serve --uvloop: uvloop is not installed (pip install 'fuse-guard-csms[fast]')", file=sys.stderr)
            return 2
        loop_factory = uvloop.new_event_loop
    preload()  # every OCPP schema compiled before the first station connects
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(_serve_with_frozen_heap(serve_until_signalled(cfg, args.config, digest, args.role)))
    except sqlite3.DatabaseError as exc:  # e.g. a SQLite file damaged past its header (check_files reads only that)
        print(f"{args.config}: storage.database: cannot open {cfg.storage.database!r}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if cfg.storage.url is not None and type(exc).__module__.partition(".")[0] == "psycopg":
            # PostgreSQL unreachable or refusing at start (the URL's password is never shown)
            print(f"{args.config}: storage.url: cannot use {cfg.storage.shown}: {exc}", file=sys.stderr)
            return 2
        if not isinstance(exc, OSError):
            raise
        hint = ""
        if exc.errno == errno.EADDRINUSE and "[http]" not in str(exc):
            hint = f" (is another process using {cfg.server.host}:{cfg.server.port}? set [server] port)"
        print(f"csms serve: {exc}{hint}", file=sys.stderr)
        return 1


def _ts(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def _open_db(cfg: SiteConfig):
    from pathlib import Path

    from csms.storage.database import open_database

    if cfg.storage.url is not None:
        from csms.storage.postgres import connect

        return connect(cfg.storage.url)
    if not Path(cfg.storage.database).exists():
        return None
    return open_database(cfg.storage.database)


def _rows(config: str, cfg: SiteConfig, sql: str, params: list | None = None) -> list | None:
    """The rows of ``sql`` from the stored data (none before the database exists); None, with the problem
    printed naming the config's field, when the database cannot be read (the URL's password is never shown)."""
    try:
        db = _open_db(cfg)
        return list(db.query(sql, params or [])) if db else []
    except sqlite3.DatabaseError as exc:
        print(f"{config}: storage.database: cannot read {cfg.storage.database!r}: {exc}", file=sys.stderr)
    except Exception as exc:
        if cfg.storage.url is None or type(exc).__module__.partition(".")[0] != "psycopg":
            raise
        print(f"{config}: storage.url: cannot use {cfg.storage.shown}: {exc}", file=sys.stderr)
    return None


def _console() -> Console:
    """On a terminal, its width; piped to a file or another program, wide enough that no id is cut short."""
    return Console() if sys.stdout.isatty() else Console(width=1000)


def cmd_stations(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    rows = _rows(args.config, cfg, "SELECT * FROM stations ORDER BY id")
    if rows is None:
        return 2
    table = Table(title=f"Stations ({cfg.storage.shown})")
    for col in ("id", "version", "vendor", "model", "firmware", "connected", "last boot", "last connected"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id"], r["version"] or "", r["vendor"] or "", r["model"] or "", r["firmware_version"] or "",
                      "yes" if r["connected"] else "no", _ts(r["last_boot"]), _ts(r["last_connected"]))
    _console().print(table)
    return 0


def cmd_transactions(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    if cfg is None:
        return 2
    rows = _rows(args.config, cfg, "SELECT * FROM transactions ORDER BY started_at DESC LIMIT ?", [args.limit])
    if rows is None:
        return 2
    table = Table(title=f"Transactions ({cfg.storage.shown})")
    for col in ("station", "transaction", "version", "connector", "id token", "started", "stopped", "kWh", "reason"):
        table.add_column(col)
    for r in rows:
        kwh = ""
        if r["meter_stop_wh"] is not None and r["meter_start_wh"] is not None:
            kwh = f"{(r['meter_stop_wh'] - r['meter_start_wh']) / 1000:.2f}"
        table.add_row(r["station_id"], r["transaction_id"], r["version"] or "", str(r["connector_id"]),
                      r["id_token"] or "", _ts(r["started_at"]), _ts(r["stopped_at"]) or "running", kwh,
                      r["stop_reason"] or "")
    _console().print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csms", description="OCPP central system with dynamic load balancing")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the central system")
    p.add_argument("--config", required=True, help="operator config (TOML)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--uvloop", action="store_true", help="run on the uvloop event loop (optional dependency)")
    p.add_argument("--role", choices=["all", "gateway", "controller"], default="all",
                   help="all: one process does everything (default); gateway: hold the stations' OCPP connections; "
                        "controller: balance the groups it leads (both need [mqtt] and a PostgreSQL storage.url)")
    p.add_argument("--node", help="this node's name on the bus (overrides [cluster] node)")
    p.add_argument("--port", type=int, help="the OCPP port (overrides [server] port; gateways on one host)")
    p.add_argument("--http-port", type=int, help="the operator view's port (overrides [http] port)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-config", help="validate an operator config and print every problem")
    p.add_argument("config", help="operator config (TOML)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("stations", help="list stored stations")
    p.add_argument("--config", required=True)
    p.set_defaults(func=cmd_stations)

    p = sub.add_parser("transactions", help="list stored transactions, newest first")
    p.add_argument("--config", required=True)
    p.add_argument("--limit", type=positive_int, default=100, help="at most this many, newest first (default 100)")
    p.set_defaults(func=cmd_transactions)

    from csms.runtime.reload_cli import register as register_reload
    from csms.runtime.station_cli import register as register_station
    register_reload(sub)
    from csms.runtime.token_cli import register as register_token
    register_station(sub)
    register_token(sub)
    from csms.runtime.commission_cli import register as register_commission
    register_commission(sub)

    # Commands that live outside csms/ (e.g. `demo`, which wires in the simulators) register here.
    for ep in entry_points(group="csms.commands"):
        try:
            register = ep.load()
        except ImportError as exc:
            print(f"csms: command {ep.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SchemaError as exc:  # a database of a newer build (or not ours): the message names it and the fix
        print(f"csms {args.command}: storage: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (``csms station ... | head -1``): what was asked has been done, and
        # the rest of the output has nowhere to go. Exit as a Unix tool killed by SIGPIPE does, without a
        # traceback, and keep the interpreter's final flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
