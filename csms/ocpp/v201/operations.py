"""The operator commands (:mod:`csms.operations`) as OCPP 2.0.1 calls.

Reset: "soft" is OnIdle (the station reboots once no transaction runs; it may answer Scheduled), "hard" is
Immediate (transactions are stopped, then it reboots). A connector number is the EVSE id, as everywhere in
the central system; UnlockConnector also names the connector on that EVSE (``evse_connector``, default 1).
Configuration keys are device-model variables written ``Component[@evse].Variable[:instance]``.
UpdateFirmware and GetLog carry a request id the central system allocates (:class:`PlanContext`), which the
station's FirmwareStatusNotification / LogStatusNotification quote back.
GetChargingProfiles is answered Accepted / NoProfiles, then the profiles come in ReportChargingProfiles
messages, which the answer gathers (``reports``, ``complete``).
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

from ocpp.v201 import call

from csms.domain.settings import Setting
from csms.operations import arguments as a
from csms.operations.catalogue import TRIGGERABLE
from csms.operations.results import BadArguments
from csms.ocpp.operation import PlanContext, Planned
from csms.runtime.isotime import iso_millis

_VARIABLE = re.compile(r"^(?P<component>[^.@:\s]{1,50})(?:@(?P<evse>\d{1,5}))?\.(?P<variable>[^.:\s]{1,50})"
                       r"(?::(?P<instance>[^\s]{1,50}))?$")
#: (component, variable) whose value is a secret and which the operator may not change here: the central
#: system would refuse the station's next connection with its configured password.
PROTECTED = frozenset({("SecurityCtrlr", "BasicAuthPassword")})


def component_variable(text: str, where: str) -> dict[str, Any]:
    """``EVSE@1.PhaseRotation`` → ``{"component": {"name": "EVSE", "evse": {"id": 1}}, "variable": {...}}``."""
    m = _VARIABLE.match(text)
    if m is None:
        raise BadArguments(where, f"{text!r} is not Component[@evse].Variable[:instance], "
                                  "e.g. SampledDataCtrlr.TxUpdatedInterval or EVSE@1.PhaseRotation")
    component: dict[str, Any] = {"name": m["component"]}
    if m["evse"] is not None:
        component["evse"] = {"id": int(m["evse"])}
    variable: dict[str, Any] = {"name": m["variable"]}
    if m["instance"]:
        variable["instance"] = m["instance"]
    return {"component": component, "variable": variable}


def variable_key(component: dict[str, Any], variable: dict[str, Any]) -> str:
    """The inverse of :func:`component_variable`: ``EVSE@1.PhaseRotation`` from the message's objects."""
    evse = (component.get("evse") or {}).get("id")
    instance = variable.get("instance")
    return (f"{component['name']}{'' if evse is None else f'@{evse}'}.{variable['name']}"
            f"{'' if instance is None else f':{instance}'}")


def reported_settings(report_data: list[dict[str, Any]]) -> list[Setting]:
    """A NotifyReport's items as settings: the Actual attribute's value (absent for a write-only one)."""
    out = []
    for item in report_data:
        attributes = item.get("variable_attribute") or []
        actual = next((x for x in attributes if x.get("type", "Actual") == "Actual"), None)
        if actual is None:
            continue
        mutability = actual.get("mutability")
        out.append(Setting(variable_key(item["component"], item["variable"]), actual.get("value"),
                           None if mutability is None else mutability == "ReadOnly"))
    return out


def _read_values(reply: Any) -> list[Setting]:
    return [Setting(variable_key(r["component"], r["variable"]), r.get("attribute_value"))
            for r in reply.get_variable_result or () if r.get("attribute_status") == "Accepted"
            and r.get("attribute_type", "Actual") == "Actual"]


def _set_status(reply: Any) -> str:
    results = getattr(reply, "set_variable_result", None) or []
    return str(results[0].get("attribute_status", "Rejected")) if results else "Rejected"


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso_millis(at.timestamp())


def _request_id(ctx: PlanContext) -> int:
    if ctx.request_id is None:  # the operator module allocates one for every command that needs_request_id
        raise BadArguments("(command)", "no request id was allocated for this command")
    return ctx.request_id


