"""The site the operator describes: organisations, id tokens, chargers, load-balancing groups, and the whole file.

Meters are :class:`meter_gateway.config.MeterConfig`, shared with ``meter-gateway run``.
"""

from __future__ import annotations

import re
import weakref
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator, model_validator

from meter_gateway.config import MeterConfig, MqttConfig, StrictModel

from .cluster import ClusterConfig
from .services import GatewayConfig, HttpConfig, ServerConfig, SmartChargingConfig, StorageConfig

STATION_ID_RE = re.compile(r"^[A-Za-z0-9*\-_=+|@.]{1,48}$")


class OrganisationConfig(StrictModel):
    id: str
    name: str
    email: str | None = None
    #: "accept-all": every id token is accepted; "list": only [[id_tokens]] of this organisation.
    authorization: Literal["accept-all", "list"] = "accept-all"


class IdTokenConfig(StrictModel):
    organisation: str
    token: str = Field(min_length=1, max_length=36)
    #: A TOML date-time or an ISO 8601 string (the one field where text is converted: both are written).
    expiry: datetime | None = Field(None, strict=False)
    #: "Blocked" refuses the token (1.6 and 2.0.1 status Blocked) without forgetting it.
    status: Literal["Accepted", "Blocked"] = "Accepted"
    #: Group id (1.6 parentIdTag, 2.0.1 groupIdToken): tokens sharing it are one group, e.g. a household's
    #: cards. A listed token of the same organisation or a pure group id; at most 20 characters (1.6).
    parent: str | None = None  # its length and organisation: csms.config.checks (with the 1.6 reason)
    #: True lets the token run several transactions at once; by default a second one is ConcurrentTx.
    concurrent: bool = False


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
    #: The circuit (sub-board) the group's chargers hang under, unless a circuit lists them itself; None: directly
    #: under the main fuse (``supply_max_current``), as every group without circuits.
    circuit: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_margin(cls, data: object) -> object:
        return _with_default_margin(data, "supply_max_current")

    @field_validator("phases")
    @classmethod
    def _phases(cls, v: list[int]) -> list[int]:
        bad = [p for p in v if p not in (1, 2, 3)]
        if bad:
            raise ValueError(f"phases {bad} are outside 1..3")
        if not v or len(set(v)) != len(v):
            raise ValueError("phases must be a non-empty list of distinct phases, e.g. [1, 2, 3] or [1]")
        return v


