"""The operator's site config: a TOML file validated with pydantic.

Validation happens in two passes so that an operator sees every problem at once: pydantic checks the
shape of each section (types, ranges, unknown keys), then :func:`cross_check` checks what only the whole
file can tell (ids that must exist, a charger in two groups, a one-phase site with phase 3 in a group).
Both passes report ``path.to.field: message`` pairs; :class:`ConfigError` carries them all.
"""

from __future__ import annotations

import re
import ssl
import tomllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from meter_gateway.config import MeterConfig, MqttConfig, StrictModel

ROTATIONS = ("RST", "RTS", "SRT", "STR", "TRS", "TSR")
#: OCPP 2.0.1 passwordString characters (A00.FR.205); 1.6 AuthorizationKey hex digits are a subset.
PASSWORD_RE = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{16,40}$")
STATION_ID_RE = re.compile(r"^[A-Za-z0-9*\-_=+|@.]{1,48}$")


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

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and (not v.startswith("/") or v.endswith("/")):
            raise ValueError('path_prefix must start with "/" and not end with one, e.g. "/ocpp"')
        return v


class StorageConfig(StrictModel):
    database: str = "var/csms.sqlite"
    #: Longest a write waits for its group commit, in seconds.
    commit_interval: float = Field(0.005, ge=0, le=1)


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
    #: Bearer token for /api and /metrics; the dashboard asks for it once.
    token: str

    @field_validator("token")
    @classmethod
    def _token(cls, v: str) -> str:
        if len(v) < 16:
            raise ValueError("token must be at least 16 characters; generate one with: "
                             "python -c \"import secrets; print(secrets.token_urlsafe(24))\"")
        if v != v.strip() or any(ch.isspace() or not ch.isprintable() for ch in v):
            raise ValueError("token must be printable characters without spaces (it travels in an HTTP header)")
        return v


class OrganisationConfig(StrictModel):
    id: str
    name: str
    email: str | None = None
    #: "accept-all": every id token is accepted; "list": only [[id_tokens]] of this organisation.
    authorization: Literal["accept-all", "list"] = "accept-all"


class IdTokenConfig(StrictModel):
    organisation: str
    token: str = Field(min_length=1, max_length=36)
    expiry: datetime | None = None


class ChargerConfig(StrictModel):
    id: str
    password: str | None = None
    organisation: str
    phases: Literal[1, 3] = 3
    phase_rotation: Literal["RST", "RTS", "SRT", "STR", "TRS", "TSR"] = "RST"
    max_current: float = Field(32, gt=0, le=80)
    offline_current: float = Field(6, ge=0, le=80)
    offline_phase: Literal[1, 2, 3] = 1
    #: Connector/EVSE whose availability follows the group's socket_enabled (0 = none).
    socket_connector: int = Field(0, ge=0, le=16)
    #: Profile purpose for dynamic limits: "auto" walks TxProfile -> TxDefaultProfile -> station max
    #: as the charger refuses them; the others pin one purpose.
    profile_purpose: Literal["auto", "tx", "tx_default", "station_max"] = "auto"
    #: Least seconds between two profile changes, for chargers that write profiles to flash.
    min_update_interval: float = Field(0, ge=0, le=3600)
    #: Serial and PIN printed on the charger (informational; used to identify it at installation).
    pin: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not STATION_ID_RE.match(v):
            raise ValueError("charger id must be 1-48 characters of letters, digits and *-_=+|@. (no ':' or '/')")
        return v


