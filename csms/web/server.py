"""The operator view's HTTP server: JSON status API, dashboard files and ``/metrics`` on one port.

It runs on the central system's own event loop (aiohttp) and reads live state in memory and history through
:meth:`csms.storage.database.Storage.read`. ``/api/*`` and ``/metrics`` want ``Authorization: Bearer <token>``:
the ``[http] token`` reads; the ``[http] operator_token`` also acts (commands to stations, :mod:`.operator`; id
tokens, :mod:`.tokens`), and the read token gets 403 there. The dashboard page, its static files and
``/openapi.json`` are public, since they hold no data; the dashboard asks for the token once. Chargers' log uploads
(``/upload/...``, :mod:`.uploads`) carry their credential in the URL. Access logging is off: the dashboard polls
every second and a line per poll would bury what matters in the log.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from csms.config import HttpConfig, LoadBalancerConfig
from csms.storage import history, readings
from csms.storage.database import StorageClosed, StorageUnavailable

from csms import __version__

from . import openapi, status
from .commissioning import CommissioningRoutes
from .config_route import ROUTE as RELOAD_ROUTE, ConfiguredStations, ReloadRoute
from .metrics import Metrics
from .operator import ROUTE as COMMAND_ROUTE, CommandRoute, is_write
from .reservations import ROUTE as RESERVATIONS_ROUTE, ReservationRoute
from .tokens import TokenRoutes
from .uploads import UploadRoutes
from .view import SiteView

log = logging.getLogger("csms.web")

STATIC_DIR = Path(str(resources.files("csms.web") / "static"))
#: Most events or transactions one request returns.
MAX_ROWS = 1000
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # No third-party origin at all: the dashboard must work on a site without internet.
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                               "frame-ancestors 'none'",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadQuery(ValueError):
    """A query parameter the client must fix; the message names the parameter."""


class NotFound(LookupError):
    """Something named in the query does not exist; the message says where to find what does."""


def _float_param(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{name}={raw!r} is not a number; give epoch seconds, e.g. {name}=1795000000") from None
    if not math.isfinite(value):
        raise BadQuery(f"{name} must be a finite number")
    return value


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadQuery(f"{name} must be between {low} and {high}, not {value}")
    return value


def _range(request: web.Request, now: float, default_span: float = 600.0) -> history.Range:
    until = _float_param(request, "until", now)
    since = _float_param(request, "since", until - default_span)
    if since > until:
        given = "until" if "until" in request.query else "until (now, as none was given)"
        raise BadQuery(f"since ({since}) is after {given} ({until})")
    points = _int_param(request, "points", 600, 1, history.MAX_POINTS)
    return history.Range(since, until, points)


def standard_json(data: Any) -> str:
    """JSON that ``JSON.parse`` reads: NaN and infinities become ``null``.

    ``json.dumps`` writes them as ``NaN``/``Infinity``, which blinds the dashboard; a value stored before
    it was refused (or computed from one) must not. orjson writes ``null`` for them by itself; what it
    cannot write (integers past 64 bits) goes to ``json`` after the same replacement.
    """
    try:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(_finite(data), allow_nan=False, default=str)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json(data: Any, status_code: int = 200) -> web.Response:
    return web.json_response(data, status=status_code, headers={"Cache-Control": "no-store"}, dumps=standard_json)


def _token_matches(given: str, token: str) -> bool:
    """Constant-time comparison; a header that is not UTF-8 (aiohttp keeps such bytes as surrogates) is
    simply a wrong token, not a server error."""
    try:
        return hmac.compare_digest(given.strip().encode(), token.encode())
    except UnicodeEncodeError:
        return False


def _error(status_code: int, message: str) -> web.Response:
    return _json({"error": message}, status_code)


class WebServer:
    """Serves the operator view of ``view`` on ``cfg.host:cfg.port`` (port 0 picks a free one)."""

    def __init__(self, view: SiteView, cfg: HttpConfig):
        self.view = view
        self.cfg = cfg
        self.metrics = Metrics(view)
        self.commands = CommandRoute(view.commands)
        self.tokens = TokenRoutes(view.tokens)
        self.uploads = UploadRoutes(view.uploads, cfg, ConfiguredStations(view))
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        webapp = web.Application(middlewares=[self._headers, self._auth, self._bad_query])
        webapp.add_routes([
            web.get("/", self._index),
            web.get("/api/status", self._status),
            web.get("/api/organisations", self._organisations),
            web.get("/api/groups", self._groups),
            web.get("/api/groups/{group_id}", self._group),
            web.get("/api/meters", self._meters),
            web.get("/api/meters/{serial}", self._meter),
            web.get("/api/chargers", self._chargers),
            web.get("/api/chargers/{charger_id}", self._charger),
            web.get("/api/chargers/{charger_id}/configuration", self._charger_configuration),
            web.get("/api/transactions", self._transactions),
            web.get(RESERVATIONS_ROUTE, ReservationRoute(self.view).handle),
            web.get("/api/events", self._events),
            web.get("/api/history/phases", self._history_phases),
            web.get("/api/history/limits", self._history_limits),
            web.get("/metrics", self._metrics),
            web.get("/openapi.json", self._openapi),
            web.post(COMMAND_ROUTE, self.commands.handle),
            web.post(RELOAD_ROUTE, ReloadRoute(self.view).handle),
            *self.tokens.routes(),
            *CommissioningRoutes(self.view).routes(),
            *self.uploads.routes(),
            web.static("/static", STATIC_DIR, show_index=False, follow_symlinks=False),
        ])
        runner = web.AppRunner(webapp, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(exc.errno, f"[http] cannot listen on {self.cfg.host}:{self.cfg.port}: {exc.strerror}; "
                                     "choose another port or stop the program using it") from exc
        self._runner = runner
        self.port = runner.addresses[0][1]
        self.metrics.attach()
        log.info("operator view on http://%s:%s/ (API and /metrics need the [http] token)", self.cfg.host, self.port)

    async def stop(self) -> None:
        self.metrics.detach()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> WebServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- middlewares -------------------------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if isinstance(response, web.HTTPException):
            raise response
        return response

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/api/") or path == "/api" or path == "/metrics":
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            bearer = scheme.lower() == "bearer"
            operator = self.cfg.operator_token
            is_operator = bearer and operator is not None and _token_matches(given, operator)
            is_reader = bearer and not is_operator and _token_matches(given, self.cfg.token)
            if not (is_operator or is_reader):  # first: a caller without a token learns nothing of the config
                # Method and path are the client's text: %r, so they cannot forge a log line.
                log.info("operator view: refused %r %r from %s: %s", request.method, path, request.remote,
                         "wrong token" if given else "no bearer token")
                response = _error(401, "missing or wrong token: send 'Authorization: Bearer <the [http] token>'")
                response.headers["WWW-Authenticate"] = 'Bearer realm="csms"'
                return response
            if is_write(request) and operator is None:
                log.info("operator view: refused %r %r from %s: no operator_token configured", request.method,
                         path, request.remote)
                return _error(403, "commands are off: set [http] operator_token in the site config (at least 16 "
                                   "characters, not the same as token) and restart csms serve")
            if is_write(request) and not is_operator:
                log.info("operator view: refused %r %r from %s: read-only token", request.method, path,
                         request.remote)
                return _error(403, "the [http] token is read-only: commands need the [http] operator_token")
        return await handler(request)

    @web.middleware
    async def _bad_query(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except BadQuery as exc:
            return _error(400, str(exc))
        except NotFound as exc:
            return _error(404, str(exc))
        except StorageUnavailable as exc:  # a kind of StorageClosed: the database server is away, not us closing
            return _error(503, f"storage is unavailable: {exc}")
        except StorageClosed:
            return _error(503, "storage is closed: the central system is shutting down")
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:  # no such route: JSON as every API answer
            if not request.path.startswith("/api/"):
                raise
            return _error(exc.status, f"no {request.method} {request.path}; the routes are listed at /openapi.json")

    # -- pages -------------------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    async def _openapi(self, request: web.Request) -> web.Response:
        return _json(openapi.document(request.app, __version__))

    async def _metrics(self, request: web.Request) -> web.Response:
        body = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})

    # -- live state --------------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        data = status.site(self.view)
        limit = _int_param(request, "events", 30, 0, MAX_ROWS)
        data["events"] = await self.view.storage.read(history.events(0.0, math.inf, limit)) if limit else []
        return _json(data)

    async def _organisations(self, request: web.Request) -> web.Response:
        return _json(status.organisations(self.view))

    async def _groups(self, request: web.Request) -> web.Response:
        return _json(status.groups(self.view))

    async def _group(self, request: web.Request) -> web.Response:
        gid = request.match_info["group_id"]
        cfg = next((g for g in self.view.cfg.load_balancers if g.id == gid), None)
        if cfg is None:
            return _error(404, f"no load-balancing group {gid!r}; GET /api/groups lists them")
        return _json(status.group(self.view, cfg))

    async def _meters(self, request: web.Request) -> web.Response:
        return _json(status.meters(self.view))

    async def _meter(self, request: web.Request) -> web.Response:
        serial = request.match_info["serial"]
        data = status.meter(self.view, serial)
        if data is None:
            return _error(404, f"no meter {serial!r}; GET /api/meters lists them")
        return _json(data)

    async def _chargers(self, request: web.Request) -> web.Response:
        return _json(status.chargers(self.view))

    async def _charger_configuration(self, request: web.Request) -> web.Response:
        """The charger's configuration as it last reported it (get-configuration, get-base-report)."""
        cid = request.match_info["charger_id"]
        if status.charger(self.view, cid) is None:
            return _error(404, f"no charger {cid!r}; GET /api/chargers lists them")
        rows = await self.view.storage.read(history.station_settings(cid))
        return _json({"charger": cid, "settings": rows})

    async def _charger(self, request: web.Request) -> web.Response:
        cid = request.match_info["charger_id"]
        data = status.charger(self.view, cid)
        if data is None:
            return _error(404, f"no charger {cid!r}; GET /api/chargers lists them")
        return _json(data)

    # -- storage -----------------------------------------------------------------------------------

    async def _transactions(self, request: web.Request) -> web.Response:
        """Running transactions, and those that started in [since, until] (default: the last 24 h)."""
        now = self.view.clock()
        rng = _range(request, now, default_span=86400)
        limit = _int_param(request, "limit", 200, 1, MAX_ROWS)
        station = request.query.get("station") or None
        rows = await self.view.storage.read(history.transactions(rng.since, rng.until, limit, station))
        running = [t for t in status.running_transactions(self.view) if station is None or t["station_id"] == station]
        return _json({"running": running, "history": rows})

    async def _events(self, request: web.Request) -> web.Response:
        now = self.view.clock()
        rng = _range(request, now, default_span=86400)
        limit = _int_param(request, "limit", 200, 1, MAX_ROWS)
        q = request.query
        rows = await self.view.storage.read(history.events(
            rng.since, rng.until, limit, station_id=q.get("station") or None, group_id=q.get("group") or None,
            kind=q.get("kind") or None))
        return _json(rows)

    def _group_param(self, request: web.Request) -> LoadBalancerConfig:
        gid = request.query.get("group")
        if not gid:
            raise BadQuery("group is required, e.g. ?group=garage (GET /api/groups lists them)")
        cfg = next((g for g in self.view.cfg.load_balancers if g.id == gid), None)
        if cfg is None:
            raise NotFound(f"no load-balancing group {gid!r}; GET /api/groups lists them")
        return cfg

    async def _history_phases(self, request: web.Request) -> web.Response:
        """Mains current per phase and the group's budget over [since, until] (default: the last 10 min)."""
        g = self._group_param(request)
        rng = _range(request, self.view.clock())
        currents = await self.view.storage.read(readings.phase_currents(g.meter, rng)) if g.meter else []
        decisions = await self.view.storage.read(history.decisions(g.id, rng))
        return _json({
            "group": g.id, "meter": g.meter, "since": rng.since, "until": rng.until,
            "supply_max_current": g.supply_max_current, "max_current_online": g.max_current_online,
            "max_current_offline": g.max_current_offline,
            "currents": currents,
            "budget": [{"at": d["at"], "meter_fresh": d["meter_fresh"], **d["budget"]} for d in decisions],
        })

    async def _history_limits(self, request: web.Request) -> web.Response:
        """Each charger's limit and its reason over [since, until], from the stored decisions."""
        g = self._group_param(request)
        rng = _range(request, self.view.clock())
        decisions = await self.view.storage.read(history.decisions(g.id, rng))
        charger = request.query.get("charger") or None
        out = [{"at": d["at"], "limits": {cid: lim for cid, lim in d["limits"].items()
                                          if charger is None or cid == charger}}
               for d in decisions]
        return _json({"group": g.id, "since": rng.since, "until": rng.until, "decisions": out})
