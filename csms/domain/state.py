"""Live, version-agnostic state of the stations connected to the central system.

The OCPP inbound handlers (``csms.ocpp.v16.inbound``, ``csms.ocpp.v201.inbound``) translate each message into a call on
:class:`SiteState`; everything downstream (balancer controller, smart-charging delivery, storage,
operator view) reads this state and listens to its :class:`Event` stream. Nothing here knows about
OCPP versions, sockets or SQLite.

Phase numbering: currents in a :class:`PhaseSample` are in the *charger's own* numbering (L1..L3 as
the charger reports them). Mapping to building phases goes through the charger's phase rotation,
which is the balancer's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Version(StrEnum):
    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"


@dataclass
class BootInfo:
    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None


@dataclass
class ConnectorState:
    connector_id: int
    #: Normalised status: Available, Preparing, Charging, SuspendedEV, SuspendedEVSE, Finishing,
    #: Reserved, Unavailable, Faulted, Occupied (2.0.1 uses Occupied where 1.6 is more specific).
    status: str = "Unknown"
    error_code: str | None = None
    updated_at: float = 0.0


@dataclass
class PhaseSample:
    """One meter-values sample from a charger, in the charger's phase numbering."""

    taken_at: float
    current: tuple[float | None, float | None, float | None] = (None, None, None)
    voltage: tuple[float | None, float | None, float | None] = (None, None, None)
    energy_wh: float | None = None
    #: The limit the charger says it currently offers (Current.Offered), if it reports one.
    offered: float | None = None

    @property
    def phases_in_use(self) -> tuple[int, ...]:
        """Charger phases (1..3) drawing more than 1 A in this sample."""
        return tuple(i + 1 for i, a in enumerate(self.current) if a is not None and a > 1.0)


@dataclass
class Transaction:
    transaction_id: str
    connector_id: int
    id_token: str | None
    started_at: float
    meter_start_wh: float | None = None
    stopped_at: float | None = None
    meter_stop_wh: float | None = None
    stop_reason: str | None = None


#: Bounds of what a real transaction reports: a register is never negative and no charger counts a TWh;
#: OCPP did not exist before 2000 and a clock a day ahead of ours is wrong.
MAX_PLAUSIBLE_WH = 1e9
EARLIEST_PLAUSIBLE = 946684800.0  # 2000-01-01T00:00:00Z
FUTURE_SLACK_S = 86400.0


def implausible(tx: Transaction, now: float) -> list[str]:
    """What is absurd about a transaction's values (empty when nothing is), one phrase each."""
    problems = []
    for name in ("meter_start_wh", "meter_stop_wh"):
        wh = getattr(tx, name)
        if wh is not None and not 0 <= wh <= MAX_PLAUSIBLE_WH:
            problems.append(f"{name} {wh:g} is outside 0..{MAX_PLAUSIBLE_WH:g} Wh")
    if tx.meter_start_wh is not None and tx.meter_stop_wh is not None and tx.meter_stop_wh < tx.meter_start_wh:
        problems.append(f"meter_stop_wh {tx.meter_stop_wh:g} is below meter_start_wh {tx.meter_start_wh:g}")
    for name in ("started_at", "stopped_at"):
        at = getattr(tx, name)
        if at is not None and not EARLIEST_PLAUSIBLE <= at <= now + FUTURE_SLACK_S:
            problems.append(f"{name} {at:.0f} is before 2000 or more than a day ahead of the central system")
    return problems


@dataclass(frozen=True)
class MaintenanceStatus:
    """The latest firmware or log-upload progress a station reported (as it worded it: Downloading, Installed,
    Uploaded, UploadFailed...), when, and for which request (2.0.1 requestId; None in 1.6)."""

    status: str
    at: float
    request_id: int | None = None


#: The kinds of :attr:`StationState.maintenance`: a firmware update, a log (1.6 diagnostics) upload.
MAINTENANCE_KINDS = ("firmware", "log")


