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
from typing import Any
from urllib.parse import quote

from csms.bus.operator_messages import answer_within
from csms.operations.catalogue import COMMANDS
from csms.runtime.api_client import TOKEN_ENV, Api, CliFailure, add_api_arguments, fail

#: Seconds the CLI waits beyond the longest the API may take to answer (it answers 504 by then).
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
    "get-base-report": [("--report", str, "report", "FullInventory (default), ConfigurationInventory or "
                                                    "SummaryInventory")],
    "send-local-list": [("--full", bool, "full", "send the whole list, not only what changed")],
    "get-local-list-version": [],
    "update-firmware": [("--location", str, "location", "URL of the firmware image (required)"),
                        ("--retrieve-date", str, "retrieve_date", "when to download: ISO 8601 with a time zone or "
                                                                  "epoch seconds (default: now)"),
                        ("--retries", int, "retries", "download attempts after a failure"),
                        ("--retry-interval", int, "retry_interval", "seconds between them"),
                        ("--signing-certificate", str, "signing_certificate", "2.0.1: PEM certificate of the signer"),
                        ("--signature", str, "signature", "2.0.1: the image's signature (base64)")],
    "get-logs": [("--location", str, "location", "URL to upload to (default: this central system's upload "
                                                 "endpoint)"),
                 ("--log-type", str, "log_type", "diagnostics (default) or security (2.0.1 only)"),
                 ("--since", str, "since", "oldest entry wanted: ISO 8601 with a time zone or epoch seconds"),
                 ("--until", str, "until", "newest entry wanted"),
                 ("--retries", int, "retries", "upload attempts after a failure"),
                 ("--retry-interval", int, "retry_interval", "seconds between them")],
    "reserve": [("--id-token", str, "id_token", "id token to reserve for (required); its group may use it too"),
                ("--connector", int, "connector", "1.6 connector / 2.0.1 EVSE (default 0: any)"),
                ("--expires-in", int, "expires_in", "seconds until it expires (default 900)"),
                ("--expiry", str, "expiry", "when it expires, ISO 8601 (instead of --expires-in)")],
    "cancel-reservation": [("--reservation-id", int, "reservation_id", "the reservation to cancel (required)")],
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
            elif kind is bool:
                c.add_argument(flag, dest=dest, action="store_true", default=None, help=text)
            else:  # required where the command's arguments require it, so that usage shows it so
                required = spec.arguments.model_fields[dest].is_required()
                c.add_argument(flag, type=kind, dest=dest, help=text, required=required)
        add_api_arguments(c)
        c.add_argument("--json", action="store_true", help="print the API's whole answer as JSON")
        c.set_defaults(func=cmd_station, body_fields=[dest for _, _, dest, _ in OPTIONS[name]])


def cmd_station(args: argparse.Namespace) -> int:
    try:
        api = Api.from_args(args)
        body = {f: getattr(args, f) for f in args.body_fields if getattr(args, f) is not None}
        path = f"/api/stations/{quote(args.station_id, safe='')}/commands/{args.station_command}"
        # A command may make two calls, and through a cluster node wait in a queue on each node on the way.
        status, answer = api.request("POST", path, body, timeout=answer_within(api.cfg.server.call_timeout) + SLACK)
    except CliFailure as exc:
        return fail("station", exc.code, str(exc))
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
    field = str(answer.get("field") or "").partition(".")[0]  # "keys.2": the third --key
    flag = next((f for f, _, dest, _ in OPTIONS.get(args.station_command, []) if dest == field), None)
    if flag is not None:
        message += f" (option {flag})"
    if status in (400, 404, 401, 403):
        if status == 401:
            message += f" (check [http] operator_token or {TOKEN_ENV})"
        return fail("station", 2, message)
    return fail("station", 1, f"{args.station_id}: {message}")  # the station's failure: name it
