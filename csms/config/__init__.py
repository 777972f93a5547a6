"""The operator's site config: a TOML file validated with pydantic.

:mod:`.services` holds the sections that say how ``csms serve`` runs, :mod:`.site` the site itself
(organisations, chargers, groups; meters come from :mod:`meter_gateway.config`), :mod:`.loading` reads a
file through both validation passes, :mod:`.checks` the cross-checks of the second pass, :mod:`.files`
what the file system must hold, and :mod:`.errors` how problems are reported. The names below are the
package's API.
"""

from .checks import config_warnings, cross_check
from .cluster import ClusterConfig
from .diff import Change, ConfigDiff, ConfigVersion, ReloadResult, diff_configs
from .errors import ConfigError, Problem
from .files import check_files, resolve_paths
from .loading import load_config, parse_config, read_config
from .services import GatewayConfig, HttpConfig, ServerConfig, SmartChargingConfig, StorageConfig
from .site import (
    ChargerConfig,
    CircuitConfig,
    IdTokenConfig,
    LoadBalancerConfig,
    OrganisationConfig,
    SiteConfig,
    charger_phases,
    default_margin,
)

__all__ = [
    "Change", "ChargerConfig", "ClusterConfig", "CircuitConfig", "ConfigDiff", "ConfigError", "ConfigVersion", "ReloadResult",
    "diff_configs", "read_config", "GatewayConfig", "HttpConfig", "IdTokenConfig", "LoadBalancerConfig",
    "OrganisationConfig", "Problem", "ServerConfig", "SiteConfig", "SmartChargingConfig", "StorageConfig",
    "charger_phases", "check_files", "config_warnings", "cross_check", "default_margin", "load_config",
    "parse_config", "resolve_paths",
]
