"""Reading a config file: TOML, then pydantic's pass, then the cross-checks, then the files it names.

Validation happens in two passes so that an operator sees every problem at once: pydantic checks the
shape of each section (types, ranges, unknown keys), then :func:`~csms.config.checks.cross_check` checks
what only the whole file can tell. A file that fails the first pass is salvaged (its valid parts kept, in
place) so the second still runs; :class:`~csms.config.errors.ConfigError` carries every problem.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from pydantic import ValidationError

from meter_gateway.config import MeterConfig, MqttConfig

from .checks import cross_check
from .errors import ConfigError, Problem, pydantic_problems
from .files import check_files, resolve_paths
from .services import HttpConfig
from .site import ChargerConfig, CircuitConfig, IdTokenConfig, LoadBalancerConfig, OrganisationConfig, SiteConfig


_LIST_ITEMS = {"organisations": OrganisationConfig, "id_tokens": IdTokenConfig, "meters": MeterConfig,
               "chargers": ChargerConfig, "load_balancers": LoadBalancerConfig, "circuits": CircuitConfig}


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
        problems = pydantic_problems(err)
        if isinstance(data, dict):
            problems += cross_check(_salvage(data), _invalid_ids(data))
        raise ConfigError(source, problems) from None
    problems = cross_check(cfg)
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(path: str | Path) -> SiteConfig:
    """Reads and validates FILE; relative paths inside it (database, TLS files) are taken from the file's folder."""
    return read_config(path)[0]


def read_config(path: str | Path) -> tuple[SiteConfig, str]:
    """:func:`load_config`, with the SHA-256 of the very bytes validated: a reload names the version it put
    in force by its content, read once, so the digest cannot belong to a file edited in between."""
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
    return cfg, hashlib.sha256(raw).hexdigest()
