"""``csms token list|show|put|block|unblock|delete``: the operator's id tokens from a shell.

Like ``csms station``, it calls the running central system's API (``/api/tokens``) with the operator token
(:mod:`csms.runtime.api_client`), so a change is checked, stored, logged and in force exactly as from any
other client. Exit codes: 0 done; 1 the central system cannot be reached or failed; 2 bad usage or config
(a field the API refused, named; an unknown token or organisation; a missing or wrong token).
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import quote, urlencode

from csms.runtime.api_client import TOKEN_ENV, Api, CliFailure, add_api_arguments, fail

#: The options of ``put``: (flag, dest in the JSON body, help).
PUT_OPTIONS = (("--status", "status", "Accepted (default) or Blocked"),
               ("--expiry", "expiry", "ISO 8601 date and time (UTC without a zone); absent: never expires"),
               ("--parent", "parent", "group id (1.6 parentIdTag, 2.0.1 groupIdToken), at most 20 characters"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="list or change id tokens (RFID cards) of the running central system",
                       description="Lists and changes id tokens through the running central system's API "
                                   "(changes need [http] operator_token).")
    actions = p.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every id token in force")
    listing.add_argument("--organisation", help="only this organisation's")
    for name, text in (("show", "one id token"), ("put", "create or replace an id token"),
                       ("block", "refuse an id token from now on"), ("unblock", "accept a blocked id token again"),
                       ("delete", "forget an id token")):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("organisation", help="the organisation's id, as in the site config")
        a.add_argument("token", help="the id token (the card's UID)")
        if name == "put":
            for flag, dest, help_text in PUT_OPTIONS:
                a.add_argument(flag, dest=dest, help=help_text)
            a.add_argument("--concurrent", action="store_true", help="may run more than one transaction at once")
    for a in actions.choices.values():
        add_api_arguments(a)
        a.add_argument("--json", action="store_true", help="print the API's whole answer as JSON")
        a.set_defaults(func=cmd_token)


def cmd_token(args: argparse.Namespace) -> int:
    try:
        api = Api.from_args(args, reads_only=args.token_action in ("list", "show"))
        status, answer = api.request(*_request(args))
    except CliFailure as exc:
        return fail("token", exc.code, str(exc))
    if status != 200:
        message = answer.get("error", f"HTTP {status}")
        field = answer.get("field")
        flag = next((f for f, dest, _ in PUT_OPTIONS if dest == field), None)
        if flag is not None:
            message += f" (option {flag})"
        if status == 401:
            message += f" (check [http] operator_token or {TOKEN_ENV})"
        return fail("token", 2 if status in (400, 401, 403, 404) else 1, message)
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.token_action == "list":
        for t in answer["tokens"]:
            print(_line(t))
    elif args.token_action == "delete":
        print(f"{args.organisation} {args.token}: deleted")
    else:
        print(_line(answer))
    return 0


def _request(args: argparse.Namespace) -> tuple[str, str, Any]:
    if args.token_action == "list":
        query = f"?{urlencode({'organisation': args.organisation})}" if args.organisation else ""
        return "GET", f"/api/tokens{query}", None
    path = f"/api/tokens/{quote(args.organisation, safe='')}/{quote(args.token, safe='')}"
    if args.token_action == "show":
        return "GET", path, None
    if args.token_action == "put":
        body = {dest: getattr(args, dest) for _, dest, _ in PUT_OPTIONS if getattr(args, dest) is not None}
        return "PUT", path, {**body, "concurrent": args.concurrent}
    if args.token_action == "delete":
        return "DELETE", path, None
    return "POST", f"{path}/{args.token_action}", None


def _line(t: dict[str, Any]) -> str:
    extra = [f"expires {t['expiry']}" if t.get("expiry") else "", f"parent {t['parent']}" if t.get("parent") else "",
             "concurrent" if t.get("concurrent") else "", f"({t['source']})" if t.get("source") else ""]
    return " ".join([t["organisation"], t["token"], t["status"], *[e for e in extra if e]])
