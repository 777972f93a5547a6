"""The arguments of each operator command, as pydantic models that refuse unknown fields.

The models hold what is true whatever the station's version (types, ranges, lengths both versions accept);
what only one version refuses (a 1.6 idTag over 20 characters, a non-numeric 1.6 transaction id) is checked
where the command is mapped to that version, and reported the same way: a :class:`~.results.BadArguments`
naming the field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Arguments(BaseModel):
    """Base of every command's arguments: unknown fields are errors (a typo must not be ignored), and a value of
    the wrong type is refused, not converted (``"limit": true`` or ``"8"``); times are the exception, given as
    ISO 8601 text or epoch seconds (``strict=False`` on those fields)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Whether the command carries a request id (2.0.1 UpdateFirmware, GetLog), allocated by the central system
    #: so that the station's later status notifications can be matched to the request.
    needs_request_id: ClassVar[bool] = False


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
    needs_request_id: ClassVar[bool] = True
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


#: URL schemes a charger can download firmware from or upload logs to (OCPP leaves the transport open; chargers
#: support HTTP(S) and FTP(S), a few SFTP).
URL_SCHEMES = ("http", "https", "ftp", "ftps", "sftp")


def _url(value: str | None, field_name: str) -> str | None:
    """A URL a charger can reach: a known scheme and a host (the charger, not us, resolves it)."""
    if value is None:
        return value
    parts = urlsplit(value)
    if parts.scheme.lower() not in URL_SCHEMES or not parts.hostname:
        raise ValueError(f"{field_name} must be a URL with a host and one of the schemes {', '.join(URL_SCHEMES)}, "
                         "e.g. https://firmware.example.com/charger-2.1.bin")
    if any(ch.isspace() for ch in value):
        raise ValueError(f"{field_name} must not contain spaces (percent-encode them as %20)")
    return value


class UpdateFirmware(Arguments):
    needs_request_id: ClassVar[bool] = True
    #: Where the charger downloads the firmware image (2.0.1 limits it to 512 characters).
    location: str = Field(min_length=1, max_length=512)
    #: When the charger is to start downloading (ISO 8601 with a time zone, or epoch seconds); absent: now.
    retrieve_date: AwareDatetime | None = Field(None, strict=False)
    #: How often, and how many seconds apart, the charger retries a failed download (its own default if absent).
    retries: int | None = Field(None, ge=0, le=100)
    retry_interval: int | None = Field(None, ge=0, le=86400)
    #: 2.0.1 only: the PEM certificate the image is signed with, and the image's signature (base64).
    signing_certificate: str | None = Field(None, min_length=1, max_length=5500)
    signature: str | None = Field(None, min_length=1, max_length=800)

    _location = field_validator("location")(lambda v: _url(v, "location"))


class GetLogs(Arguments):
    """1.6 GetDiagnostics / 2.0.1 GetLog: the charger uploads a log file to ``location``."""

    needs_request_id: ClassVar[bool] = True

    #: Where the charger uploads the file; absent: this central system's own upload endpoint for the station,
    #: with a fresh secret URL (README: "Uploads from chargers").
    location: str | None = Field(None, min_length=1, max_length=512)
    #: "diagnostics" (1.6 GetDiagnostics / 2.0.1 DiagnosticsLog) or "security" (2.0.1 SecurityLog only).
    log_type: Literal["diagnostics", "security"] = "diagnostics"
    #: The oldest and newest entries wanted (ISO 8601 with a time zone, or epoch seconds); absent: all.
    since: AwareDatetime | None = Field(None, strict=False)
    until: AwareDatetime | None = Field(None, strict=False)
    retries: int | None = Field(None, ge=0, le=100)
    retry_interval: int | None = Field(None, ge=0, le=86400)

    _location = field_validator("location")(lambda v: _url(v, "location"))

    @field_validator("until")
    @classmethod
    def _range(cls, v: Any, info: ValidationInfo) -> Any:
        since = info.data.get("since")
        if v is not None and since is not None and since > v:
            raise ValueError("until is before since: give the newest entry wanted as until")
        return v


class Reserve(Arguments):
    """Reserve a connector for an id token (and its group: the token's parent is sent along)."""

    #: The token it is reserved for (1.6 idTag ≤ 20 characters, 2.0.1 idToken ≤ 36).
    id_token: str = Field(min_length=1, max_length=36)
    #: 1.6 connectorId / 2.0.1 evseId; absent or 0: any connector (1.6 connector 0, 2.0.1 no evseId).
    connector: int | None = Field(None, ge=0)
    #: Seconds from now until it expires (default 900); or give ``expiry``.
    expires_in: int | None = Field(None, ge=1, le=7 * 24 * 3600)
    #: When it expires (ISO 8601; without a zone it is UTC); or give ``expires_in``.
    expiry: datetime | None = Field(None, strict=False)

    @field_validator("expiry")
    @classmethod
    def _one_expiry(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and info.data.get("expires_in") is not None:
            raise ValueError("give expires_in or expiry, not both")
        return value


class CancelReservation(Arguments):
    #: The id the central system gave the reservation (GET /api/reservations lists them).
    reservation_id: int = Field(ge=1, le=2**31 - 1)


class SetChargingProfile(Arguments):
    """The operator's cap on a charger: the balancer gives it at most ``limit``, inside what the fuse allows.

    Not a profile sent as is: the central system's delivery owns the charger's profile stack, and its next
    limit carries the cap. ``until`` (an ISO 8601 time with a zone) or ``duration`` (s) end it; neither: it
    holds until ``clear-charging-profile``.
    """

    #: A per phase; below the group's ``min_current`` (0 included) the charger is paused. Rounded down to 0.1 A.
    limit: float = Field(ge=0, le=1000, allow_inf_nan=False)
    until: AwareDatetime | None = Field(None, strict=False)
    duration: int | None = Field(None, gt=0, le=366 * 86400)
    #: The charger as a whole (absent or 0), or the connector/EVSE the balancer controls on it.
    connector: int | None = Field(None, ge=0)

    @field_validator("duration")
    @classmethod
    def _one_end(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("until") is not None:
            raise ValueError("give until or duration, not both")
        return value


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

    needs_request_id: ClassVar[bool] = True  # the ReportChargingProfiles quote it

    #: EVSE id; absent: every EVSE (0 = the station-wide profiles).
    connector: int | None = Field(None, ge=0)
    purpose: Literal["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile",
                     "ChargingStationExternalConstraints"] | None = None
    stack_level: int | None = Field(None, ge=0)
    profile_ids: list[int] = Field(default_factory=list, max_length=100)
    #: ChargingLimitSource values ("EMS", "Other", "SO", "CSO").
    sources: list[Literal["EMS", "Other", "SO", "CSO"]] = Field(default_factory=list, max_length=4)
