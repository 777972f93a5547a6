"""The state of one connector (one EVSE: the 1.6 connectorId is the 2.0.1 EVSE id here) and its transaction."""

from __future__ import annotations

from dataclasses import dataclass

from simulators.ev import EVModel


@dataclass
class Session:
    """One transaction on one connector, as the charger knows it."""

    local_id: str
    id_tag: str | None
    started_at: float
    meter_start_wh: float
    #: The id the central system knows it by: 1.6 assigns it in StartTransaction.conf, 2.0.1 = local_id.
    transaction_id: str | None = None
    remote_start_id: int | None = None
    seq_no: int = 0
    #: Whether the start / end happened while the charger was offline (2.0.1 reports it).
    started_offline: bool = False
    ended_offline: bool = False
    #: False while a card presented online waits for the central system's Authorize answer: a real charger
    #: closes its contactor only once the card is accepted (offline, it authorizes locally and starts at once).
    authorized: bool = True
    #: The reservation this transaction used up (sent as reservationId with its start).
    reservation_id: int | None = None

    def next_seq(self) -> int:
        n = self.seq_no
        self.seq_no += 1
        return n


@dataclass(frozen=True)
class Reservation:
    """A ReserveNow the charger accepted: the connector waits for this token (or one of its group)."""

    id: int
    id_tag: str
    #: The 1.6 parentIdTag / 2.0.1 groupIdToken it was sent: a card whose Authorize answer names the same
    #: parent may use the reservation too.
    parent: str | None
    expires_at: float


@dataclass
class Connector:
    id: int
    ev: EVModel | None = None
    session: Session | None = None
    operative: bool = True
    #: Set when the central system changes availability during a transaction (applies at its end).
    scheduled_operative: bool | None = None
    #: Token of a remote start that waits for a car to be plugged in.
    remote_tag: str | None = None
    remote_start_id: int | None = None
    remote_profile: dict | None = None
    reservation: Reservation | None = None
    status: str = ""
    reported_status: str = ""
    offered: float = 0.0
    number_phases: int = 3
    phase_to_use: int | None = None
    current: tuple[float, float, float] = (0.0, 0.0, 0.0)
    energy_wh: float = 0.0