def plan(command: str, args: a.Arguments, ctx: PlanContext = PlanContext()) -> Planned:
    """The 2.0.1 call for ``command``; :class:`BadArguments` for what 2.0.1 cannot express."""
    match args:
        case a.RemoteStart():
            return Planned(call.RequestStartTransaction(
                id_token={"id_token": args.id_token, "type": "Central"},
                remote_start_id=secrets.randbelow(2**31 - 1) + 1, evse_id=args.connector))
        case a.RemoteStop():
            return Planned(call.RequestStopTransaction(transaction_id=args.transaction_id))
        case a.Reset():
            return Planned(call.Reset(type="Immediate" if args.type == "hard" else "OnIdle"))
        case a.Unlock():
            return Planned(call.UnlockConnector(evse_id=args.connector, connector_id=args.evse_connector))
        case a.ChangeAvailability():
            evse = {"id": args.connector} if args.connector else None
            return Planned(call.ChangeAvailability(operational_status=args.availability, evse=evse))
        case a.ClearCache():
            return Planned(call.ClearCache())
        case a.DataTransfer():
            return Planned(call.DataTransfer(vendor_id=args.vendor_id, message_id=args.message_id, data=args.data))
        case a.TriggerMessage():
            if args.message not in TRIGGERABLE["ocpp2.0.1"]:
                raise BadArguments("message", f"OCPP 2.0.1 can trigger {', '.join(TRIGGERABLE['ocpp2.0.1'])}")
            evse = {"id": args.connector} if args.connector else None
            return Planned(call.TriggerMessage(requested_message=args.message, evse=evse))
        case a.GetConfiguration():
            if not args.keys:
                raise BadArguments("keys", "OCPP 2.0.1 reads named variables: give at least one "
                                           "Component.Variable, e.g. OCPPCommCtrlr.HeartbeatInterval")
            data = [component_variable(k, f"keys.{i}") for i, k in enumerate(args.keys)]
            return Planned(call.GetVariables(get_variable_data=data), learn=_read_values)
        case a.ChangeConfiguration():
            target = component_variable(args.key, "key")
            if (target["component"]["name"], target["variable"]["name"]) in PROTECTED:
                raise BadArguments("key", f"{args.key} is the station's password: change it in the site config "
                                          "([[chargers]] password) and on the station together, not here")
            key, value = variable_key(target["component"], target["variable"]), args.value
            return Planned(call.SetVariables(set_variable_data=[{"attribute_value": value, **target}]),
                           status=_set_status,
                           learn=lambda reply: [Setting(key, value, False)]
                           if _set_status(reply) in ("Accepted", "RebootRequired") else [])
        case a.GetLocalListVersion():
            return Planned(call.GetLocalListVersion())
        case a.GetBaseReport():
            return Planned(call.GetBaseReport(request_id=_request_id(ctx), report_base=args.report))
        case a.UpdateFirmware():
            firmware: dict[str, Any] = {"location": args.location,
                                        "retrieve_date_time": _iso(args.retrieve_date) or iso_millis(ctx.now)}
            if args.signing_certificate is not None:
                firmware["signing_certificate"] = args.signing_certificate
            if args.signature is not None:
                firmware["signature"] = args.signature
            return Planned(call.UpdateFirmware(request_id=_request_id(ctx), firmware=firmware, retries=args.retries,
                                               retry_interval=args.retry_interval))
        case a.GetLogs():
            log: dict[str, Any] = {"remote_location": args.location}
            if args.since is not None:
                log["oldest_timestamp"] = _iso(args.since)
            if args.until is not None:
                log["latest_timestamp"] = _iso(args.until)
            log_type = "SecurityLog" if args.log_type == "security" else "DiagnosticsLog"
            return Planned(call.GetLog(log=log, log_type=log_type, request_id=_request_id(ctx), retries=args.retries,
                                       retry_interval=args.retry_interval))
        case a.GetCompositeSchedule():
            return Planned(call.GetCompositeSchedule(duration=args.duration, evse_id=args.connector,
                                                     charging_rate_unit=args.unit))
        case a.GetChargingProfiles():
            criterion: dict[str, Any] = {}
            if args.purpose is not None:
                criterion["charging_profile_purpose"] = args.purpose
            if args.stack_level is not None:
                criterion["stack_level"] = args.stack_level
            if args.profile_ids:
                criterion["charging_profile_id"] = list(args.profile_ids)
            if args.sources:
                criterion["charging_limit_source"] = list(args.sources)
            request_id = _request_id(ctx)
            return Planned(call.GetChargingProfiles(request_id=request_id, charging_profile=criterion,
                                                    evse_id=args.connector), reports=request_id)
    raise BadArguments("(command)", f"{command} has no OCPP 2.0.1 form")
