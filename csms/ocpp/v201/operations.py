"""The operator commands (:mod:`csms.operations`) as OCPP 2.0.1 calls.

Reset: "soft" is OnIdle (the station reboots once no transaction runs; it may answer Scheduled), "hard" is
Immediate (transactions are stopped, then it reboots). A connector number is the EVSE id, as everywhere in
the central system; UnlockConnector also names the connector on that EVSE (``evse_connector``, default 1).
Configuration keys are device-model variables written ``Component[@evse].Variable[:instance]``.
GetChargingProfiles is answered Accepted / NoProfiles, then the profiles come in ReportChargingProfiles
messages, which the answer gathers (``reports``, ``complete``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from ocpp.v201 import call

from csms.operations import arguments as a
from csms.operations.catalogue import TRIGGERABLE
from csms.operations.results import BadArguments
from csms.ocpp.operation import Planned

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


def _set_status(reply: Any) -> str:
    results = getattr(reply, "set_variable_result", None) or []
    return str(results[0].get("attribute_status", "Rejected")) if results else "Rejected"


def plan(command: str, args: a.Arguments) -> Planned:
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
            return Planned(call.GetVariables(get_variable_data=data))
        case a.ChangeConfiguration():
            target = component_variable(args.key, "key")
            if (target["component"]["name"], target["variable"]["name"]) in PROTECTED:
                raise BadArguments("key", f"{args.key} is the station's password: change it in the site config "
                                          "([[chargers]] password) and on the station together, not here")
            return Planned(call.SetVariables(set_variable_data=[{"attribute_value": args.value, **target}]),
                           status=_set_status)
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
            request_id = secrets.randbelow(2**31 - 1) + 1
            return Planned(call.GetChargingProfiles(request_id=request_id, charging_profile=criterion,
                                                    evse_id=args.connector), reports=request_id)
    raise BadArguments("(command)", f"{command} has no OCPP 2.0.1 form")
