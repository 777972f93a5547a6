"""OCPP 2.0.1 face of a simulated charger (:class:`~simulators.charger.Charger`): its device model, the
messages it sends and the calls it answers. Each EVSE has one connector (connectorId 1)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v201 import ChargePoint, call, call_result

from simulators.device_model import REPORT_PART, Variable, device_model, report_item
from simulators.ocpp_face import OcppFace, parse_time, schedule_periods
from csms.runtime.isotime import iso_millis, parse_iso
from simulators.profiles import profile_to_ocpp201, purpose_from_ocpp

if TYPE_CHECKING:
    from simulators.connector import Connector, Session

log = logging.getLogger(__name__)

CONNECTOR_STATUS = {"Available": "Available", "Unavailable": "Unavailable", "Faulted": "Faulted",
                    "Reserved": "Reserved"}  # everything else a car is plugged into: Occupied
CHARGING_STATE = {"Charging": "Charging", "SuspendedEV": "SuspendedEV", "SuspendedEVSE": "SuspendedEVSE",
                  "Preparing": "EVConnected", "Finishing": "EVConnected"}
STOP_TRIGGER = {"EVDisconnected": "EVCommunicationLost", "Remote": "RemoteStop", "Local": "StopAuthorized",
                "DeAuthorized": "Deauthorized", "ImmediateReset": "ResetCommand"}
#: The charger's neutral UnlockConnector answer as 2.0.1 says it: it has no NotSupported.
UNLOCK_201 = {"NotSupported": "UnlockFailed"}
#: The charger's neutral log-upload status as 2.0.1 says it.
LOG_STATUS_201 = {"UploadFailed": "UploadFailure"}


class ChargePoint201(OcppFace, ChargePoint):
    # ---- device model ---------------------------------------------------------------------------

    def device_model(self) -> dict[tuple[str, int | None, str, str | None], Variable]:
        return device_model(self.sim)

    def _lookup(self, item: dict) -> tuple[str, Variable | None]:
        comp, var = item["component"], item["variable"]
        evse = (comp.get("evse") or {}).get("id")
        dm = self.device_model()
        key = (comp["name"], evse, var["name"], var.get("instance"))
        if key in dm:
            return "Accepted", dm[key]
        if not any(k[0] == comp["name"] and k[1] == evse for k in dm):
            return "UnknownComponent", None
        return "UnknownVariable", None

    # ---- outgoing -------------------------------------------------------------------------------

    async def send_boot(self) -> tuple[str, float]:
        cfg = self.sim.config
        return await self.boot(call.BootNotification(
            charging_station={"model": cfg.model, "vendor_name": cfg.vendor, "serial_number": cfg.id,
                              "firmware_version": self.sim.firmware_version},
            reason=self.sim.boot_reason))

    async def send_heartbeat(self) -> None:
        await self.call(call.Heartbeat())

    async def send_status(self, conn: Connector) -> None:
        status = CONNECTOR_STATUS.get(conn.status, "Occupied")
        if conn.reported_status == status and self.sim.connected:
            return
        await self.call(call.StatusNotification(timestamp=self._now(), connector_status=status, evse_id=conn.id,
                                                connector_id=1))
        conn.reported_status = status

    def _meter_value(self, conn: Connector, context: str, only_register: bool = False) -> list[dict]:
        values = []
        for sv in self.sim.sampled_values(conn, context):
            if only_register and sv["measurand"] != "Energy.Active.Import.Register":
                continue
            entry = {"value": float(sv["value"]), "measurand": sv["measurand"], "context": context,
                     "location": sv["location"], "unit_of_measure": {"unit": sv["unit"]}}
            if "phase" in sv:
                entry["phase"] = sv["phase"]
            values.append(entry)
        return [{"timestamp": self._now(), "sampled_value": values}] if values else []

    def _tx_info(self, conn: Connector, sess: Session, **extra: Any) -> dict:
        info = {"transaction_id": sess.local_id, **extra}
        if conn.session is sess:
            info.setdefault("charging_state", CHARGING_STATE.get(conn.status, "Idle"))
        return info

    async def _event(self, event_type: str, trigger: str, conn: Connector, sess: Session, *,
                     timestamp: str | None = None, meter: list[dict] | None = None, offline: bool = False,
                     id_token: dict | None = None, reservation_id: int | None = None, **info: Any) -> Any:
        return await self.call(call.TransactionEvent(
            event_type=event_type, timestamp=timestamp or self._now(), trigger_reason=trigger,
            seq_no=sess.next_seq(), transaction_info=self._tx_info(conn, sess, **info), meter_value=meter or None,
            offline=offline or None, number_of_phases_used=conn.number_phases if event_type != "Ended" else None,
            evse={"id": conn.id, "connector_id": 1}, id_token=id_token, reservation_id=reservation_id))

    async def send_start(self, conn: Connector, sess: Session, authorize: bool) -> None:
        sess.transaction_id = sess.local_id
        token = {"id_token": sess.id_tag, "type": "Central" if sess.remote_start_id is not None else "ISO14443"}
        if authorize and not sess.started_offline:  # offline: authorized locally, reported by the event alone
            res = await self.call(call.Authorize(id_token=token))
            status = None if res is None else res.id_token_info.get("status")
            group = None if res is None else (res.id_token_info.get("group_id_token") or {}).get("id_token")
            if status != "Accepted" or not self.sim.claim_reservation(conn, sess, group):
                log.info("%s: id token %s is %s; no transaction", self.sim.id, sess.id_tag, status)
                self.sim.abandon(conn, sess)
                return
            self.sim.authorized(conn, sess)
        trigger = "RemoteStart" if sess.remote_start_id is not None else "Authorized"
        extra = {"remote_start_id": sess.remote_start_id} if sess.remote_start_id is not None else {}
        res = await self._event("Started", trigger, conn, sess, timestamp=iso_millis(sess.started_at),
                                meter=self._meter_value(conn, "Transaction.Begin", only_register=True),
                                offline=sess.started_offline, id_token=token, reservation_id=sess.reservation_id,
                                **extra)
        info = getattr(res, "id_token_info", None) or {}
        if info.get("status", "Accepted") != "Accepted" and conn.session is sess:
            # StopTxOnInvalidId (E05): a transaction whose token the CSMS refused is ended, trigger Deauthorized.
            log.info("%s: id token %s is %s at TransactionEvent; stopping", self.sim.id, sess.id_tag, info["status"])
            self.sim.stop_session(conn.id, "DeAuthorized")

    async def send_stop(self, conn: Connector, sess: Session, reason: str, meter_stop: float) -> None:
        meter = [{"timestamp": self._now(), "sampled_value": [{
            "value": round(meter_stop), "measurand": "Energy.Active.Import.Register", "context": "Transaction.End",
            "unit_of_measure": {"unit": "Wh"}}]}]
        await self._event("Ended", STOP_TRIGGER.get(reason, "AbnormalCondition"), conn, sess, meter=meter,
                          offline=sess.ended_offline, stopped_reason=reason, charging_state="Idle")

    async def send_meter_values(self, conn: Connector, sess: Session | None, context: str) -> None:
        if sess is None:
            meter = self._meter_value(conn, context)
            if meter:
                await self.call(call.MeterValues(evse_id=conn.id, meter_value=meter))
            return
        trigger = "Trigger" if context == "Trigger" else "MeterValuePeriodic"
        await self._event("Updated", trigger, conn, sess, meter=self._meter_value(conn, context))

    async def send_state_change(self, conn: Connector) -> None:
        sess = conn.session
        if sess is not None and sess.transaction_id is not None:
            await self._event("Updated", "ChargingStateChanged", conn, sess)

    async def send_firmware_status(self, status: str, request_id: int | None) -> None:
        await self.call(call.FirmwareStatusNotification(status=status, request_id=request_id))

    async def send_log_status(self, status: str, request_id: int | None) -> None:
        await self.call(call.LogStatusNotification(status=LOG_STATUS_201.get(status, status), request_id=request_id))

    async def send_reservation_ended(self, reservation_id: int, status: str) -> None:
        await self.call(call.ReservationStatusUpdate(reservation_id=reservation_id,
                                                     reservation_update_status=status))

    # ---- incoming -------------------------------------------------------------------------------

    @on("UpdateFirmware")
    async def on_update_firmware(self, request_id: int, firmware: dict, **_: Any):
        await self._received("UpdateFirmware", {"request_id": request_id, "firmware": firmware})
        status = self.sim.update_firmware(firmware["location"], parse_iso(firmware["retrieve_date_time"]), request_id)
        return call_result.UpdateFirmware(status=status)

    @on("GetLog")
    async def on_get_log(self, log: dict, log_type: str, request_id: int, **_: Any):
        await self._received("GetLog", {"log": log, "log_type": log_type, "request_id": request_id})
        status, filename = self.sim.get_log(log["remote_location"], log_type, request_id)
        return call_result.GetLog(status=status, filename=filename)

    @on("ReserveNow")
    async def on_reserve_now(self, id: int, expiry_date_time: str, id_token: dict, evse_id: int | None = None,
                             group_id_token: dict | None = None, **_: Any):
        group = (group_id_token or {}).get("id_token")
        await self._received("ReserveNow", {"id": id, "evse_id": evse_id, "id_token": id_token,
                                            "group_id_token": group_id_token})
        status = self.sim.reserve(id, evse_id or 0, id_token["id_token"], group, parse_time(expiry_date_time))
        return call_result.ReserveNow(status=status)

    @on("CancelReservation")
    async def on_cancel_reservation(self, reservation_id: int, **_: Any):
        await self._received("CancelReservation", {"reservation_id": reservation_id})
        return call_result.CancelReservation(status=self.sim.cancel_reservation(reservation_id))

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, evse_id: int, charging_profile: dict, **_: Any):
        status = await self.set_charging_profile({"evse_id": evse_id}, charging_profile, evse_id)
        return call_result.SetChargingProfile(status=status)

    @on("ClearChargingProfile")
    async def on_clear_charging_profile(self, charging_profile_id: int | None = None,
                                        charging_profile_criteria: dict | None = None, **_: Any):
        await self._received("ClearChargingProfile", {"charging_profile_id": charging_profile_id,
                                                      "criteria": charging_profile_criteria})
        crit = charging_profile_criteria or {}
        purpose = crit.get("charging_profile_purpose")
        gone = self.sim.store.clear(charging_profile_id, crit.get("evse_id"),
                                    purpose_from_ocpp(purpose) if purpose else None, crit.get("stack_level"))
        return call_result.ClearChargingProfile(status="Accepted" if gone else "Unknown")

    @on("GetCompositeSchedule")
    async def on_get_composite_schedule(self, duration: int, evse_id: int, charging_rate_unit: str | None = None,
                                        **_: Any):
        await self._received("GetCompositeSchedule", {"evse_id": evse_id, "duration": duration})
        if evse_id not in range(0, self.sim.config.connectors + 1):
            return call_result.GetCompositeSchedule(status="Rejected", status_info={"reason_code": "UnknownEVSE"})
        if self.sim.config.misbehaviour.empty_composite:
            return call_result.GetCompositeSchedule(status="Accepted")
        cs = self.sim.composite(evse_id, duration, charging_rate_unit)
        return call_result.GetCompositeSchedule(status="Accepted", schedule={
            "evse_id": evse_id, "duration": int(duration), "schedule_start": iso_millis(cs.start),
            "charging_rate_unit": cs.unit, "charging_schedule_period": schedule_periods(cs)})

    def _reported_profiles(self, evse_id: int | None, crit: dict) -> dict[int, list[dict]]:
        """The installed profiles GetChargingProfiles' criterion selects, by EVSE."""
        purpose, level = crit.get("charging_profile_purpose"), crit.get("stack_level")
        ids, sources = crit.get("charging_profile_id"), crit.get("charging_limit_source")
        out: dict[int, list[dict]] = {}
        if sources and "CSO" not in sources:
            return out  # every profile here was set by the central system (source CSO)
        for p in sorted(self.sim.store.profiles.values(), key=lambda p: p.id):
            if ((evse_id is not None and p.connector != evse_id) or (ids and p.id not in ids)
                    or (purpose and purpose_from_ocpp(purpose) is not p.purpose)
                    or (level is not None and p.stack_level != level)):
                continue
            out.setdefault(p.connector, []).append(profile_to_ocpp201(p))
        return out

    @on("GetChargingProfiles")
    async def on_get_charging_profiles(self, request_id: int, charging_profile: dict, evse_id: int | None = None,
                                       **_: Any):
        await self._received("GetChargingProfiles", {"request_id": request_id, "evse_id": evse_id,
                                                     "charging_profile": charging_profile})
        found = self._reported_profiles(evse_id, charging_profile)
        return call_result.GetChargingProfiles(status="Accepted" if found else "NoProfiles")

    @after("GetChargingProfiles")
    async def after_get_charging_profiles(self, request_id: int, charging_profile: dict,
                                          evse_id: int | None = None, **_: Any):
        """One ReportChargingProfiles per EVSE, the last with tbc false (K09)."""
        found = sorted(self._reported_profiles(evse_id, charging_profile).items())
        for i, (evse, profiles) in enumerate(found):
            await self.call(call.ReportChargingProfiles(request_id=request_id, charging_limit_source="CSO",
                                                        charging_profile=profiles, evse_id=evse,
                                                        tbc=i < len(found) - 1))

    @on("GetVariables")
    async def on_get_variables(self, get_variable_data: list[dict], **_: Any):
        await self._received("GetVariables", {"get_variable_data": get_variable_data})
        results = []
        for item in get_variable_data:
            status, var = self._lookup(item)
            attr = item.get("attribute_type", "Actual")
            res = {"attribute_status": status, "component": item["component"], "variable": item["variable"],
                   "attribute_type": attr}
            if var is not None:
                if attr != "Actual":
                    res["attribute_status"] = "NotSupportedAttributeType"
                elif var.mutability == "WriteOnly":
                    res["attribute_status"] = "Rejected"
                else:
                    res["attribute_value"] = var.value
            results.append(res)
        return call_result.GetVariables(get_variable_result=results)

    @on("GetBaseReport")
    async def on_get_base_report(self, request_id: int, report_base: str, **_: Any):
        await self._received("GetBaseReport", {"request_id": request_id, "report_base": report_base})
        return call_result.GetBaseReport(status="Accepted")

    @after("GetBaseReport")
    async def after_get_base_report(self, request_id: int, report_base: str, **_: Any):
        """The report in NotifyReport parts of at most REPORT_PART items, as real stations split it."""
        items = [report_item(key, var) for key, var in self.device_model().items()
                 if report_base == "FullInventory" or var.mutability != "ReadOnly"]
        if report_base == "SummaryInventory":
            items = items[:1]
        parts = [items[i:i + REPORT_PART] for i in range(0, len(items), REPORT_PART)] or [[]]
        generated = self._now()
        for seq, part in enumerate(parts):
            await self.call(call.NotifyReport(request_id=request_id, generated_at=generated, seq_no=seq,
                                              tbc=seq < len(parts) - 1, report_data=part or None))

    @on("SetVariables")
    async def on_set_variables(self, set_variable_data: list[dict], **_: Any):
        shown = [{**d, "attribute_value": "***"} if d["variable"]["name"] == "BasicAuthPassword" else d
                 for d in set_variable_data]
        await self._received("SetVariables", {"set_variable_data": shown})
        results = []
        for item in set_variable_data:
            status, var = self._lookup(item)
            attr = item.get("attribute_type", "Actual")
            if var is not None:
                if attr != "Actual":
                    status = "NotSupportedAttributeType"
                elif var.mutability == "ReadOnly" or var.setting is None:
                    status = "Rejected"
                elif not self.sim.change_setting(var.setting, item["attribute_value"]):
                    status = "Rejected"
            results.append({"attribute_status": status, "component": item["component"],
                            "variable": item["variable"], "attribute_type": attr})
        return call_result.SetVariables(set_variable_result=results)

    @on("ChangeAvailability")
    async def on_change_availability(self, operational_status: str, evse: dict | None = None, **_: Any):
        await self._received("ChangeAvailability", {"operational_status": operational_status, "evse": evse})
        status = self.sim.change_availability((evse or {}).get("id", 0), operational_status == "Operative")
        return call_result.ChangeAvailability(status=status)

    @on("RequestStartTransaction")
    async def on_request_start(self, id_token: dict, remote_start_id: int, evse_id: int | None = None,
                               charging_profile: dict | None = None, **_: Any):
        await self._received("RequestStartTransaction", {"id_token": id_token, "evse_id": evse_id})
        result = self.sim.remote_start(evse_id, id_token["id_token"], charging_profile, remote_start_id)
        if result is False:
            return call_result.RequestStartTransaction(status="Rejected")
        if result is True:  # accepted, waiting for a car
            self.sim.remote_start_waits(evse_id)
        tx = result.local_id if result is not True else None
        return call_result.RequestStartTransaction(status="Accepted", transaction_id=tx)

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id: str, **_: Any):
        await self._received("RequestStopTransaction", {"transaction_id": transaction_id})
        ok = self.sim.remote_stop(transaction_id)
        return call_result.RequestStopTransaction(status="Accepted" if ok else "Rejected")

    @on("TriggerMessage")
    async def on_trigger_message(self, requested_message: str, evse: dict | None = None, **_: Any):
        await self._received("TriggerMessage", {"requested_message": requested_message, "evse": evse})
        return call_result.TriggerMessage(status=self.sim.trigger(requested_message, (evse or {}).get("id")))

    @on("Reset")
    async def on_reset(self, type: str, evse_id: int | None = None, **_: Any):
        await self._received("Reset", {"type": type, "evse_id": evse_id})
        if evse_id is not None:
            return call_result.Reset(status="Rejected", status_info={"reason_code": "UnsupportedRequest"})
        return call_result.Reset(status=self.sim.reset(when_idle=type == "OnIdle"))

    @after("Reset")
    async def after_reset(self, type: str, evse_id: int | None = None, **_: Any):
        if evse_id is None:
            self.sim.reboot_after_reset(when_idle=type == "OnIdle", reason="ImmediateReset")

    @on("UnlockConnector")
    async def on_unlock_connector(self, evse_id: int, connector_id: int, **_: Any):
        await self._received("UnlockConnector", {"evse_id": evse_id, "connector_id": connector_id})
        status = "UnknownConnector" if connector_id != 1 else self.sim.unlock(evse_id, stop_first=False)
        return call_result.UnlockConnector(status=UNLOCK_201.get(status, status))

    @on("SendLocalList")
    async def on_send_local_list(self, version_number: int, update_type: str,
                                 local_authorization_list: list[dict] | None = None, **_: Any):
        await self._received("SendLocalList", {"version_number": version_number, "update_type": update_type})
        entries = {e["id_token"]["id_token"]: (e.get("id_token_info") or {}).get("status")
                   for e in local_authorization_list or ()}
        return call_result.SendLocalList(status=self.sim.send_local_list(version_number, update_type == "Full",
                                                                         entries))

    @on("GetLocalListVersion")
    async def on_get_local_list_version(self, **_: Any):
        await self._received("GetLocalListVersion", {})
        return call_result.GetLocalListVersion(version_number=self.sim.local_list_version)

    @on("ClearCache")
    async def on_clear_cache(self, **_: Any):
        await self._received("ClearCache", {})
        return call_result.ClearCache(status="Accepted")

    @on("DataTransfer")
    async def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: Any = None, **_: Any):
        await self._received("DataTransfer", {"vendor_id": vendor_id, "message_id": message_id})
        status, answer = self.sim.data_transfer(vendor_id, message_id, data)
        return call_result.DataTransfer(status=status, data=answer)
