"""What a simulated charger is built from: identity, OCPP version, electrics, timing and its quirks."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.misbehaviour import Misbehaviour
from simulators.profiles import Version


@dataclass
class SimChargerConfig:
    id: str
    password: str | None = None
    version: Version = "ocpp1.6"
    phases: int = 3
    #: Which building phases the charger's L1, L2, L3 land on (R=L1, S=L2, T=L3 of the building).
    phase_rotation: str = "RST"
    #: How it is really wired, when that differs from ``phase_rotation`` (what it reports in
    #: ConnectorPhaseRotation / PhaseRotation, what the installer believed): a commissioning fault.
    wired_rotation: str | None = None
    max_current: float = 32.0
    connectors: int = 1
    misbehaviour: Misbehaviour = field(default_factory=Misbehaviour)
    voltage: float = 230.0
    #: Token it presents when a car is plugged in (local start); None waits for a remote start.
    id_tag: str | None = "SIMTAG0001"
    vendor: str = "FuseGuard"
    model: str = "SimCharger"
    #: Meter-values interval until the central system configures one (s of clock time; 0 = off).
    meter_interval: float = 10.0
    heartbeat_interval: float = 300.0
    #: Seconds a remote start waits for a car to be plugged in before it lapses (1.6 ConnectionTimeOut,
    #: 2.0.1 TxCtrlr.EVConnectionTimeOut).
    connection_timeout: float = 60.0
    #: Physics step in clock seconds.
    tick: float = 0.25
    backoff_min: float = 0.5
    backoff_max: float = 30.0
    response_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.version not in ("ocpp1.6", "ocpp2.0.1"):
            raise ValueError(f"charger {self.id}: version must be 'ocpp1.6' or 'ocpp2.0.1', not {self.version!r}")
        if self.phases not in (1, 3):
            raise ValueError(f"charger {self.id}: phases must be 1 or 3")
        if sorted(self.phase_rotation) != ["R", "S", "T"]:
            raise ValueError(f"charger {self.id}: phase_rotation must be a permutation of RST, e.g. 'RST' or 'STR'")
        if self.wired_rotation is not None and sorted(self.wired_rotation) != ["R", "S", "T"]:
            raise ValueError(f"charger {self.id}: wired_rotation must be a permutation of RST, e.g. 'STR'")
        if self.connectors < 1:
            raise ValueError(f"charger {self.id}: needs at least one connector")
