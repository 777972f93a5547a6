"""What the file system must hold for the config: the database path, the TLS files and the register maps it
names."""

from __future__ import annotations

import sqlite3
import ssl
from pathlib import Path

from meter_gateway.registers import RegisterMapError, load_register_map

from .errors import Problem
from .site import SiteConfig




def check_files(cfg: SiteConfig) -> list[Problem]:
    """What the file system must hold for ``serve`` to start: a usable database path and readable,
    loadable TLS files. Checked by ``check-config`` and again by ``serve`` before anything starts, so a
    bad path is named with its field instead of surfacing as ``sqlite3.DatabaseError`` or a bare ``[Errno 2]``.
    """
    problems = _database_problems(cfg.storage.database) if cfg.storage.url is None else []
    srv = cfg.server
    if srv.security_profile in (2, 3):
        problems += _tls_problems("server", srv.tls_cert, srv.tls_key, srv.tls_ca)
    if cfg.http is not None and Path(cfg.http.upload_dir).exists() and not Path(cfg.http.upload_dir).is_dir():
        problems.append(Problem("http.upload_dir", f"{cfg.http.upload_dir!r} is not a directory; name a folder "
                                                   "(created when the first file arrives), e.g. var/uploads"))
    if cfg.mqtt is not None and cfg.mqtt.tls:
        problems += _tls_problems("mqtt", cfg.mqtt.tls_cert, cfg.mqtt.tls_key, cfg.mqtt.tls_ca)
    if cfg.gateway.mode != "mqtt":
        problems += _register_map_problems(cfg)
    return problems


def _register_map_problems(cfg: SiteConfig) -> list[Problem]:
    """Every Modbus meter's ``profile`` must name a register map that loads: this process reads the meters
    itself (``[gateway] mode = "mqtt"``: a meter gateway elsewhere does, with its own folders)."""
    problems = []
    for i, meter in enumerate(cfg.meters):
        if meter.source != "modbus":
            continue
        try:
            load_register_map(meter.profile, cfg.gateway.register_dirs)
        except RegisterMapError as exc:
            if exc.field == "(file)" and exc.source == f"{meter.profile}.toml":  # not found in any folder
                message = f"{exc.message}; name one of those, or put {exc.source} in a folder of [gateway] register_dirs"
            else:
                message = f"register map {meter.profile!r} cannot be used: {exc}"
            problems.append(Problem(f"meters.{i}.profile", message))
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
        refusal = _not_sqlite(path)
        return problem(refusal.format(database=repr(database))) if refusal else []
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
    storage = cfg.storage if cfg.storage.url is not None else \
        cfg.storage.model_copy(update={"database": fix(cfg.storage.database)})
    gateway = cfg.gateway.model_copy(update={"register_dirs": [fix(d) for d in cfg.gateway.register_dirs]})
    mqtt = cfg.mqtt
    if mqtt is not None:
        mqtt = mqtt.model_copy(update={k: fix(getattr(mqtt, k)) for k in ("tls_ca", "tls_cert", "tls_key")})
    http = cfg.http
    if http is not None:
        http = http.model_copy(update={"upload_dir": fix(http.upload_dir)})
    return cfg.model_copy(update={"server": server, "storage": storage, "gateway": gateway, "mqtt": mqtt,
                                  "http": http})


def _not_sqlite(path: Path) -> str | None:
    """Why the existing file at ``path`` cannot be our database ("{database}" stands for its name), or None.

    Asked through SQLite, never by opening the file ourselves: ``csms serve`` checks the file again on every
    reload while its own connection holds the database, and closing any descriptor of that file drops every
    POSIX lock the process holds on it, after which another process's reader (``csms transactions``) may
    checkpoint and delete the write-ahead log the server still writes to. SQLite's own connections in one
    process share their locks, and a read-only one never checkpoints.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as exc:
        return f"cannot read {{database}}: {exc}"
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return None  # a database another connection is writing to is a database
        if "not a database" in text:
            return "{database} is not a SQLite database (refusing to overwrite it)"
        return f"cannot read {{database}}: {text}"
    finally:
        conn.close()
    return None
