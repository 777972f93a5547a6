"""The operator commands (:mod:`csms.operations`) as OCPP 1.6 calls.

Reset: "soft" is Soft, "hard" is Hard. Unlock: connectorId (1.6 has no per-EVSE connector numbers, so
``evse_connector`` must stay 1). GetConfiguration with no keys asks for all of them.
UpdateFirmware without a retrieve date downloads now; GetDiagnostics is ``get-logs`` (diagnostics only). 1.6 has no GetChargingProfiles: the
composite schedule is what a 1.6 station tells of its profiles.
"""

from __future__ import annotations

from typing import Any
from datetime import datetime

from ocpp.v16 import call

from csms.domain.settings import Setting
from csms.operations import arguments as a
from csms.operations.catalogue import TRIGGERABLE
from csms.operations.results import BadArguments
from csms.ocpp.operation import PlanContext, Planned
from csms.runtime.isotime import iso_millis

#: Answers to ChangeConfiguration after which the new value is the station's.
CHANGED = ("Accepted", "RebootRequired")

#: Keys whose value is a secret, and which the operator may not change here: the central system would
#: refuse the station's next connection with its configured password.
PROTECTED_KEYS = frozenset({"AuthorizationKey"})


def _iso(at: datetime | None) -> str | None:
    return None if at is None else iso_millis(at.timestamp())


def plan(command: str, args: a.Arguments, ctx: PlanContext = PlanContext()) -> Planned:
    """The 1.6 call for ``command``; :class:`BadArguments` for what 1.6 cannot express."""
    match args:
        case a.RemoteStart():
            if len(args.id_token) > 20:
                raise BadArguments("id_token", "OCPP 1.6 idTags are at most 20 characters")
            return Planned(call.RemoteStartTransaction(id_tag=args.id_token, connector_id=args.connector))
        case a.RemoteStop():
            if not args.transaction_id.isdigit():
                raise BadArguments("transaction_id", "OCPP 1.6 transaction ids are whole numbers")
            return Planned(call.RemoteStopTransaction(transaction_id=int(args.transaction_id)))
        case a.Reset():
            return Planned(call.Reset(type="Hard" if args.type == "hard" else "Soft"))
        case a.Unlock():
            if args.evse_connector != 1:
                raise BadArguments("evse_connector", "OCPP 1.6 numbers connectors alone: use connector")
            return Planned(call.UnlockConnector(connector_id=args.connector))
        case a.ChangeAvailability():
            return Planned(call.ChangeAvailability(connector_id=args.connector, type=args.availability))
        case a.ClearCache():
            return Planned(call.ClearCache())
        case a.DataTransfer():
            if args.data is not None and not isinstance(args.data, str):
                raise BadArguments("data", "OCPP 1.6 DataTransfer data is text: send a string")
            return Planned(call.DataTransfer(vendor_id=args.vendor_id, message_id=args.message_id, data=args.data))
        case a.TriggerMessage():
            if args.message not in TRIGGERABLE["ocpp1.6"]:
                raise BadArguments("message", f"OCPP 1.6 can trigger {', '.join(TRIGGERABLE['ocpp1.6'])}")
            return Planned(call.TriggerMessage(requested_message=args.message, connector_id=args.connector))
        case a.GetConfiguration():
            for i, key in enumerate(args.keys):
                if not 1 <= len(key) <= 50:
                    raise BadArguments(f"keys.{i}", "OCPP 1.6 configuration keys are 1 to 50 characters")
            return Planned(call.GetConfiguration(key=list(args.keys) or None), learn=_reported)
        case a.ChangeConfiguration():
            if len(args.key) > 50:
                raise BadArguments("key", "OCPP 1.6 configuration keys are at most 50 characters")
            if len(args.value) > 500:
                raise BadArguments("value", "OCPP 1.6 configuration values are at most 500 characters")
            if args.key in PROTECTED_KEYS:
                raise BadArguments("key", f"{args.key} is the station's password: change it in the site config "
                                          "([[chargers]] password) and on the station together, not here")
            key, value = args.key, args.value
            return Planned(call.ChangeConfiguration(key=key, value=value),
                           learn=lambda reply: [Setting(key, value, False)] if reply.status in CHANGED else [])
        case a.GetLocalListVersion():
            return Planned(call.GetLocalListVersion())
        case a.GetBaseReport():
            raise BadArguments("(command)", "OCPP 1.6 has no device-model report: get-configuration with no keys "
                                            "returns every key (and is stored the same way)")
        case a.UpdateFirmware():
            for name in ("signing_certificate", "signature"):
                if getattr(args, name) is not None:
                    raise BadArguments(name, "OCPP 1.6 UpdateFirmware takes no signed firmware: leave it out")
            return Planned(call.UpdateFirmware(location=args.location,
                                               retrieve_date=_iso(args.retrieve_date) or iso_millis(ctx.now),
                                               retries=args.retries, retry_interval=args.retry_interval))
        case a.GetLogs():
            if args.log_type != "diagnostics":
                raise BadArguments("log_type", "OCPP 1.6 has diagnostics only (GetDiagnostics): leave log_type out")
            return Planned(call.GetDiagnostics(location=args.location, start_time=_iso(args.since),
                                               stop_time=_iso(args.until), retries=args.retries,
                                               retry_interval=args.retry_interval))
        case a.GetCompositeSchedule():
            # Chargers report limits like 13.33, which the reply schema's multipleOf 0.1 would refuse.
            return Planned(call.GetCompositeSchedule(connector_id=args.connector, duration=args.duration,
                                                     charging_rate_unit=args.unit), skip_reply_validation=True)
        case a.GetChargingProfiles():
            raise BadArguments("(command)", "not available in OCPP 1.6; use get-composite-schedule")
    raise BadArguments("(command)", f"{command} has no OCPP 1.6 form")


def _reported(reply: Any) -> list[Setting]:
    """The keys a GetConfiguration reply holds (``unknownKey`` ones are not settings)."""
    return [Setting(item["key"], item.get("value"), item.get("readonly"))
            for item in reply.configuration_key or ()]