@dataclass
class StationState:
    station_id: str
    version: Version | None = None
    connected: bool = False
    connected_at: float | None = None
    disconnected_at: float | None = None
    boot: BootInfo | None = None
    last_seen: float = 0.0
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    #: Running transactions keyed by connector (1.6 connectorId / 2.0.1 EVSE id).
    transactions: dict[int, Transaction] = field(default_factory=dict)
    #: Latest sample per connector/EVSE (0 = the station's main meter).
    samples: dict[int, PhaseSample] = field(default_factory=dict)
    #: Latest firmware / log status, by kind ("firmware", "log").
    maintenance: dict[str, MaintenanceStatus] = field(default_factory=dict)

    @property
    def charging(self) -> bool:
        return bool(self.transactions)

    def latest_sample(self) -> PhaseSample | None:
        """Newest sample of any connector, preferring an outlet over the station's main meter."""
        outlets = [s for cid, s in self.samples.items() if cid != 0]
        pool = outlets or list(self.samples.values())
        return max(pool, key=lambda s: s.taken_at, default=None)


# ---- events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    station_id: str
    at: float


@dataclass(frozen=True)
class StationConnected(Event):
    version: Version


@dataclass(frozen=True)
class StationDisconnected(Event):
    pass


@dataclass(frozen=True)
class StationBooted(Event):
    boot: BootInfo


@dataclass(frozen=True)
class StatusChanged(Event):
    connector_id: int
    status: str
    error_code: str | None


@dataclass(frozen=True)
class TransactionStarted(Event):
    transaction: Transaction


@dataclass(frozen=True)
class TransactionEnded(Event):
    transaction: Transaction


@dataclass(frozen=True)
class MeterSampled(Event):
    connector_id: int
    sample: PhaseSample


Listener = Callable[[Event], None]


class SiteState:
    """All stations' live state plus a synchronous event fan-out.

    Listeners are called inline and must not block: a listener that has real work to do
    (the balancer controller, storage) queues it and returns.
    """

    def __init__(self) -> None:
        self.stations: dict[str, StationState] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def station(self, station_id: str) -> StationState:
        st = self.stations.get(station_id)
        if st is None:
            st = self.stations[station_id] = StationState(station_id)
        return st

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    # The adapters call these. Each updates the state, then tells the listeners.

    def connected(self, station_id: str, version: Version, at: float) -> None:
        st = self.station(station_id)
        st.version, st.connected, st.connected_at, st.last_seen = version, True, at, at
        self._emit(StationConnected(station_id, at, version))

    def disconnected(self, station_id: str, at: float) -> None:
        st = self.station(station_id)
        st.connected, st.disconnected_at = False, at
        self._emit(StationDisconnected(station_id, at))

    def seen(self, station_id: str, at: float) -> None:
        self.station(station_id).last_seen = at

    def booted(self, station_id: str, boot: BootInfo, at: float) -> None:
        self.station(station_id).boot = boot
        self._emit(StationBooted(station_id, at, boot))

    def status(self, station_id: str, connector_id: int, status: str, error_code: str | None, at: float) -> None:
        conn = self.station(station_id).connectors.setdefault(connector_id, ConnectorState(connector_id))
        conn.status, conn.error_code, conn.updated_at = status, error_code, at
        self._emit(StatusChanged(station_id, at, connector_id, status, error_code))

    def transaction_started(self, station_id: str, tx: Transaction) -> None:
        self.station(station_id).transactions[tx.connector_id] = tx
        self._emit(TransactionStarted(station_id, tx.started_at, tx))

    def transaction_ended(self, station_id: str, tx: Transaction) -> None:
        st = self.station(station_id)
        running = st.transactions.get(tx.connector_id)
        if running is not None and running.transaction_id == tx.transaction_id:
            del st.transactions[tx.connector_id]
        self._emit(TransactionEnded(station_id, tx.stopped_at or tx.started_at, tx))

    def sampled(self, station_id: str, connector_id: int, sample: PhaseSample) -> None:
        self.station(station_id).samples[connector_id] = sample
        self._emit(MeterSampled(station_id, sample.taken_at, connector_id, sample))

    def maintenance(self, station_id: str, kind: str, status: MaintenanceStatus) -> None:
        """A firmware or log status notification (no listener needs it: the operator view reads it)."""
        self.station(station_id).maintenance[kind] = status

    def find_transaction(self, station_id: str, transaction_id: str) -> Transaction | None:
        st = self.stations.get(station_id)
        if st is None:
            return None
        return next((t for t in st.transactions.values() if t.transaction_id == transaction_id), None)