class CircuitConfig(StrictModel):
    """A node of the site's tree below the main fuse: a sub-board with its own fuse, and optionally its own meter.

    Its chargers are those it lists (wired directly on it) plus, transitively, those of its child circuits and of a
    group that names it as ``circuit``. Every phase of it holds ``max_current``: without a meter nothing else is
    known to draw on it, so the limits of the chargers under it must sum to no more than ``max_current - margin``;
    with a meter, its measured other load is taken off first, as the group's mains meter does for the main fuse.
    """

    id: str
    name: str = ""
    #: The circuit this one hangs under; None: directly under the main fuse of its group.
    parent: str | None = None
    #: A per phase: the sub-board's fuse.
    max_current: float = Field(gt=0, le=4000)
    #: A meter on the sub-board's feed; None: bounded by the sum of the limits given to the chargers under it.
    meter: str | None = None
    #: A per phase the chargers under a metered circuit may draw together while its meter is stale.
    max_current_offline: float | None = Field(None, ge=0, le=4000)
    #: Chargers wired directly on this circuit.
    chargers: list[str] = Field(default_factory=list)
    #: A per phase kept free below the circuit's fuse; default as a group's (1 % of it, at least 0.25 A).
    margin: float = Field(ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _default_margin(cls, data: object) -> object:
        return _with_default_margin(data, "max_current")


def _with_default_margin(data: object, fuse_key: str) -> object:
    """``margin`` defaults to :func:`default_margin` of the item's fuse (``fuse_key``)."""
    if isinstance(data, dict) and "margin" not in data:
        supply = data.get(fuse_key)
        if isinstance(supply, (int, float)) and not isinstance(supply, bool):
            return {**data, "margin": default_margin(float(supply))}
        # The fuse is missing or not a number, which is reported on its own: "margin: Field required" beside
        # it would send the installer after a field the file need not have.
        return {**data, "margin": default_margin(0.0)}
    return data


class SiteConfig(StrictModel):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    mqtt: MqttConfig | None = None
    gateway: GatewayConfig = Field(default_factory=GatewayConfig)
    smart_charging: SmartChargingConfig = Field(default_factory=SmartChargingConfig)
    http: HttpConfig | None = None
    #: The bus between ``csms serve`` roles (gateway, controller); unused by a single ``--role all`` process.
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    organisations: list[OrganisationConfig] = Field(default_factory=list)
    id_tokens: list[IdTokenConfig] = Field(default_factory=list)
    meters: list[MeterConfig] = Field(default_factory=list)
    chargers: list[ChargerConfig] = Field(default_factory=list)
    load_balancers: list[LoadBalancerConfig] = Field(default_factory=list)
    circuits: list[CircuitConfig] = Field(default_factory=list)

    def charger(self, station_id: str) -> ChargerConfig | None:
        return _lookup(self).chargers.get(station_id)

    def meter(self, serial: str) -> MeterConfig | None:
        return next((m for m in self.meters if m.serial == serial), None)

    def organisation(self, org_id: str) -> OrganisationConfig | None:
        return next((o for o in self.organisations if o.id == org_id), None)

    def group_of(self, station_id: str) -> LoadBalancerConfig | None:
        return _lookup(self).groups.get(station_id)

    def circuit(self, circuit_id: str) -> CircuitConfig | None:
        return next((c for c in self.circuits if c is not None and c.id == circuit_id), None)

    def circuit_of(self, station_id: str) -> str | None:
        """The circuit a charger is wired on: the one listing it, else its group's ``circuit``; None: the main
        fuse directly."""
        listed = _lookup(self).circuits.get(station_id)
        if listed is not None:
            return listed
        group = self.group_of(station_id)
        return group.circuit if group is not None else None

    def circuit_path(self, circuit_id: str | None) -> list[str]:
        """The circuit and its ancestors up to the main fuse, nearest first (stops at an unknown id or a cycle,
        which the checks report)."""
        path: list[str] = []
        while circuit_id is not None and circuit_id not in path:
            node = self.circuit(circuit_id)
            if node is None:
                break
            path.append(circuit_id)
            circuit_id = node.parent
        return path


class _Lookup:
    """A site's chargers, their groups and the circuits listing them, by station id: the first in file order, as a
    scan of the lists finds. A site of 20,000 chargers asks for each charger's config, group and circuit while it
    puts a view in force (the balancer, the delivery, a controller's led part): scanning the lists was quadratic,
    20 s of CPU for ``charger()`` alone on a 2-core VM, long enough for a controller to lose its leases."""

    __slots__ = ("lists", "sizes", "chargers", "groups", "circuits")

    def __init__(self, site: SiteConfig):
        self.lists = (site.chargers, site.load_balancers, site.circuits)
        self.sizes = tuple(len(x) for x in self.lists)
        self.chargers: dict[str, ChargerConfig] = {}
        for c in site.chargers:
            self.chargers.setdefault(c.id, c)
        self.groups: dict[str, LoadBalancerConfig] = {}
        for g in site.load_balancers:
            for cid in g.chargers:
                self.groups.setdefault(cid, g)
        self.circuits: dict[str, str] = {}
        for circuit in site.circuits:
            if circuit is not None:
                for cid in circuit.chargers:
                    self.circuits.setdefault(cid, circuit.id)

    def fresh(self, site: SiteConfig) -> bool:
        """Built from these very lists, still as long (a config is frozen; its lists are not changed in place)."""
        lists = self.lists
        return (lists[0] is site.chargers and lists[1] is site.load_balancers and lists[2] is site.circuits
                and self.sizes == (len(lists[0]), len(lists[1]), len(lists[2])))


#: The lookup of each SiteConfig alive, by ``id()`` (a weak reference drops it with the config). Kept beside the
#: model rather than in it: pydantic copies and compares a model's private state.
_LOOKUPS: dict[int, tuple[weakref.ReferenceType[SiteConfig], _Lookup]] = {}


def _lookup(site: SiteConfig) -> _Lookup:
    key = id(site)
    entry = _LOOKUPS.get(key)
    if entry is not None and entry[0]() is site and entry[1].fresh(site):
        return entry[1]
    look = _Lookup(site)
    _LOOKUPS[key] = (weakref.ref(site, lambda _, key=key: _LOOKUPS.pop(key, None)), look)
    return look


def default_margin(supply_max_current: float) -> float:
    """The margin a group gets when its config names none: 1 % of the fuse (a class 1 meter's error), at least
    0.25 A."""
    return round(max(0.25, 0.01 * supply_max_current), 2)


def charger_phases(c: ChargerConfig) -> tuple[int, ...]:
    """Building phases that charger phases L1, L2, L3 land on, in charger order (R=1, S=2, T=3)."""
    mapped = tuple("RST".index(ch) + 1 for ch in c.phase_rotation)
    return mapped[: c.phases]
