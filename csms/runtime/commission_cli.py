"""``csms commission --config FILE --group ID``: the commissioning check, run by the central system.

The check needs the live chargers and the meter, so it runs inside ``csms serve``; this command starts it
through the operator API (:mod:`csms.runtime.api_client`, the operator token), follows it until it ends and
prints the report. Exit 0: the wiring matches the config; 1: findings, a charger that could not be tested, or
the check failed; 2: usage (bad config, no [http], unknown group).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from urllib.parse import quote

from csms.commissioning.report import render
from csms.runtime.api_client import Api, CliFailure, add_api_arguments, fail
from csms.runtime.cli_args import positive_float

#: Seconds between two looks at a running check.
POLL = 1.0


def cmd_commission(args: argparse.Namespace) -> int:
    try:
        api = Api.from_args(args)
        if not any(g.id == args.group for g in api.cfg.load_balancers):
            known = ", ".join(g.id for g in api.cfg.load_balancers) or "none"
            raise CliFailure(2, f"{args.config}: no load_balancers entry with id {args.group!r} (groups: {known})")
        status, body = api.request("POST", f"/api/groups/{quote(args.group, safe='')}/commission")
        if status != 202:
            raise CliFailure(2 if status in (404, 422) else 1, body.get("error") or f"HTTP {status}")
        path = body["report"]
        print(f"csms commission: check {body['id']} of group {args.group} started; every other charger is held "
              "while one at a time is released (about 10 s per charger with a car)", file=sys.stderr, flush=True)
        deadline = time.monotonic() + args.timeout
        while True:
            status, row = api.request("GET", path)
            if status != 200:
                raise CliFailure(1, row.get("error") or f"HTTP {status}")
            if row["state"] != "running":
                break
            if time.monotonic() > deadline:
                raise CliFailure(1, f"the check is still running after {args.timeout:.0f} s; GET {path} shows it")
            time.sleep(POLL)
    except CliFailure as exc:
        return fail("commission", exc.code, str(exc))
    report = row.get("report") or {}
    if args.json:
        print(json.dumps(row, indent=2))
    elif row["state"] != "done":
        print(f"check {row['id']} {row['state']}: {report.get('error', '')}")
    else:
        print(render(report))
    return 0 if row["state"] == "done" and report.get("ok") else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("commission", help="prove the site is wired as the config says (clamps, phases, rotations) "
                                          "by releasing one charger at a time; exit 0 all match, 1 findings")
    add_api_arguments(p)
    p.add_argument("--group", required=True, help="the load_balancers id to check")
    p.add_argument("--timeout", type=positive_float, default=600.0, help="seconds to wait for the check (default 600)")
    p.add_argument("--json", action="store_true", help="print the stored report as JSON")
    p.set_defaults(func=cmd_commission)
