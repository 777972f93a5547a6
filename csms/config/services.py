"""How ``csms serve`` runs: the OCPP server, storage, the meter gateway, smart charging and the operator view.

Each section has defaults that suit most sites; the site itself (who, what, which fuse) is in :mod:`.site`.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from csms.storage.sql import redact_url
from meter_gateway.config import StrictModel


class ServerConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)
    path_prefix: str = "/ocpp"
    security_profile: Literal[0, 1, 2, 3] = 1
    heartbeat_interval: int = Field(300, ge=10, le=86400)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: Largest websocket frame a station may send, in bytes.
    max_message_size: int = Field(65536, ge=1024, le=16 * 1024 * 1024)
    #: Sustained messages per second a station may send before it is throttled, and the burst allowed.
    rate_limit: float = Field(20.0, gt=0)
    rate_burst: int = Field(60, ge=1)
    #: Seconds the CSMS waits for a station's answer to a call.
    call_timeout: float = Field(15.0, gt=0, le=300)
    #: permessage-deflate for stations that offer it. On by default: OCPP 2.0.1 (part 4) requires a CSMS to
    #: support RFC 7692. "off" saves about 3 µs of CPU per message sent compressed (5 µs without zlib-ng, see
    #: ``csms.ocpp.deflate``); only for fleets that need neither (1.6 only, unmetered links).
    compression: Literal["off", "deflate"] = "deflate"
    #: Messages shorter than this (bytes) go out uncompressed on a compressing connection, as RFC 7692 allows:
    #: an OCPP message under about 100 bytes comes out of deflate no shorter (a reply of 20-95 bytes: 2 bytes
    #: longer to 5 shorter) for about as much CPU as a profile (``bench/bench_deflate.py``). A SetChargingProfile
    #: (350-450 bytes) loses about a third of its bytes; a threshold above it would save that compression's CPU
    #: on each profile and send those bytes.
    compression_threshold: int = Field(128, ge=0, le=16 * 1024 * 1024)

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and (not v.startswith("/") or v.endswith("/")):
            raise ValueError('path_prefix must start with "/" and not end with one, e.g. "/ocpp"')
        return v


class StorageConfig(StrictModel):
    """Where the records live: a SQLite file (``database``, the embedded default) or a PostgreSQL server
    (``url``); exactly one of them is set (``database`` has a default, so setting ``url`` is enough)."""

    database: str = "var/csms.sqlite"
    #: PostgreSQL instead of SQLite: ``postgresql://user[:password]@host[:port]/dbname[?options]``.
    url: str | None = None
    #: Longest a write waits for its group commit, in seconds.
    commit_interval: float = Field(0.001, ge=0, le=1)
    #: PostgreSQL: seconds the storage thread waits for the server's answer to one statement (or commit) before
    #: it cuts the connection and reconnects, so a server that hangs without closing cannot stall writes.
    statement_timeout: float = Field(10.0, ge=1, le=3600)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError('must be a PostgreSQL URL, "postgresql://user@host:port/dbname" '
                             '(for SQLite set storage.database to a file path instead)')
        try:
            parts.port
        except ValueError:
            raise ValueError("has a port that is not a number (postgresql://user@host:5432/dbname)") from None
        if not parts.path.strip("/"):
            raise ValueError("names no database: add it after the host, postgresql://user@host:5432/dbname")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> StorageConfig:
        if self.url is not None and "database" in self.model_fields_set:
            raise ValueError("set either storage.database (a SQLite file) or storage.url (PostgreSQL), not both")
        return self

    @property
    def target(self) -> str:
        """What :class:`csms.storage.database.Storage` opens: the URL when set, else the SQLite file."""
        return self.url if self.url is not None else self.database

    @property
    def shown(self) -> str:
        """The target as logs and errors may show it: a URL's password is replaced by ``***``."""
        return self.database if self.url is None else redact_url(self.url)


class GatewayConfig(StrictModel):
    #: "embedded": csms serve polls the meters itself; "mqtt": it subscribes to a standalone
    #: meter-gateway's normalised readings on the [mqtt] broker.
    mode: Literal["embedded", "mqtt"] = "embedded"
    #: Extra folders searched for register-map files, before the shipped config/registers.
    register_dirs: list[str] = Field(default_factory=list)