class LoadBalancerConfig(StrictModel):
    id: str
    name: str
    description: str = ""
    organisation: str
    meter: str | None = None
    chargers: list[str] = Field(default_factory=list)
    phases: list[int] = Field(default_factory=lambda: [1, 2, 3])
    chargers_in_measurement: bool = True
    supply_max_current: float = Field(gt=0, le=4000)
    max_current_online: float = Field(gt=0, le=4000)
    max_current_offline: float = Field(ge=0, le=4000)
    min_current: float = Field(6, ge=0, le=80)
    stale_after: float = Field(10, gt=0, le=3600)
    #: A per phase kept free below the fuse for the meter's error (class 1: 1 %) and the EVs' own control
    #: tolerance; default 1 % of supply_max_current, at least 0.25 A (0.25 A on 25 A, 0.63 A on 63 A). A fuse carries its
    #: rated current indefinitely, and a step of the other load is cut back on the next reading, so the margin
    #: need not cover steps.
    margin: float = Field(ge=0, le=100)
    #: Seconds between rotations of who is paused when not every session can get min_current.
    rotation_period: float = Field(600, gt=0)
    socket_enabled: bool = True
    active: bool = True

    @model_validator(mode="before")
    @classmethod
    def _default_margin(cls, data: object) -> object:
        if isinstance(data, dict) and "margin" not in data:
            supply = data.get("supply_max_current")
            if isinstance(supply, (int, float)) and not isinstance(supply, bool):
                return {**data, "margin": default_margin(float(supply))}
            # supply_max_current is missing or not a number, which is reported on its own: "margin: Field
            # required" beside it would send the installer after a field the file need not have.
            return {**data, "margin": default_margin(0.0)}
        return data

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if p not in (1, 2, 3)]
        if bad:
            raise ValueError(f"phases {bad} are outside 1..3")
        if not v or len(set(v)) != len(v):
            raise ValueError("phases must be a non-empty list of distinct phases, e.g. [1, 2, 3] or [1]")
        return v


class SiteConfig(StrictModel):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    mqtt: MqttConfig | None = None
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    smart_charging: SmartChargingConfig = Field(default_factory=SmartChargingConfig)
    http: HttpConfig | None = None
    organisations: list[OrganisationConfig] = Field(default_factory=list)
    id_tokens: list[IdTokenConfig] = Field(default_factory=list)
    meters: list[MeterConfig] = Field(default_factory=list)
    chargers: list[ChargerConfig] = Field(default_factory=list)
    load_balancers: list[LoadBalancerConfig] = Field(default_factory=list)

    def charger(self, station_id: str) -> ChargerConfig | None:
        return next((c for c in self.chargers if c.id == station_id), None)

    def meter(self, serial: str) -> MeterConfig | None:
        return next((m for m in self.meters if m.serial == serial), None)

    def organisation(self, org_id: str) -> OrganisationConfig | None:
        return next((o for o in self.organisations if o.id == org_id), None)

    def group_of(self, station_id: str) -> LoadBalancerConfig | None:
        return next((g for g in self.load_balancers if station_id in g.chargers), None)


