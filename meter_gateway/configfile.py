"""Reading the gateway's part of the operator's site config (``[mqtt]``, ``[[meters]]``, ``[gateway]``).

``meter_gateway`` must not import ``csms``, so ``meter-gateway run`` cannot use ``csms.config``; it reads
the same TOML file with the same meter and broker models and ignores every other section, which is the
central system's business (``csms config check`` validates the whole file).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import MeterConfig, MqttConfig


class ConfigFileError(Exception):
    """Every problem found, one ``FILE: path.to.field: message`` per line."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("\n".join(lines))


class _GatewaySection(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    register_dirs: list[str] = Field(default_factory=list)


class _GatewayFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    mqtt: MqttConfig | None = None
    meters: list[MeterConfig] = Field(default_factory=list)
    gateway: _GatewaySection = Field(default_factory=_GatewaySection)


@dataclass(frozen=True)
class GatewaySettings:
    mqtt: MqttConfig | None
    meters: list[MeterConfig]
    register_dirs: list[str]

    def meter(self, serial: str) -> MeterConfig | None:
        return next((m for m in self.meters if m.serial == serial), None)


def _message(err: dict) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling against the README's config reference)"
    msg = err["msg"]
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg


def load_gateway_settings(path: str | Path) -> GatewaySettings:
    """Reads FILE; relative register_dirs and MQTT TLS files are taken from the file's folder."""
    path = Path(path)
    src = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigFileError([f"{src}: (file): cannot read: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigFileError([f"{src}: (syntax): not valid TOML: {exc}"]) from None
    try:
        parsed = _GatewayFile.model_validate(data)
    except ValidationError as err:
        raise ConfigFileError([
            f"{src}: {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {_message(e)}" for e in err.errors()
        ]) from None
    problems = []
    seen: dict[str, int] = {}
    for i, m in enumerate(parsed.meters):
        if m.serial in seen:
            problems.append(f"{src}: meters.{i}.serial: duplicate serial {m.serial!r} (first at meters.{seen[m.serial]})")
        seen.setdefault(m.serial, i)
        if m.source == "mqtt" and parsed.mqtt is None:
            problems.append(f'{src}: meters.{i}.source: source = "mqtt" needs an [mqtt] section naming the broker')
    if problems:
        raise ConfigFileError(problems)

    base = path.parent

    def fix(p: str | None) -> str | None:
        return p if p is None or Path(p).is_absolute() else str((base / p).resolve())

    mqtt = parsed.mqtt
    if mqtt is not None:
        mqtt = mqtt.model_copy(update={k: fix(getattr(mqtt, k)) for k in ("tls_ca", "tls_cert", "tls_key")})
    return GatewaySettings(mqtt, list(parsed.meters), [fix(d) or d for d in parsed.gateway.register_dirs])
