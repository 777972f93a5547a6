"""An operator's command to a station, forwarded by a controller to the gateway that holds the station, as JSON.

A node that holds no stations (``--role controller``) answers the operator's HTTP API too; a command that needs
the station's session (:mod:`csms.operations.catalogue`, all but the operator's caps) goes to the gateway that
holds it, whose own operator commands run it as if asked directly (its event log, its stored settings, local
lists and reservations). What travels is the request as the operator sent it (command name, JSON arguments, who
asked) and what came of it: the station's answer, the :class:`~csms.operations.results.CommandError` it ended
with (rebuilt as the same class on the controller, so the HTTP API answers as a single node does), or why the
gateway did not run it.

These are not the balancer's commands (:mod:`csms.bus.commands`): no group leads an operator, so they carry no
fencing token and are not fenced; they have their own topic, their own queue per station on the gateway, and a
``deadline`` after which the gateway does not start them.

Pure: no I/O, no MQTT. Every ``decode_*`` raises only :class:`~csms.bus.wire.BadMessage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from csms.operations.results import (
    BadArguments, CommandError, CommandResult, NotBalanced, StationBusy, StationError, StationOffline, StationTimeout,
    InvalidAnswer, UnderCheck, UnknownCommand, UnknownStation,
)

from .commands import Refusal
from .wire import WIRE_VERSION, BadMessage, dump, load

#: Every CommandError a gateway may end a command with, by its ``outcome`` (the event log's name, and the wire's).
ERRORS: dict[str, type[CommandError]] = {cls.outcome: cls for cls in (
    CommandError, UnknownCommand, BadArguments, UnknownStation, StationOffline, StationError, StationTimeout,
    NotBalanced, StationBusy, UnderCheck, InvalidAnswer)}

#: Why a gateway did not run an operator's command: the balancer's refusals that apply without a group.
OPERATOR_REFUSALS = frozenset({Refusal.NOT_HERE, Refusal.EXPIRED, Refusal.BUSY, Refusal.BAD_REQUEST})


#: The most station calls (each bounded by ``call_timeout`` on the gateway) one operator's command makes.
CALLS_PER_COMMAND = 2
#: Seconds each node on the way waits beyond the one after it (the bus's default ``margin``).
MARGIN = 2.0
#: Forwardings between the node the operator asked and the gateway holding the station, at most: a gateway's
#: command for a station another gateway holds goes through a controller.
MOST_HOPS = 2


def answer_within(call_timeout: float, hops: int = MOST_HOPS, margin: float = MARGIN) -> float:
    """The longest an operator's command may take to be answered from ``hops`` forwardings away: each hop may
    queue it for up to ``call_timeout`` before it starts, the station gets :data:`CALLS_PER_COMMAND` calls,
    and each hop waits ``margin`` longer than the next."""
    return call_timeout * (hops + CALLS_PER_COMMAND) + margin * hops


@dataclass(frozen=True)
class OperatorRequest:
    """One message on ``<prefix>/op/<gateway node>/<station_id>``: ``body`` is the command's JSON arguments."""

    id: str
    station_id: str
    command: str
    body: dict[str, Any]
    #: Who asked ("api 10.0.0.5", "cli ..."), for the gateway's event log.
    by: str
    #: Epoch seconds after which the gateway does not start it: the operator has been told it timed out.
    deadline: float


@dataclass(frozen=True)
class Failure:
    """A CommandError as data: its ``outcome`` (which class), its text, and the fields its class adds."""

    outcome: str
    message: str
    field: str | None = None
    code: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class OperatorReply:
    """One message on ``<prefix>/opres/<controller node>``: exactly one of ``result``, ``failure``, ``refused``."""

    id: str
    result: CommandResult | None = None
    failure: Failure | None = None
    refused: Refusal | None = None
    detail: str = ""


# -- errors as data, and back -------------------------------------------------------------------------------