@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class ConfigError(Exception):
    """Every problem found in one config file, each as ``FILE: path.to.field: message``."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [f"{self.source}: {p.path}: {p.message}" for p in self.problems]


def _loc(loc: tuple) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _pydantic_problems(err: ValidationError) -> list[Problem]:
    out = []
    for e in err.errors():
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against the README's config reference)"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(Problem(_loc(e["loc"]), msg))
    return out


def _duplicates(items: list, key: str, section: str) -> list[Problem]:
    seen: dict[str, int] = {}
    out = []
    for i, item in enumerate(items):
        if item is None:
            continue
        value = getattr(item, key)
        if value in seen:
            out.append(Problem(f"{section}.{i}.{key}", f"duplicate {key} {value!r} (first at {section}.{seen[value]})"))
        else:
            seen[value] = i
    return out


def cross_check(cfg: SiteConfig, invalid_ids: frozenset[str] = frozenset()) -> list[Problem]:
    """Checks that need the whole file: references, uniqueness, limits that must agree with each other.

    ``invalid_ids`` are ids of items that failed their own validation: references to them are not
    reported again as unknown.
    """
    problems: list[Problem] = []
    problems += _duplicates(cfg.organisations, "id", "organisations")
    problems += _duplicates(cfg.meters, "serial", "meters")
    problems += _duplicates(cfg.chargers, "id", "chargers")
    problems += _duplicates(cfg.load_balancers, "id", "load_balancers")
    orgs = {o.id for o in cfg.organisations if o is not None}
    meters = {m.serial: m for m in cfg.meters if m is not None}
    chargers = {c.id: c for c in cfg.chargers if c is not None}
    srv = cfg.server

    if srv.security_profile in (2, 3) and not (srv.tls_cert and srv.tls_key):
        problems.append(Problem("server.tls_cert", f"security_profile {srv.security_profile} needs tls_cert and tls_key"))
    if srv.security_profile == 3 and not srv.tls_ca:
        problems.append(Problem("server.tls_ca", "security_profile 3 needs tls_ca, the CA that signed the chargers' certificates"))

    def ref(path: str, org: str) -> None:
        if org not in orgs and org not in invalid_ids:
            problems.append(Problem(path, f"unknown organisation {org!r}; add it under [[organisations]]"))

    for i, t in enumerate(cfg.id_tokens):
        if t is None:
            continue
        ref(f"id_tokens.{i}.organisation", t.organisation)
    for i, m in enumerate(cfg.meters):
        if m is None:
            continue
        ref(f"meters.{i}.organisation", m.organisation)
        if m.source == "mqtt" and cfg.mqtt is None:
            problems.append(Problem(f"meters.{i}.source", 'source = "mqtt" needs an [mqtt] section naming the broker'))
    if cfg.gateway.mode == "mqtt" and cfg.mqtt is None:
        problems.append(Problem("gateway.mode", 'mode = "mqtt" needs an [mqtt] section naming the broker'))
    for i, c in enumerate(cfg.chargers):
        if c is None:
            continue
        ref(f"chargers.{i}.organisation", c.organisation)
        if srv.security_profile in (1, 2):
            if c.password is None:
                problems.append(Problem(f"chargers.{i}.password", f"security_profile {srv.security_profile} needs a basic-auth password"))
            elif not PASSWORD_RE.match(c.password):
                problems.append(Problem(
                    f"chargers.{i}.password",
                    "OCPP basic-auth passwords are 16-40 characters of letters, digits and *-_=:+|@. "
                    "(generate one with: python -c \"import secrets; print(secrets.token_hex(16))\")",
                ))
        if c.offline_current > c.max_current:
            problems.append(Problem(f"chargers.{i}.offline_current", f"{c.offline_current} A is above max_current {c.max_current} A"))

    group_of: dict[str, str] = {}
    for i, g in enumerate(cfg.load_balancers):
        if g is None:
            continue
        p = f"load_balancers.{i}"
        ref(f"{p}.organisation", g.organisation)
        meter = None
        if g.meter is not None:
            meter = meters.get(g.meter)
            if meter is None and g.meter not in invalid_ids:
                problems.append(Problem(f"{p}.meter", f"unknown meter {g.meter!r}; add it under [[meters]] or omit meter for static balancing"))
        for j, cid in enumerate(g.chargers):
            if cid not in chargers:
                if cid in invalid_ids:
                    continue
                problems.append(Problem(f"{p}.chargers.{j}", f"unknown charger {cid!r}; add it under [[chargers]]"))
            elif cid in group_of:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} is already in group {group_of[cid]!r}; a charger belongs to one group"))
            else:
                group_of[cid] = g.id
        if len(set(g.chargers)) != len(g.chargers):
            problems.append(Problem(f"{p}.chargers", "a charger is listed twice"))
        if g.min_current > g.max_current_online:
            problems.append(Problem(f"{p}.min_current", f"{g.min_current} A is above max_current_online {g.max_current_online} A"))
        if g.max_current_offline > g.max_current_online:
            problems.append(Problem(f"{p}.max_current_offline", f"{g.max_current_offline} A is above max_current_online {g.max_current_online} A"))
        if meter is not None:
            extra = sorted(set(g.phases) - set(meter.phases))
            if extra:
                problems.append(Problem(f"{p}.phases", f"phases {extra} are not measured by meter {meter.serial} (its phases are {meter.phases}); a one-phase site uses [1]"))
        for j, cid in enumerate(g.chargers):
            c = chargers.get(cid)
            if c is None:
                continue
            if c.max_current < g.min_current:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} max_current {c.max_current} A is below the group's min_current {g.min_current} A"))
            if c.offline_phase not in g.phases:
                problems.append(Problem(f"{p}.chargers.{j}", f"charger {cid!r} offline_phase {c.offline_phase} is not among the group's phases {g.phases}"))
            if c.phases == 1 and charger_phases(c)[0] not in g.phases:
                problems.append(Problem(f"{p}.chargers.{j}", f"one-phase charger {cid!r} lands on building phase {charger_phases(c)[0]}, which the group does not include"))
    return problems


def default_margin(supply_max_current: float) -> float:
    """The margin a group gets when its config names none: 1 % of the fuse (a class 1 meter's error), at least
    0.25 A."""
    return round(max(0.25, 0.01 * supply_max_current), 2)


def config_warnings(cfg: SiteConfig) -> list[Problem]:
    """Settings that are legitimate but worth a second look; ``check-config`` prints them, ``serve`` logs them."""
    warnings: list[Problem] = []
    for i, g in enumerate(cfg.load_balancers):
        if g.max_current_online > g.supply_max_current:
            warnings.append(Problem(
                f"load_balancers.{i}.max_current_online",
                f"{g.max_current_online} A is above supply_max_current {g.supply_max_current} A (the main fuse): "
                "the group may draw more than the fuse only while the building exports (solar) or when it is a "
                "sub-board rated above it; the import through the fuse is still kept within supply_max_current"))
    return warnings


def charger_phases(c: ChargerConfig) -> tuple[int, ...]:
    """Building phases that charger phases L1, L2, L3 land on, in charger order (R=1, S=2, T=3)."""
    mapped = tuple("RST".index(ch) + 1 for ch in c.phase_rotation)
    return mapped[: c.phases]


_LIST_ITEMS = {"organisations": OrganisationConfig, "id_tokens": IdTokenConfig, "meters": MeterConfig,
               "chargers": ChargerConfig, "load_balancers": LoadBalancerConfig}


def _salvage(data: dict) -> SiteConfig:
    """The valid parts of a file that failed validation, so cross-checks can still run on them.

    An item that is itself invalid is left out of the cross-checks (its own errors are reported);
    positions are kept, so the paths the cross-checks report still match the file.
    """
    fields: dict = {}
    for name, info in SiteConfig.model_fields.items():
        if name not in data:
            fields[name] = info.get_default(call_default_factory=True)
            continue
        value = data[name]
        if name in _LIST_ITEMS:
            items = value if isinstance(value, list) else []
            fields[name] = [_try(_LIST_ITEMS[name], item) for item in items]
        else:
            optional = {"mqtt": MqttConfig, "http": HttpConfig}
            fields[name] = _try(optional.get(name, info.annotation), value)
            if fields[name] is None and name not in optional:
                fields[name] = info.get_default(call_default_factory=True)
    return SiteConfig.model_construct(**fields)


def _invalid_ids(data: dict) -> frozenset[str]:
    ids = set()
    for name, model in _LIST_ITEMS.items():
        items = data.get(name)
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and _try(model, item) is None:
                ids.update(str(item[k]) for k in ("id", "serial") if k in item)
    return frozenset(ids)


def _try(model, value):
    try:
        return model.model_validate(value)
    except (ValidationError, TypeError):
        return None


def parse_config(data: dict, source: str = "<config>") -> SiteConfig:
    try:
        cfg = SiteConfig.model_validate(data)
    except ValidationError as err:
        problems = _pydantic_problems(err)
        if isinstance(data, dict):
            problems += cross_check(_salvage(data), _invalid_ids(data))
        raise ConfigError(source, problems) from None
    problems = cross_check(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> SiteConfig:
    """Reads and validates FILE; relative paths inside it (database, TLS files) are taken from the file's folder."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [Problem("(file)", f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [Problem("(syntax)", f"not valid TOML: {exc}")]) from None
    except RecursionError:
        # tomllib recurses once per level of nested arrays or inline tables; no setting needs more than two.
        raise ConfigError(str(path), [Problem("(syntax)", "arrays or inline tables nested too deeply")]) from None
    cfg = resolve_paths(parse_config(data, str(path)), path.parent)
    problems = check_files(cfg)
    if problems:
        raise ConfigError(str(path), problems)
    return cfg


SQLITE_HEADER = b"SQLite format 3\x00"


def check_files(cfg: SiteConfig) -> list[Problem]:
    """What the file system must hold for ``serve`` to start: a usable database path and readable,
    loadable TLS files. Checked by ``check-config`` and again by ``serve`` before anything starts, so a
    bad path is named with its field instead of surfacing as ``sqlite3.DatabaseError`` or a bare ``[Errno 2]``.
    """
    problems = _database_problems(cfg.storage.database)
    srv = cfg.server
    if srv.security_profile in (2, 3):
        problems += _tls_problems("server", srv.tls_cert, srv.tls_key, srv.tls_ca)
    if cfg.mqtt is not None and cfg.mqtt.tls:
        problems += _tls_problems("mqtt", cfg.mqtt.tls_cert, cfg.mqtt.tls_key, cfg.mqtt.tls_ca)
    return problems


def _database_problems(database: str) -> list[Problem]:
    def problem(message: str) -> list[Problem]:
        return [Problem("storage.database", message)]

    if not database.strip():
        return problem("is empty; give a file path such as var/csms.sqlite")
    if database == ":memory:":
        return []
    path = Path(database)
    if path.is_dir():
        return problem(f"{database!r} is a directory; give a file path inside it, e.g. {str(path / 'csms.sqlite')!r}")
    if path.exists():
        try:
            with path.open("rb") as f:
                header = f.read(len(SQLITE_HEADER))
        except OSError as exc:
            return problem(f"cannot read {database!r}: {exc.strerror}")
        if header and header != SQLITE_HEADER:
            return problem(f"{database!r} is not a SQLite database (refusing to overwrite it)")
        return []
    for parent in path.parents:  # serve creates missing folders; an existing ancestor must be a folder
        if parent.exists():
            if not parent.is_dir():
                return problem(f"{str(parent)!r} is not a directory, so {database!r} cannot be created")
            break
    return []


def _tls_problems(section: str, cert: str | None, key: str | None, ca: str | None) -> list[Problem]:
    problems = []
    for name, file in (("tls_cert", cert), ("tls_key", key), ("tls_ca", ca)):
        if file is None:
            continue
        try:
            with open(file, "rb"):
                pass
        except OSError as exc:
            problems.append(Problem(f"{section}.{name}", f"cannot read {file!r}: {exc.strerror}"))
    if problems:
        return problems
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (ssl.SSLError, OSError) as exc:
            problems.append(Problem(f"{section}.tls_cert", f"cannot load {cert!r} with key {key!r}: {exc}"))
    if ca is not None:
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as exc:
            problems.append(Problem(f"{section}.tls_ca", f"cannot load {ca!r} as a CA certificate: {exc}"))
    return problems


def resolve_paths(cfg: SiteConfig, base: Path) -> SiteConfig:
    def fix(p: str | None) -> str | None:
        if not p or not p.strip() or p == ":memory:" or Path(p).is_absolute():
            return p  # an empty path stays empty, for check_files to name
        return str((base / p).resolve())

    server = cfg.server.model_copy(update={k: fix(getattr(cfg.server, k)) for k in ("tls_cert", "tls_key", "tls_ca")})
    storage = cfg.storage.model_copy(update={"database": fix(cfg.storage.database)})
    gateway = cfg.gateway.model_copy(update={"register_dirs": [fix(d) for d in cfg.gateway.register_dirs]})
    mqtt = cfg.mqtt
    if mqtt is not None:
        mqtt = mqtt.model_copy(update={k: fix(getattr(mqtt, k)) for k in ("tls_ca", "tls_cert", "tls_key")})
    return cfg.model_copy(update={"server": server, "storage": storage, "gateway": gateway, "mqtt": mqtt})
