"""The arguments of each operator command, as pydantic models that refuse unknown fields.

The models hold what is true whatever the station's version (types, ranges, lengths both versions accept);
what only one version refuses (a 1.6 idTag over 20 characters, a non-numeric 1.6 transaction id) is checked
where the command is mapped to that version, and reported the same way: a :class:`~.results.BadArguments`
naming the field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


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


class SetChargingProfile(Arguments):
    """The operator's cap on a charger: the balancer gives it at most ``limit``, inside what the fuse allows.

    Not a profile sent as is: the central system's delivery owns the charger's profile stack, and its next
    limit carries the cap. ``until`` (an ISO 8601 time with a zone) or ``duration`` (s) end it; neither: it
    holds until ``clear-charging-profile``.
    """

    #: A per phase; below the group's ``min_current`` (0 included) the charger is paused. Rounded down to 0.1 A.
    limit: float = Field(ge=0, le=1000)
    until: AwareDatetime | None = None
    duration: int | None = Field(None, gt=0, le=366 * 86400)
    #: The charger as a whole (absent or 0), or the connector/EVSE the balancer controls on it.
    connector: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_end(self) -> SetChargingProfile:
        if self.until is not None and self.duration is not None:
            raise ValueError("give until or duration, not both")
        return self


class ClearChargingProfile(Arguments):
    """Lifts the operator's cap (the balancer's own profiles on the charger stay)."""

    connector: int | None = Field(None, ge=0)


class GetCompositeSchedule(Arguments):
    #: 1.6 connectorId / 2.0.1 evseId; 0 (default) = the whole station's grid connection.
    connector: int = Field(0, ge=0)
    #: Seconds from now the schedule covers.
    duration: int = Field(3600, gt=0, le=7 * 86400)
    #: "A" or "W" (absent: the station's choice).
    unit: Literal["A", "W"] | None = None


class GetChargingProfiles(Arguments):
    """2.0.1 GetChargingProfiles: the criterion's fields; none = every profile the station has."""

    #: EVSE id; absent: every EVSE (0 = the station-wide profiles).
    connector: int | None = Field(None, ge=0)
    purpose: Literal["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile",
                     "ChargingStationExternalConstraints"] | None = None
    stack_level: int | None = Field(None, ge=0)
    profile_ids: list[int] = Field(default_factory=list, max_length=100)
    #: ChargingLimitSource values ("EMS", "Other", "SO", "CSO").
    sources: list[Literal["EMS", "Other", "SO", "CSO"]] = Field(default_factory=list, max_length=4)
