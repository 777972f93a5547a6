"""How the operator's CLI commands (``csms station``, ``csms token``) reach the running central system.

They do not act on their own: each calls the central system's HTTP API at the config's ``[http]`` host and
port with the operator token, so every change goes through the running process, its checks and its event
log exactly as from any other client. The token comes from ``[http] operator_token`` or, overriding it, from
the environment variable ``CSMS_OPERATOR_TOKEN`` (so it need not be in a file a shell user can read).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit
from typing import Any

from csms.config import ConfigError, SiteConfig, load_config
from csms.operations.port import CLIENT_HEADER

TOKEN_ENV = "CSMS_OPERATOR_TOKEN"


class CliFailure(Exception):
    """What to print and the exit code: 1 the central system refused or is unreachable, 2 bad usage/config."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Api:
    cfg: SiteConfig
    address: str
    token: str

    @classmethod
    def from_args(cls, args: argparse.Namespace, reads_only: bool = False) -> Api:
        """The API named by :func:`add_api_arguments`' ``--config`` and ``--url``."""
        return cls.from_config(args.config, args.url, reads_only)

    @classmethod
    def from_config(cls, path: str, url: str | None = None, reads_only: bool = False) -> Api:
        """The config's ``[http]`` API, or the one at ``url`` (a cluster node's own, say) with the config's
        operator token; a command that ``reads_only`` makes do with the read-only ``token`` when there is none."""
        try:
            cfg = load_config(path)
        except ConfigError as err:
            raise CliFailure(2, "\n".join(err.lines())) from None
        if cfg.http is None:
            raise CliFailure(2, f"{path} has no [http] section: the central system's API is off")
        token = os.environ.get(TOKEN_ENV) or cfg.http.operator_token or (cfg.http.token if reads_only else None)
        if not token:
            raise CliFailure(2, f"no operator token: set [http] operator_token in {path} (and restart csms serve) "
                                f"or {TOKEN_ENV} in the environment")
        return cls(cfg, endpoint(cfg) if url is None else address_of(url), token)

    def request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, dict[str, Any]]:
        """The HTTP status and the decoded JSON answer; :class:`CliFailure` when there is none."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.address}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json", CLIENT_HEADER: "cli"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:  # every answer of our API is JSON
                raise CliFailure(1, f"{self.address} answered HTTP {exc.code} {exc.reason} without JSON: is it the "
                                    "central system's [http] port (not the OCPP port)?") from None
        except TimeoutError:  # connected and asked: the answer did not come in time
            raise CliFailure(1, f"{self.address} did not answer within {timeout:g} s; what was asked may still "
                                "happen (the event log says)") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CliFailure(1, f"is csms serve running? could not connect to {self.address}: {reason}") from None
        except ValueError:
            raise CliFailure(1, f"{self.address} did not answer JSON: is it the central system's [http] port?") from None


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config`` and ``--url``: how a CLI command finds the running central system's API."""
    parser.add_argument("--config", required=True, help="the site config of the running central system (TOML)")
    parser.add_argument("--url", help="the HTTP API to call, e.g. http://10.0.0.5:8080 (default: the config's [http] "
                                      "host and port); on a cluster, the node that should act, e.g. the controller "
                                      "leading the group")


def address_of(url: str) -> str:
    """host:port of an ``http://HOST:PORT`` URL; :class:`CliFailure` (usage) for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme != "http" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise CliFailure(2, f"--url {url!r}: give the API's address as http://HOST:PORT (e.g. http://127.0.0.1:8080)")
    host = parts.hostname
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint(cfg: SiteConfig) -> str:
    """host:port of the config's ``[http]``; a wildcard host is reached at 127.0.0.1."""
    assert cfg.http is not None
    host = cfg.http.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{cfg.http.port}"


def fail(command: str, code: int, message: str) -> int:
    print(f"csms {command}: {message}", file=sys.stderr)
    return code
