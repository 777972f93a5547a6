"""``csms reload --config FILE``: asks the running central system to read its config file again.

Like ``csms station``, it acts through the write API (``POST /api/config/reload`` with the operator token), so
the reload is validated, applied, logged and stored by the running process itself, which reloads the file it
was started with. FILE tells where that API is ([http]) and is checked here first with the same code as
``check-config``: when it is broken so badly that even its [http] section cannot be read, nothing is sent and
the problems are printed; otherwise the central system is asked, refuses the file and records the refusal.

Exit codes: 0 applied; 1 refused (every problem printed as ``FILE: field: message``), or the central system
cannot be reached; 2 bad usage (no [http] section, no operator token, a token the server refused).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from pydantic import ValidationError

from csms.config import ConfigError, HttpConfig, SiteConfig, load_config
from csms.runtime.api_client import TOKEN_ENV, Api, CliFailure, add_api_arguments, address_of, endpoint, fail


def _http_section(path: str) -> HttpConfig | None:
    """The [http] section of a file that failed validation, when that section on its own is valid."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        return HttpConfig.model_validate(data["http"])
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError, KeyError, TypeError,
            ValidationError):
        return None


def cmd_reload(args: argparse.Namespace) -> int:
    path = args.config
    try:
        http = load_config(path).http
    except ConfigError as err:
        http = _http_section(path)
        if http is None:
            for line in err.lines():
                print(line, file=sys.stderr)
            why = "cannot be read" if not Path(path).is_file() else "is broken past its [http] section"
            return fail("reload", 1, f"refused here: the file {why}, so csms serve was not asked; the config in "
                                     "force stays")
    if http is None:
        return fail("reload", 2, f"{path} has no [http] section: the central system's API is off")
    token = os.environ.get(TOKEN_ENV) or http.operator_token
    if not token:
        return fail("reload", 2, f"no operator token: set [http] operator_token in {path} or {TOKEN_ENV}")
    cfg = SiteConfig(http=http)
    try:
        address = endpoint(cfg) if args.url is None else address_of(args.url)
        status, answer = Api(cfg, address, token).request("POST", "/api/config/reload", timeout=60)
    except CliFailure as exc:
        return fail("reload", exc.code, str(exc))
    version = answer.get("config") or {}
    if status == 200:
        changes = answer.get("changes") or ["nothing changed"]
        print(f"{version.get('path') or path}: applied, config version {version.get('version')}")
        for line in changes:
            print(f"  {line}")
        return 0
    if status == 422:
        for line in answer.get("problems") or []:
            print(line, file=sys.stderr)
        return fail("reload", 1, f"refused; config version {version.get('version')} stays in force")
    code = 2 if status in (401, 403) else 1
    return fail("reload", code, f"HTTP {status}: {answer.get('error', answer)}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reload", help="make the running central system read its config file again (whole or "
                                      "not at all)")
    add_api_arguments(p)
    p.set_defaults(func=cmd_reload)
