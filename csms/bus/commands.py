"""What controllers ask gateways to do, as JSON: one :class:`~csms.domain.link.StationLink` call per command.

A command names the link method (``op``) and its arguments, the load-balancing group it is sent for and the
fencing token the sender holds for that group (:mod:`csms.bus.fencing`), and the time after which it must not
start (``deadline``, epoch seconds). The reply carries the method's result (an Outcome, Capabilities or a
CompositeLimit) or why the gateway refused to run it. Everything the delivery passes in or gets back reads back
equal: a ProfileSpec sent is the ProfileSpec the gateway's link receives.

Pure: no I/O, no MQTT. Every ``decode_*`` raises only :class:`~csms.bus.wire.BadMessage`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose

from .codec import LinkInfo, link_json, link_of
from .wire import WIRE_VERSION, BadMessage, Fields, dump, load


class Refusal(StrEnum):
    """Why a gateway did not run a command (the command never reached the station)."""

    FENCED = "fenced"            # a newer leader of the group has spoken: the sender must step down
    NOT_HERE = "not_here"        # the station has no session on this gateway
    EXPIRED = "expired"          # its deadline passed before it could start
    BAD_REQUEST = "bad_request"  # unreadable, or an unknown op or argument
    WRONG_GROUP = "wrong_group"  # the site config puts the station in another group than the command names
    BUSY = "busy"                # the station's queue of commands is full


# -- each op: its arguments to and from the wire, and its result -------------------------------------------------


def spec_json(s: ProfileSpec) -> dict[str, Any]:
    return {"profile_id": s.profile_id, "stack_level": s.stack_level, "purpose": s.purpose.value,
            "connector": s.connector, "limit": s.limit, "unit": s.unit, "number_phases": s.number_phases,
            "phase_to_use": s.phase_to_use, "transaction_id": s.transaction_id, "start_schedule": s.start_schedule,
            "duration": s.duration, "valid_to": s.valid_to}


def spec_of(f: Fields) -> ProfileSpec:
    return ProfileSpec(f.int("profile_id"), f.int("stack_level"), f.choice("purpose", Purpose), f.int("connector"),
                       f.num("limit"), f.str("unit"), f.int("number_phases"), f.opt_int("phase_to_use"),
                       f.opt_str("transaction_id"), f.opt_num("start_schedule"), f.opt_int("duration"),
                       f.opt_num("valid_to"))


def caps_json(c: Capabilities) -> dict[str, Any]:
    return {"max_stack_level": c.max_stack_level, "rate_units": list(c.rate_units), "max_periods": c.max_periods,
            "max_profiles": c.max_profiles, "phase_rotation": c.phase_rotation, "phase_switching": c.phase_switching,
            "meter_interval": c.meter_interval, "measurands": c.measurands, "raw": dict(c.raw), "read": c.read,
            "unanswered": c.unanswered, "ignored": dict(c.ignored)}


def caps_of(f: Fields) -> Capabilities:
    return Capabilities(f.opt_int("max_stack_level"), tuple(f.strs("rate_units")), f.opt_int("max_periods"),
                        f.opt_int("max_profiles"), f.opt_str("phase_rotation"), f.bool("phase_switching"),
                        f.opt_int("meter_interval"), f.opt_str("measurands"), f.str_map("raw"), f.bool("read"),
                        f.opt_bool("unanswered") or False, f.str_map("ignored") if f.has("ignored") else {})


def composite_json(c: CompositeLimit | None) -> dict[str, Any] | None:
    return None if c is None else {"limit": c.limit, "unit": c.unit, "number_phases": c.number_phases}


def composite_of(f: Fields | None) -> CompositeLimit | None:
    return None if f is None else CompositeLimit(f.opt_num("limit"), f.str("unit"), f.opt_int("number_phases"))


def _args_clear(f: Fields) -> dict[str, Any]:
    purpose = None if f.opt_str("purpose") is None else f.choice("purpose", Purpose)
    return {"profile_id": f.opt_int("profile_id"), "purpose": purpose, "stack_level": f.opt_int("stack_level"),
            "connector": f.opt_int("connector")}


def _measurands(f: Fields) -> dict[str, Any]:
    return {"measurands": f.strs("measurands")}


@dataclass(frozen=True)
class Op:
    """One StationLink method: how its keyword arguments go on the wire and come back."""

    to_wire: Callable[[dict[str, Any]], dict[str, Any]]
    from_wire: Callable[[Fields], dict[str, Any]]
    #: "outcome" (returns an Outcome), "capabilities" or "composite".
    returns: str = "outcome"


def _ints(*names: str) -> Op:
    return Op(lambda kw: {n: kw[n] for n in names}, lambda f: {n: f.int(n) for n in names})


OPS: dict[str, Op] = {
    "read_capabilities": Op(lambda kw: {"connector": kw["connector"]}, lambda f: {"connector": f.int("connector")},
                            "capabilities"),
    "set_measurands": Op(lambda kw: {"measurands": list(kw["measurands"])}, _measurands),
    "set_meter_interval": _ints("interval"),
    "trigger_meter_values": _ints("connector"),
    "set_profile": Op(lambda kw: {"spec": spec_json(kw["spec"])}, lambda f: {"spec": spec_of(f.obj("spec"))}),
    "clear_profile": Op(lambda kw: {"profile_id": kw.get("profile_id"),
                                    "purpose": None if kw.get("purpose") is None else Purpose(kw["purpose"]).value,
                                    "stack_level": kw.get("stack_level"), "connector": kw.get("connector")},
                        _args_clear),
    "get_composite": Op(lambda kw: {"connector": kw["connector"], "duration": kw["duration"], "unit": kw["unit"]},
                        lambda f: {"connector": f.int("connector"), "duration": f.int("duration"),
                                   "unit": f.str("unit")}, "composite"),
    "set_availability": Op(lambda kw: {"connector": kw["connector"], "operative": kw["operative"]},
                           lambda f: {"connector": f.int("connector"), "operative": f.bool("operative")}),
}


# -- commands -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One message on ``<prefix>/cmd/<gateway node>/<station_id>``; ``kwargs`` are the link method's arguments."""

    id: str
    station_id: str
    op: str
    kwargs: dict[str, Any]
    #: The group the sender leads and sends this for (None: a charger in no group).
    group: str | None
    token: int
    deadline: float