class SmartChargingConfig(StrictModel):
    """How limits reach chargers; the defaults suit most AC chargers."""

    #: Seconds a dynamic limit stays valid without a refresh; a charger that loses us falls back after this.
    failsafe_ttl: float = Field(60, ge=2, le=3600)
    #: Seconds between meter values the chargers are asked to send.
    meter_value_interval: int = Field(10, ge=1, le=900)
    #: A: smaller changes than this are not sent (decreases to 0 always are).
    deadband: float = Field(1.0, ge=0, le=16)
    #: Seconds between two increases of the same charger (decreases are never delayed): one EV response time,
    #: so that the balancer sees what an increase did before the next one is sent.
    increase_interval: float = Field(5, ge=0, le=3600)
    #: Seconds an EV may take to follow a changed limit (IEC 61851-1: 5 s). After a decrease the old draw is
    #: reserved this long; the balancer's estimate treats the charger as moving this long after any change.
    ramp_time: float = Field(5, ge=0, le=600)
    #: A above its limit a charger may draw, for obey_grace seconds, before it is flagged as not obeying.
    obey_tolerance: float = Field(2.0, ge=0, le=32)
    obey_grace: float = Field(30, ge=0, le=3600)
    #: Ask the charger for its composite schedule after a change, to confirm what it applies.
    confirm_with_composite: bool = True
    #: Seconds a profile's start is set in the past, for chargers whose clock runs behind.
    clock_skew_allowance: float = Field(30, ge=0, le=3600)


class HttpConfig(StrictModel):
    """The operator view: status API, dashboard and /metrics on one extra port (off when [http] is absent)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Bearer token for /api and /metrics (read-only); the dashboard asks for it once.
    token: str
    #: Bearer token for the write routes (commands to stations) as well as the reads; absent: no writes.
    #: A separate secret, so that whoever can watch (a dashboard screen, a metrics scraper) cannot act.
    operator_token: str | None = None
    #: Where chargers' uploaded log files are kept, one folder per station (relative: from the config's folder).
    upload_dir: str = "var/uploads"
    #: Largest file a charger may upload, in bytes (a bigger one is refused with 413 and not kept).
    max_upload_size: int = Field(50 * 1024 * 1024, ge=1024, le=10 * 1024**3)
    #: Seconds an upload URL handed to a charger (get-logs) stays valid.
    upload_ttl: float = Field(3600, ge=60, le=7 * 86400)
    #: The address chargers reach this server at, e.g. "http://192.168.1.10:8080" (a reverse proxy's,
    #: with its path, when there is one); absent: http://HOST:PORT of this section.
    public_url: str | None = None

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("public_url must be http(s)://HOST[:PORT][/PATH], the address chargers reach this "
                             "server at, e.g. http://192.168.1.10:8080")
        if parts.hostname in ("0.0.0.0", "::"):
            raise ValueError("public_url must name an address chargers can reach, not a wildcard")
        return v.rstrip("/")

    def upload_base(self, port: int) -> str | None:
        """The base of upload URLs: ``public_url``, else this server's own address; None for a wildcard host
        without ``public_url`` (0.0.0.0 is no address a charger can be told: get-logs then needs a location)."""
        if self.public_url is not None:
            return self.public_url
        if self.host in ("", "0.0.0.0", "::"):
            return None
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @field_validator("token", "operator_token")
    @classmethod
    def _token(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        if len(v) < 16:
            raise ValueError(f"{info.field_name} must be at least 16 characters; generate one with: "
                             "python -c \"import secrets; print(secrets.token_urlsafe(24))\"")
        if v != v.strip() or any(ch.isspace() or not ch.isprintable() for ch in v):
            raise ValueError(f"{info.field_name} must be printable characters without spaces "
                             "(it travels in an HTTP header)")
        return v

    @model_validator(mode="after")
    def _distinct(self) -> "HttpConfig":
        if self.operator_token is not None and self.operator_token == self.token:
            raise ValueError("operator_token must differ from token: token is read-only, operator_token may "
                             "send commands to stations")
        return self
