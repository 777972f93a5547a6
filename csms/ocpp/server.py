"""The websocket side of the central system: handshake, authentication, one session per station.

Stations connect to ``ws://HOST:PORT{path_prefix}/{station_id}`` offering ``ocpp1.6`` and/or
``ocpp2.0.1``. Authentication happens on the upgrade request, before anything is upgraded
(:mod:`csms.ocpp.transport`), so a refused station never gets a session: 404 for an identity not in the config, 401 for a missing or wrong basic-auth
password (profiles 1 and 2), 403 when a client certificate names another station (profile 3).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import math
import ssl
import time
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.exceptions import InvalidHeader
from websockets.headers import parse_authorization_basic

from csms.domain.link import StationLink
from csms.domain.state import Version
from csms.ocpp.connection import MessageObserver
from csms.ocpp.context import SessionContext
from csms.ocpp.station import Station
from csms.ocpp.listener import WebSocketServer
from csms.ocpp.transport import ConnectionClosed, Options, Refusal, UpgradeRequest, WebSocket
from csms.runtime.aio import cancel_and_wait
from csms.storage import records

log = logging.getLogger("csms.ocpp.server")

SUBPROTOCOLS = [Version.V201.value, Version.V16.value]


def station_id_from_path(path: str, prefix: str) -> str | None:
    """``/ocpp/CP%2001?x=1`` → ``CP 01``; None when the path is not under the prefix or names nothing."""
    raw = urlsplit(path).path
    if prefix:
        if not raw.startswith(prefix + "/"):
            return None
        raw = raw[len(prefix) + 1:]
    else:
        raw = raw.lstrip("/")
    if not raw or "/" in raw:
        return None
    return unquote(raw)


def certificate_common_name(peercert: dict | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


def build_ssl_context(cert: str, key: str, ca: str | None, require_client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    # OCPP requires the RSA key-exchange AES-GCM suites too, which Python's defaults leave out.
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:AES128-GCM-SHA256:AES256-GCM-SHA384")
    if ca:
        ctx.load_verify_locations(ca)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class AuthThrottle:
    """Per-address back-off on failed basic auth, so a password cannot be guessed at wire speed.

    After :attr:`free_failures` failures within :attr:`window` seconds the address must wait
    :attr:`base_delay` seconds, and twice as long after each further failure (at most :attr:`max_delay`),
    during which its
    handshakes are answered 429 without the password being checked. A success forgets the address. At
    most :attr:`max_addresses` addresses are remembered (the oldest is forgotten first), so a scan from
    many addresses cannot grow memory.
    """

    def __init__(self, free_failures: int = 5, window: float = 300.0, base_delay: float = 1.0,
                 max_delay: float = 300.0, max_addresses: int = 10_000, clock=time.monotonic):
        self.free_failures, self.window, self.base_delay = free_failures, window, base_delay
        self.max_delay, self.max_addresses, self.clock = max_delay, max_addresses, clock
        #: address -> (failures, first failure at, blocked until); insertion order = age
        self._entries: dict[str, tuple[int, float, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def wait(self, address: str) -> float:
        """Seconds ``address`` must still wait before its credentials are checked (0: check them)."""
        entry = self._entries.get(address)
        if entry is None:
            return 0.0
        failures, first, blocked_until = entry
        now = self.clock()
        if now - first > self.window and now >= blocked_until:
            del self._entries[address]
            return 0.0
        return max(0.0, blocked_until - now)

    def failed(self, address: str) -> None:
        now = self.clock()
        failures, first, _ = self._entries.pop(address, (0, now, 0.0))
        if now - first > self.window:
            failures, first = 0, now
        failures += 1
        over = failures - self.free_failures
        blocked_until = now + min(self.max_delay, self.base_delay * 2.0 ** min(over, 64)) if over >= 0 else 0.0
        self._entries[address] = (failures, first, blocked_until)
        while len(self._entries) > self.max_addresses:
            del self._entries[next(iter(self._entries))]

    def succeeded(self, address: str) -> None:
        self._entries.pop(address, None)


def _too_many(wait: float, text: str) -> Refusal:
    return Refusal(HTTPStatus.TOO_MANY_REQUESTS, text, (("Retry-After", str(max(1, math.ceil(wait)))),))


def _address(request: UpgradeRequest) -> str:
    return str((request.remote_address or ("?",))[0])


class CentralSystem:
    """Owns the websocket server and the live sessions, one per station id."""

    def __init__(self, ctx: SessionContext, on_session: Callable[[StationLink], None] | None = None,
                 observe: MessageObserver | None = None):
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.sessions: dict[str, Station] = {}
        self._on_session = on_session or (lambda link: None)  # when a station's session starts
        self._observe = observe
        self._server: WebSocketServer | None = None
        self._passwords = {c.id: c.password for c in self.cfg.chargers}
        self.auth_throttle = AuthThrottle()
        #: Least seconds between two replacements of a station's live connection by a new one.
        self.replacement_interval = 5.0
        self._replaced_at: dict[str, float] = {}
        self._replacement_refused: set[str] = set()  # stations whose refusal is logged already
        self._live: set[Station] = set()  # every session not yet ended (a replaced one until its socket has closed)
        self._tasks: set[asyncio.Task] = set()  # sessions starting, connections closing

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    async def start(self) -> None:
        srv = self.cfg.server
        ssl_ctx = None
        if srv.security_profile in (2, 3):
            ssl_ctx = build_ssl_context(srv.tls_cert, srv.tls_key, srv.tls_ca, srv.security_profile == 3)
        options = Options(subprotocols=tuple(SUBPROTOCOLS), max_size=srv.max_message_size,
                          compression=srv.compression == "deflate", compression_threshold=srv.compression_threshold)
        server = WebSocketServer(self._accept, None, options, adopt=self._adopt)
        await server.start(srv.host, srv.port, ssl_ctx)
        self._server = server
        scheme = "wss" if ssl_ctx else "ws"
        log.info("listening on %s://%s:%s%s/<station id> (security profile %s)", scheme, srv.host, self.port,
                 srv.path_prefix, srv.security_profile)

    async def stop(self) -> None:
        """Closes every connection (the closing handshake, bounded), then ends what is still handling a message."""
        if self._server is None:
            return
        await self._server.stop()
        self._server = None
        await cancel_and_wait([*self._tasks, *(s.connection.reading for s in list(self._live))])

    def set_passwords(self, passwords: dict[str, str | None]) -> None:
        """The stations of a reloaded config, with their passwords: a new one may connect from now on, a
        dropped one is refused (404) at its next handshake. A live session is not checked again: a changed
        password is asked for at the station's next connection."""
        self._passwords = dict(passwords)

    async def close_station(self, station_id: str, reason: str) -> bool:
        """Closes the station's live session, if any (a station dropped from the config); its records stay."""
        session = self.sessions.get(station_id)
        if session is None:
            return False
        log.info("%s: closing its session: %s", station_id, reason)
        await session.close(1000, reason)
        return True

    # -- handshake ------------------------------------------------------------------------------

    def _accept(self, request: UpgradeRequest) -> Refusal | str | None:
        """The upgrade's answer: a refusal or the subprotocol, the newest OCPP version both sides speak."""
        srv = self.cfg.server
        station_id = station_id_from_path(request.path, srv.path_prefix)
        if station_id is None:
            return Refusal(HTTPStatus.NOT_FOUND, f"connect to {srv.path_prefix}/<station id>\n")
        if station_id not in self._passwords:
            log.warning("refused unknown station %r from %s", station_id, request.remote_address)
            return Refusal(HTTPStatus.NOT_FOUND, "unknown station\n")
        if srv.security_profile in (1, 2):
            refusal = self._check_basic_auth(request, station_id)
            if refusal is not None:
                return refusal
        if srv.security_profile == 3:
            cn = certificate_common_name(request.peercert)
            if cn != station_id:
                log.warning("%s: client certificate names %r, refused", station_id, cn)
                return Refusal(HTTPStatus.FORBIDDEN, "client certificate does not name this station\n")
        refusal = self._replacement_refusal(request, station_id)
        if refusal is not None:
            return refusal
        chosen = next((p for p in SUBPROTOCOLS if p in request.subprotocols), None)
        if chosen is None:
            return Refusal(HTTPStatus.BAD_REQUEST, f"offer one of the subprotocols {', '.join(SUBPROTOCOLS)}\n")
        return chosen

    def _check_basic_auth(self, request: UpgradeRequest, station_id: str) -> Refusal | None:
        address = _address(request)
        wait = self.auth_throttle.wait(address)
        if wait > 0:
            return _too_many(wait, "too many failed logins from this address; retry later\n")

        def unauthorized(reason: str) -> Refusal:
            # ``reason`` never holds what the client sent as user or password: either may be a password.
            self.auth_throttle.failed(address)
            log.warning("%s: basic auth refused from %s (%s)", station_id, address, reason)
            return Refusal(HTTPStatus.UNAUTHORIZED, "authentication required\n",
                           (("WWW-Authenticate", 'Basic realm="ocpp", charset="UTF-8"'),))

        header = request.headers.get("authorization")
        if header is None:
            return unauthorized("no Authorization header")
        try:
            login, password = parse_authorization_basic(header)
        except InvalidHeader:
            return unauthorized("malformed Authorization header")
        expected = self._passwords[station_id] or ""
        if login != station_id:
            return unauthorized("the user name is not the station id")
        # Bytes that are not UTF-8 come as surrogates; they never match a configured password.
        if not hmac.compare_digest(password.encode("utf-8", "surrogateescape"), expected.encode()):
            return unauthorized("wrong password")
        self.auth_throttle.succeeded(address)
        return None

    def _replacement_refusal(self, request: UpgradeRequest, station_id: str) -> Refusal | None:
        """A station whose live connection was replaced moments ago must wait before replacing it again:
        valid credentials in two places (a cloned charger, a stolen password) would otherwise take the
        session from each other without end. Logged once per episode."""
        if station_id not in self.sessions:
            return None
        wait = self._replaced_at.get(station_id, -math.inf) + self.replacement_interval - time.monotonic()
        if wait <= 0:
            return None
        if station_id not in self._replacement_refused:
            self._replacement_refused.add(station_id)
            log.warning("%s: refused to replace the live connection again within %.0f s (from %s); is a second "
                        "device using this station's credentials?", station_id, self.replacement_interval,
                        request.remote_address)
        return _too_many(wait, "this station's connection was replaced moments ago; retry later\n")

    # -- sessions -------------------------------------------------------------------------------

    def _adopt(self, ws: WebSocket) -> None:
        """An accepted connection: its session starts (once the station's earlier connection, if any, is closed).

        No task is kept per session: the connection handles what the station sends when it sends it
        (:meth:`csms.ocpp.connection.Connection.start`) and calls :meth:`_ended` when it closes."""
        station_id = station_id_from_path(ws.path, self.cfg.server.path_prefix)
        if station_id is None or ws.subprotocol not in SUBPROTOCOLS:
            self._spawn(ws.close(1002, "no OCPP subprotocol"))
            return
        version = Version(ws.subprotocol)
        session = Station(station_id, ws, version, self.ctx, self._observe)
        previous = self.sessions.get(station_id)
        self.sessions[station_id] = session
        self._live.add(session)
        if previous is not None:
            self._replaced_at[station_id] = time.monotonic()
            self._replacement_refused.discard(station_id)
            log.warning("%s: new connection replaces the previous one", station_id)
        self._spawn(self._start(session, previous))

    async def _start(self, session: Station, previous: Station | None) -> None:
        if previous is not None:
            await previous.close(1000, "replaced by a new connection")
        try:
            now = self.ctx.clock()
            await self.ctx.storage.write(records.station_connected(session.id, session.version.value, now))
            self.ctx.state.connected(session.id, session.version, now)
            log.info("%s: connected (%s) from %s", session.id, session.version.value,
                     session.connection.socket.remote_address)
            self._on_session(session.link)
        except Exception as exc:
            self._ended(session, exc)
            return
        session.start(functools.partial(self._ended, session))

    def _ended(self, session: Station, exc: BaseException) -> None:
        """The session is over: its socket closed (``ConnectionClosed``), the server stops (``CancelledError``),
        or ``exc`` broke it (the connection is then closed with 1011)."""
        station_id = session.id
        if isinstance(exc, ConnectionClosed):
            log.info("%s: disconnected (%s)", station_id, exc.code if exc.code is not None else "no close frame")
        elif isinstance(exc, Exception):
            log.error("%s: session failed", station_id, exc_info=exc)
            self._spawn(session.close(1011, "internal error"))
        self._live.discard(session)
        if self.sessions.get(station_id) is session:
            del self.sessions[station_id]
            at = self.ctx.clock()
            self.ctx.state.disconnected(station_id, at)
            try:
                self.ctx.storage.write_nowait(records.station_disconnected(station_id, at), "disconnect")
            except Exception:  # storage may already be closed on shutdown
                pass

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