def encode_command(cmd: Command) -> bytes:
    return dump({"v": WIRE_VERSION, "id": cmd.id, "op": cmd.op, "args": OPS[cmd.op].to_wire(cmd.kwargs),
                 "group": cmd.group, "token": cmd.token, "deadline": cmd.deadline})


def decode_command(payload: bytes | str, station_id: str) -> Command:
    f = load(payload)
    op = f.str("op")
    if op not in OPS:
        raise BadMessage("unknown_op", f"op: {op!r} is not one of {', '.join(OPS)}")
    return Command(f.str("id"), station_id, op, OPS[op].from_wire(f.obj("args")), f.opt_str("group"), f.int("token"),
                   f.num("deadline"))


def command_id_of(payload: bytes | str) -> str | None:
    """The id of a command that failed to decode, if it has a readable one (so its refusal can be matched)."""
    try:
        return load(payload).str("id")
    except BadMessage:
        return None


# -- replies --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One message on ``<prefix>/res/<controller node>``: a result, or a refusal with its detail.

    ``link`` is the station's link after the command (what it now knows it cannot do), so the controller's
    mirror is current before the caller reads it."""

    id: str
    outcome: Outcome | None = None
    result: dict[str, Any] = field(default_factory=dict)
    refused: Refusal | None = None
    detail: str = ""
    link: LinkInfo | None = None


def result_reply(cmd_id: str, op: str, value: Any, link: LinkInfo | None = None) -> Reply:
    """The reply carrying what the link method returned."""
    kind = OPS[op].returns
    if kind == "capabilities":
        return Reply(cmd_id, Outcome.ACCEPTED, {"capabilities": caps_json(value)}, link=link)
    if kind == "composite":
        return Reply(cmd_id, Outcome.ACCEPTED, {"composite": composite_json(value)}, link=link)
    return Reply(cmd_id, Outcome(value), link=link)


def refusal_reply(cmd_id: str, refused: Refusal, detail: str) -> Reply:
    return Reply(cmd_id, refused=refused, detail=detail)


def encode_reply(r: Reply) -> bytes:
    out: dict[str, Any] = {"v": WIRE_VERSION, "id": r.id}
    if r.refused is not None:
        out.update(refused=r.refused.value, detail=r.detail)
    else:
        out.update(outcome=None if r.outcome is None else r.outcome.value, result=r.result)
    if r.link is not None:
        out["link"] = link_json(r.link)
    return dump(out)


def decode_reply(payload: bytes | str) -> Reply:
    f = load(payload)
    link = f.opt_obj("link")
    info = None if link is None else link_of(link)
    if f.has("refused"):
        return Reply(f.str("id"), refused=f.choice("refused", Refusal), detail=f.str("detail"), link=info)
    return Reply(f.str("id"), f.choice("outcome", Outcome), dict(f.obj("result").data), link=info)


def result_value(op: str, reply: Reply) -> Any:
    """What the link method returns, read from an answered (not refused) reply."""
    kind = OPS[op].returns
    f = Fields(reply.result, "result")
    if kind == "capabilities":
        return caps_of(f.obj("capabilities"))
    if kind == "composite":
        return composite_of(f.opt_obj("composite"))
    return reply.outcome
