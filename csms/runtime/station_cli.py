"""``csms station <command> <station id> [--arg value ...] --config FILE``: the operator's commands from a shell.

It does not talk OCPP itself: it calls the running central system's write API (``POST
/api/stations/{id}/commands/{command}`` on the config's ``[http]`` host and port) with the operator token,
so the command goes through the station's live session, its timeout and the event log exactly as from any
other client. The token comes from ``[http] operator_token`` or, overriding it, from the environment
variable ``CSMS_OPERATOR_TOKEN`` (so it need not be in a file a shell user can read).

Exit codes: 0 the station accepted (or scheduled) it; 1 it refused, answered a CALLERROR, did not answer,
is not connected, or the central system cannot be reached; 2 bad usage or config (an argument the API
refused, an unknown station, a missing or wrong token).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from csms.config import ConfigError, SiteConfig, load_config
from csms.operations.catalogue import COMMANDS

TOKEN_ENV = "CSMS_OPERATOR_TOKEN"
#: Seconds the CLI waits beyond the server's call timeout (the server answers 504 by then).
SLACK = 5.0

#: argparse options per command: (flag, type, dest in the JSON body, help). ``--key`` repeats for reads.
OPTIONS: dict[str, list[tuple[str, Any, str, str]]] = {
    "remote-start": [("--id-token", str, "id_token", "id token to start for (required)"),
                     ("--connector", int, "connector", "1.6 connector / 2.0.1 EVSE (default: the station picks)")],
    "remote-stop": [("--transaction-id", str, "transaction_id", "transaction to stop (required)")],
    "reset": [("--type", str, "type", "soft (default: when idle) or hard (now)")],
    "unlock": [("--connector", int, "connector", "1.6 connector / 2.0.1 EVSE (required)"),
               ("--evse-connector", int, "evse_connector", "2.0.1 only: connector on that EVSE (default 1)")],
    "change-availability": [("--availability", str, "availability", "Operative or Inoperative (required)"),
                            ("--connector", int, "connector", "connector / EVSE; 0 (default) = whole station")],
    "clear-cache": [],
    "data-transfer": [("--vendor-id", str, "vendor_id", "vendor id (required)"),
                      ("--message-id", str, "message_id", "message id"),
                      ("--data", str, "data", "data (text)")],
    "trigger-message": [("--message", str, "message", "message to send, e.g. StatusNotification (required)"),
                        ("--connector", int, "connector", "connector / EVSE (default: the whole station)")],
    "get-configuration": [("--key", str, "keys", "1.6 key or 2.0.1 Component[@evse].Variable[:instance]; "
                                                  "repeat for more (1.6: none = all)")],
    "change-configuration": [("--key", str, "key", "1.6 key or 2.0.1 Component[@evse].Variable[:instance] "
                                                   "(required)"),
                             ("--value", str, "value", "new value (required)")],
    "set-charging-profile": [("--limit", float, "limit", "A per phase the charger may get at most (required; "
                                                         "below the group's min_current, 0 included: paused)"),
                             ("--until", str, "until", "when the cap ends, ISO 8601 with a zone "
                                                       "(e.g. 2026-12-01T18:00:00Z)"),
                             ("--duration", int, "duration", "seconds the cap lasts (instead of --until)"),
                             ("--connector", int, "connector", "the connector the balancer controls (default: "
                                                               "the charger as a whole)")],
    "clear-charging-profile": [("--connector", int, "connector", "as for set-charging-profile")],
    "get-composite-schedule": [("--connector", int, "connector", "1.6 connector / 2.0.1 EVSE; 0 (default) = "
                                                                 "the whole station"),
                               ("--duration", int, "duration", "seconds from now (default 3600)"),
                               ("--unit", str, "unit", "A or W (default: the station's choice)")],
    "get-charging-profiles": [("--connector", int, "connector", "EVSE (default: all)"),
                              ("--purpose", str, "purpose", "e.g. TxProfile, TxDefaultProfile"),
                              ("--stack-level", int, "stack_level", "stack level"),
                              ("--profile-id", int, "profile_ids", "profile id; repeat for more"),
                              ("--source", str, "sources", "limit source (EMS, Other, SO, CSO); repeat for more")],
}
#: Options that may repeat, collected into a list.
REPEATED = frozenset({"keys", "profile_ids", "sources"})


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``station`` and its per-command sub-commands to ``csms``'s parser."""
    p = sub.add_parser("station", help="send a command to a connected station (needs [http] operator_token)",
                       description="Sends a command to a station through the running central system's API.")
    commands = p.add_subparsers(dest="station_command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        c = commands.add_parser(name, help=spec.summary, description=spec.summary)
        c.add_argument("station_id", help="the station's id, as in the site config")
        for flag, kind, dest, text in OPTIONS[name]:
            if dest in REPEATED:
                c.add_argument(flag, type=kind, dest=dest, action="append", help=text)
            else:
                c.add_argument(flag, type=kind, dest=dest, help=text)
        c.add_argument("--config", required=True, help="the site config of the running central system (TOML)")
        c.add_argument("--json", action="store_true", help="print the API's whole answer as JSON")
        c.set_defaults(func=cmd_station, body_fields=[dest for _, _, dest, _ in OPTIONS[name]])


def _fail(code: int, message: str) -> int:
    print(f"csms station: {message}", file=sys.stderr)
    return code


def _endpoint(cfg: SiteConfig) -> str:
    assert cfg.http is not None
    host = cfg.http.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{cfg.http.port}"


def cmd_station(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2
    if cfg.http is None:
        return _fail(2, f"{args.config} has no [http] section: the central system's API is off")
    token = os.environ.get(TOKEN_ENV) or cfg.http.operator_token
    if not token:
        return _fail(2, f"no operator token: set [http] operator_token in {args.config} (and restart csms serve) "
                        f"or {TOKEN_ENV} in the environment")
    body = {f: getattr(args, f) for f in args.body_fields if getattr(args, f) is not None}
    address = _endpoint(cfg)
    url = (f"http://{address}/api/stations/{quote(args.station_id, safe='')}"
           f"/commands/{args.station_command}")
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-CSMS-Client": "cli"})
    try:
        with urllib.request.urlopen(request, timeout=cfg.server.call_timeout + SLACK) as response:
            status, answer = response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        status = exc.code
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = {"error": exc.reason}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return _fail(1, f"is csms serve running? could not connect to {address}: {reason}")
    except ValueError:
        return _fail(1, f"{address} did not answer JSON: is it the central system's [http] port?")
    return _report(args, status, answer)


def _report(args: argparse.Namespace, status: int, answer: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(answer, indent=2))
    if status == 200:
        if not args.json:
            print(f"{answer.get('station')} {answer.get('command')}: {answer.get('status')}")
            rest = {k: v for k, v in (answer.get("reply") or {}).items() if k != "status"}
            if rest:  # e.g. the keys read, a statusInfo saying why, a DataTransfer's data
                print(json.dumps(rest, indent=2))
        return 0 if answer.get("ok") else 1
    message = answer.get("error", f"HTTP {status}")
    flag = next((f for f, _, dest, _ in OPTIONS.get(args.station_command, []) if dest == answer.get("field")), None)
    if flag is not None:
        message += f" (option {flag})"
    if status in (400, 404, 401, 403):
        if status == 401:
            message += f" (check [http] operator_token or {TOKEN_ENV})"
        return _fail(2, message)
    return _fail(1, message)