def failure_of(exc: CommandError) -> Failure:
    """What goes on the wire of ``exc``; a subclass unknown here travels as its nearest known base."""
    kind = next(cls for cls in type(exc).__mro__ if cls in ERRORS.values())
    if isinstance(exc, BadArguments):
        return Failure(kind.outcome, exc.message, field=exc.field)
    if isinstance(exc, StationError):
        return Failure(kind.outcome, str(exc), code=exc.code, description=exc.description)
    return Failure(kind.outcome, str(exc))


def error_of(f: Failure) -> CommandError:
    """The CommandError ``f`` stands for: the same class, text and fields as the one the gateway raised."""
    cls = ERRORS[f.outcome]
    if cls is BadArguments:
        return BadArguments("(arguments)" if f.field is None else f.field, f.message)
    if issubclass(cls, StationError):
        return cls("" if f.code is None else f.code, "" if f.description is None else f.description)
    return cls(f.message)


def refusal_error(refused: Refusal, detail: str, station_id: str, who: str) -> CommandError:
    """What the operator is told when ``who`` ("gateway gw-1") did not run the command (``detail`` is its)."""
    if refused is Refusal.NOT_HERE:
        return StationOffline(f"station {station_id!r} is no longer on {who} ({detail}); it may be "
                              "reconnecting to another gateway: try again in a few seconds")
    if refused is Refusal.BUSY:
        return StationBusy(f"{who}: {detail}; try again once they are answered")
    if refused is Refusal.EXPIRED:
        return StationTimeout(f"{who} did not start the command for station {station_id!r} in time "
                              f"({detail}); it was not sent to the station")
    return CommandError(f"{who} could not read the command ({detail}); are all nodes the same version?")


# -- the wire -----------------------------------------------------------------------------------------------


def encode_request(req: OperatorRequest) -> bytes:
    return dump({"v": WIRE_VERSION, "id": req.id, "command": req.command, "body": req.body, "by": req.by,
                 "deadline": req.deadline})


def decode_request(payload: bytes | str, station_id: str) -> OperatorRequest:
    f = load(payload)
    return OperatorRequest(f.str("id"), station_id, f.str("command"), dict(f.obj("body").data), f.str("by"),
                           f.num("deadline"))


def result_reply(req_id: str, result: CommandResult) -> OperatorReply:
    return OperatorReply(req_id, result=result)


def failure_reply(req_id: str, exc: CommandError) -> OperatorReply:
    return OperatorReply(req_id, failure=failure_of(exc))


def refusal_reply(req_id: str, refused: Refusal, detail: str) -> OperatorReply:
    return OperatorReply(req_id, refused=refused, detail=detail)


def encode_reply(r: OperatorReply) -> bytes:
    out: dict[str, Any] = {"v": WIRE_VERSION, "id": r.id}
    if r.result is not None:
        out["result"] = {"station": r.result.station, "command": r.result.command, "status": r.result.status,
                         "reply": r.result.reply}
    elif r.failure is not None:
        f = r.failure
        out["failure"] = {"outcome": f.outcome, "message": f.message, "field": f.field, "code": f.code,
                          "description": f.description}
    else:
        assert r.refused is not None, "a reply is a result, a failure or a refusal"
        out.update(refused=r.refused.value, detail=r.detail)
    return dump(out)


def decode_reply(payload: bytes | str) -> OperatorReply:
    f = load(payload)
    rid = f.str("id")
    if f.has("result"):
        res = f.obj("result")
        return OperatorReply(rid, result=CommandResult(res.str("station"), res.str("command"), res.str("status"),
                                                       dict(res.obj("reply").data)))
    if f.has("failure"):
        fail = f.obj("failure")
        outcome = fail.str("outcome")
        if outcome not in ERRORS:
            raise BadMessage("bad_field", f"failure.outcome: {outcome!r} is not one of {', '.join(ERRORS)}")
        return OperatorReply(rid, failure=Failure(outcome, fail.str("message"), fail.opt_str("field"),
                                                  fail.opt_str("code"), fail.opt_str("description")))
    refused = f.choice("refused", Refusal)
    if refused not in OPERATOR_REFUSALS:
        raise BadMessage("bad_field", f"refused: {refused.value!r} does not apply to an operator's command")
    return OperatorReply(rid, refused=refused, detail=f.str("detail"))
