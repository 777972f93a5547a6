"""The operator commands by name, and the parsing of a request's arguments into their model.

Names are what the HTTP route (``/api/stations/{id}/commands/{name}``) and ``csms station {name}`` take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import arguments as a
from .results import BadArguments, UnknownCommand


@dataclass(frozen=True)
class CommandSpec:
    name: str
    arguments: type[a.Arguments]
    summary: str


COMMANDS: dict[str, CommandSpec] = {spec.name: spec for spec in (
    CommandSpec("remote-start", a.RemoteStart, "start a transaction for an id token"),
    CommandSpec("remote-stop", a.RemoteStop, "stop a running transaction"),
    CommandSpec("reset", a.Reset, "reboot the station (soft: when idle; hard: now)"),
    CommandSpec("unlock", a.Unlock, "unlock a connector (release the cable)"),
    CommandSpec("change-availability", a.ChangeAvailability, "make a connector or the station (in)operative"),
    CommandSpec("clear-cache", a.ClearCache, "clear the station's authorization cache"),
    CommandSpec("data-transfer", a.DataTransfer, "send a vendor-specific message"),
    CommandSpec("trigger-message", a.TriggerMessage, "ask the station to send a message now"),
    CommandSpec("get-configuration", a.GetConfiguration, "read configuration keys / device-model variables"),
    CommandSpec("change-configuration", a.ChangeConfiguration, "set one configuration key / variable"),
    CommandSpec("get-base-report", a.GetBaseReport, "have a 2.0.1 station report its device model (stored)"),
    CommandSpec("send-local-list", a.SendLocalList, "send the organisation's tokens as the station's local list "
                                                    "(then kept in step)"),
    CommandSpec("get-local-list-version", a.GetLocalListVersion, "the version of the station's local list"),
    CommandSpec("update-firmware", a.UpdateFirmware, "download and install a firmware image"),
    CommandSpec("get-logs", a.GetLogs, "have the station upload its diagnostics / security log"),
    CommandSpec("reserve", a.Reserve, "reserve a connector for an id token (or its group) until an expiry"),
    CommandSpec("cancel-reservation", a.CancelReservation, "cancel a reservation"),
    CommandSpec("set-charging-profile", a.SetChargingProfile,
                "cap a charger's limit (A per phase) inside what the balancer allows"),
    CommandSpec("clear-charging-profile", a.ClearChargingProfile, "lift the operator's cap on a charger"),
    CommandSpec("get-composite-schedule", a.GetCompositeSchedule, "ask the station what limit it applies"),
    CommandSpec("get-charging-profiles", a.GetChargingProfiles, "ask a 2.0.1 station for its installed profiles"),
)}

#: Commands the central system answers itself, without a call to the station: the operator's cap lives in the
#: balancer, and the delivery carries it to the charger with its next limit.
CAP_COMMANDS = frozenset({"set-charging-profile", "clear-charging-profile"})

#: The messages TriggerMessage may ask for, per version (1.6 core schema; 2.0.1 MessageTriggerEnumType).
TRIGGERABLE = {
    "ocpp1.6": ("BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                "MeterValues", "StatusNotification"),
    "ocpp2.0.1": ("BootNotification", "LogStatusNotification", "FirmwareStatusNotification", "Heartbeat",
                  "MeterValues", "SignChargingStationCertificate", "SignV2GCertificate", "StatusNotification",
                  "TransactionEvent", "SignCombinedCertificate", "PublishFirmwareStatusNotification"),
}


class NotJson:
    """A request body that is not JSON: still a command the event log records, refused as bad arguments."""


def parse(command: str, body: Any) -> a.Arguments:
    """``body`` (the request's JSON object) as ``command``'s arguments; :class:`BadArguments` names the first
    field at fault, :class:`UnknownCommand` lists the commands there are."""
    spec = COMMANDS.get(command)
    if spec is None:
        raise UnknownCommand(f"no command {command!r}; commands are: {', '.join(COMMANDS)}")
    if isinstance(body, NotJson):
        raise BadArguments("(body)", "not JSON; send the command's arguments as a JSON object")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise BadArguments("(body)", "must be a JSON object of the command's arguments")
    try:
        return spec.arguments.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(body)"
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "value_error":  # our own rule's words, without pydantic's "Value error, "
            message = str(err["ctx"]["error"])
        raise BadArguments(where, message) from None
