"""What an operator command ends with: the station's answer, or why there is none.

Each failure is an exception the HTTP API turns into its status code (see :mod:`csms.web.operator`): the
caller learns whether to fix its request (400, 404), wait for the station (409, 429, 504) or look at the
station (502).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Answers that mean the station does (or will do) what it was asked: ``csms station`` exits 0 on these.
#: Scheduled: ChangeAvailability / 2.0.1 Reset applied when the running transaction ends; Unlocked: the
#: UnlockConnector success; RebootRequired: a setting stored, in force after the next reboot; AcceptedCanceled:
#: 2.0.1 UpdateFirmware / GetLog accepted, the station's previous one of the same kind cancelled; NoProfiles:
#: GetChargingProfiles found nothing to report, a complete answer.
SUCCESS = frozenset({"Accepted", "Scheduled", "Unlocked", "RebootRequired", "AcceptedCanceled", "NoProfiles"})


@dataclass(frozen=True)
class CommandResult:
    """The station's answer: its ``status`` (the reply's, or "Accepted" for replies without one) and the
    reply payload as it came on the wire (camelCase keys)."""

    station: str
    command: str
    status: str
    reply: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS

    def as_json(self) -> dict[str, Any]:
        return {"station": self.station, "command": self.command, "status": self.status, "ok": self.ok,
                "reply": self.reply}


class CommandError(Exception):
    """Base of the reasons a command got no answer; ``outcome`` is what the event log records."""

    outcome = "Error"
    #: The node that ran the command, and logged it, when that was not this one (a controller has a gateway run
    #: its station commands); None: this node ran it or refused it, and logs it.
    ran_on: str | None = None


class UnknownCommand(CommandError):
    outcome = "UnknownCommand"


class BadArguments(CommandError):
    """The request must be fixed: ``field`` names the argument at fault."""

    outcome = "BadArguments"

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class UnknownStation(CommandError):
    outcome = "UnknownStation"


class StationOffline(CommandError):
    outcome = "NotConnected"


class StationError(CommandError):
    """The station answered with a CALLERROR."""

    outcome = "CallError"

    def __init__(self, code: str, description: str):
        super().__init__(self.describe(code, description))
        self.code = code
        self.description = description

    @staticmethod
    def describe(code: str, description: str) -> str:
        return f"the station answered CALLERROR {code}: {description}"


class InvalidAnswer(StationError):
    """The station answered, but its reply fails the OCPP schema (``code`` and ``description`` are our check's)."""

    outcome = "InvalidAnswer"

    @staticmethod
    def describe(code: str, description: str) -> str:
        return f"the station's answer does not follow the OCPP schema ({code}: {description})"


class StationTimeout(CommandError):
    outcome = "Timeout"


class StationBusy(CommandError):
    """Too many commands already wait for the station on the gateway that holds it: try again once they are
    answered (a node that holds the station itself has each wait for the connection instead)."""

    outcome = "Busy"


class NotBalanced(CommandError):
    """The station is in no load-balancing group: the balancer sets it no limit that a cap could lower."""

    outcome = "NotBalanced"


class UnderCheck(CommandError):
    """A commissioning check holds the station through its cap: an operator's cap now would undo a hold and
    spoil the check's measurement. Try again when the check has ended."""

    outcome = "UnderCheck"
