"""The arguments of each operator command, as pydantic models that refuse unknown fields.

The models hold what is true whatever the station's version (types, ranges, lengths both versions accept);
what only one version refuses (a 1.6 idTag over 20 characters, a non-numeric 1.6 transaction id) is checked
where the command is mapped to that version, and reported the same way: a :class:`~.results.BadArguments`
naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Arguments(BaseModel):
    """Base of every command's arguments: unknown fields are errors (a typo must not be ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteStart(Arguments):
    #: The id token the transaction is started for (1.6 idTag ≤ 20 characters, 2.0.1 idToken ≤ 36).
    id_token: str = Field(min_length=1, max_length=36)
    #: 1.6 connectorId / 2.0.1 evseId; absent: the station picks one.
    connector: int | None = Field(None, ge=1)


class RemoteStop(Arguments):
    #: The transaction to stop, as the central system knows it (1.6: a number; 2.0.1: the station's id).
    transaction_id: str = Field(min_length=1, max_length=36)


class Reset(Arguments):
    #: "soft" (1.6 Soft / 2.0.1 OnIdle: waits for transactions to end gracefully) or "hard"
    #: (1.6 Hard / 2.0.1 Immediate: stops transactions and reboots now).
    type: Literal["soft", "hard"] = "soft"


class Unlock(Arguments):
    #: 1.6 connectorId / 2.0.1 evseId.
    connector: int = Field(ge=1)
    #: 2.0.1 only: the connector on that EVSE (1.6 has one connector per connectorId).
    evse_connector: int = Field(1, ge=1)


class ChangeAvailability(Arguments):
    availability: Literal["Operative", "Inoperative"]
    #: 0 (default) = the whole station; else 1.6 connectorId / 2.0.1 evseId.
    connector: int = Field(0, ge=0)


class ClearCache(Arguments):
    pass


class DataTransfer(Arguments):
    vendor_id: str = Field(min_length=1, max_length=255)
    message_id: str | None = Field(None, max_length=50)
    #: 1.6: text only; 2.0.1: any JSON value.
    data: Any = None


class TriggerMessage(Arguments):
    #: The message the station is to send, as its version names it (see :mod:`.catalogue`).
    message: str = Field(min_length=1, max_length=50)
    #: 1.6 connectorId / 2.0.1 evseId; absent: the whole station.
    connector: int | None = Field(None, ge=1)


class GetConfiguration(Arguments):
    #: 1.6 configuration keys (empty: all of them); 2.0.1 ``Component.Variable`` names, written
    #: ``Component[@evse].Variable[:instance]`` (e.g. ``SampledDataCtrlr.TxUpdatedInterval``,
    #: ``EVSE@1.PhaseRotation``); at least one.
    keys: list[str] = Field(default_factory=list, max_length=100)


class ChangeConfiguration(Arguments):
    #: A 1.6 configuration key or a 2.0.1 ``Component[@evse].Variable[:instance]``.
    key: str = Field(min_length=1, max_length=200)
    value: str = Field(max_length=1000)


class GetBaseReport(Arguments):
    #: 2.0.1 only. ConfigurationInventory: the variables that can be set; FullInventory: every variable;
    #: SummaryInventory: the station's summary. The station answers at once and then sends its report in
    #: NotifyReport messages, which are stored (GET /api/chargers/{id}/configuration).
    report: Literal["ConfigurationInventory", "FullInventory", "SummaryInventory"] = "FullInventory"


class SendLocalList(Arguments):
    #: False (default): only what changed since the list the station holds (all of it the first time);
    #: True: the whole list again. Either way the station then follows every token change on its own.
    full: bool = False


class GetLocalListVersion(Arguments):
    pass


class Reserve(Arguments):
    """Reserve a connector for an id token (and its group: the token's parent is sent along)."""

    #: The token it is reserved for (1.6 idTag ≤ 20 characters, 2.0.1 idToken ≤ 36).
    id_token: str = Field(min_length=1, max_length=36)
    #: 1.6 connectorId / 2.0.1 evseId; absent or 0: any connector (1.6 connector 0, 2.0.1 no evseId).
    connector: int | None = Field(None, ge=0)
    #: Seconds from now until it expires (default 900); or give ``expiry``.
    expires_in: int | None = Field(None, ge=1, le=7 * 24 * 3600)
    #: When it expires (ISO 8601; without a zone it is UTC); or give ``expires_in``.
    expiry: datetime | None = None

    @field_validator("expiry")
    @classmethod
    def _one_expiry(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("expires_in") is not None:
            raise ValueError("give expires_in or expiry, not both")
        return value


class CancelReservation(Arguments):
    #: The id the central system gave the reservation (GET /api/reservations lists them).
    reservation_id: int = Field(ge=1, le=2**31 - 1)
