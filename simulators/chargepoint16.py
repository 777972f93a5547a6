"""OCPP 1.6J face of a simulated charger (:class:`~simulators.charger.Charger`): the messages it sends and
the calls it answers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result

from simulators.ocpp_face import OcppFace, parse_time, schedule_periods
from csms.runtime.isotime import iso_millis, parse_iso
from simulators.profiles import purpose_from_ocpp

if TYPE_CHECKING:
    from simulators.connector import Connector, Session

log = logging.getLogger(__name__)


class ChargePoint16(OcppFace, ChargePoint):
    # ---- outgoing -------------------------------------------------------------------------------

    async def send_boot(self) -> tuple[str, float]:
        cfg = self.sim.config
        return await self.boot(call.BootNotification(charge_point_model=cfg.model, charge_point_vendor=cfg.vendor,
                                                     charge_point_serial_number=cfg.id,
                                                     firmware_version=self.sim.firmware_version))

    async def send_heartbeat(self) -> None:
        await self.call(call.Heartbeat())

    async def send_status(self, conn: Connector) -> None:
        await self.call(call.StatusNotification(connector_id=conn.id, error_code="NoError", status=conn.status,
                                                timestamp=self._now()))

    async def send_state_change(self, conn: Connector) -> None:
        """1.6 reports charging-state changes through StatusNotification alone."""

    async def send_start(self, conn: Connector, sess: Session, authorize: bool) -> None:
        # A card presented offline was authorized locally and has charged since: it is reported with
        # StartTransaction alone, whose answer may still stop it (below).
        if authorize and not sess.started_offline:
            res = await self.call(call.Authorize(id_tag=sess.id_tag))
            status = None if res is None else res.id_tag_info.get("status")
            parent = None if res is None else res.id_tag_info.get("parent_id_tag")
            if status != "Accepted" or not self.sim.claim_reservation(conn, sess, parent):
                log.info("%s: id tag %s is %s; no transaction", self.sim.id, sess.id_tag, status)
                self.sim.abandon(conn, sess)
                return
            self.sim.authorized(conn, sess)
        res = await self.call(call.StartTransaction(connector_id=conn.id, id_tag=sess.id_tag,
                                                    meter_start=round(sess.meter_start_wh),
                                                    timestamp=iso_millis(sess.started_at),
                                                    reservation_id=sess.reservation_id))
        if res is None:
            self.sim.abandon(conn, sess)
            return
        self.sim.transaction_id_assigned(conn, sess, str(res.transaction_id))
        status = res.id_tag_info.get("status")
        if status != "Accepted" and conn.session is sess:
            # StopTransactionOnInvalidId (default true): the transaction the central system refused is stopped.
            log.info("%s: id tag %s is %s at StartTransaction; stopping", self.sim.id, sess.id_tag, status)
            self.sim.stop_session(conn.id, "DeAuthorized")

    async def send_stop(self, conn: Connector, sess: Session, reason: str, meter_stop: float) -> None:
        if sess.transaction_id is None:
            return  # never reached the central system
        await self.call(call.StopTransaction(meter_stop=round(meter_stop), timestamp=self._now(),
                                             transaction_id=int(sess.transaction_id), reason=reason,
                                             id_tag=sess.id_tag))

    async def send_meter_values(self, conn: Connector, sess: Session | None, context: str) -> None:
        tx = int(sess.transaction_id) if sess is not None and sess.transaction_id is not None else None
        if sess is not None and tx is None:
            return  # the transaction id is not known yet
        mv = [{"timestamp": self._now(), "sampled_value": self.sim.sampled_values(conn, context)}]
        await self.call(call.MeterValues(connector_id=conn.id, meter_value=mv, transaction_id=tx))

    async def send_firmware_status(self, status: str, request_id: int | None) -> None:
        await self.call(call.FirmwareStatusNotification(status=status))

    async def send_log_status(self, status: str, request_id: int | None) -> None:
        await self.call(call.DiagnosticsStatusNotification(status=status))

    async def send_reservation_ended(self, reservation_id: int, status: str) -> None:
        """1.6 has no message for it: the connector's StatusNotification Available says it."""

    # ---- incoming -------------------------------------------------------------------------------

    @on("UpdateFirmware")
    async def on_update_firmware(self, location: str, retrieve_date: str, **_: Any):
        await self._received("UpdateFirmware", {"location": location, "retrieve_date": retrieve_date})
        self.sim.update_firmware(location, parse_iso(retrieve_date), None)
        return call_result.UpdateFirmware()

    @on("GetDiagnostics")
    async def on_get_diagnostics(self, location: str, **kw: Any):
        await self._received("GetDiagnostics", {"location": location, **kw})
        _, filename = self.sim.get_log(location, "Diagnostics", None)
        return call_result.GetDiagnostics(file_name=filename)

    @on("ReserveNow")
    async def on_reserve_now(self, connector_id: int, expiry_date: str, id_tag: str, reservation_id: int,
                             parent_id_tag: str | None = None, **_: Any):
        await self._received("ReserveNow", {"connector_id": connector_id, "id_tag": id_tag,
                                            "reservation_id": reservation_id, "parent_id_tag": parent_id_tag})
        status = self.sim.reserve(reservation_id, connector_id, id_tag, parent_id_tag, parse_time(expiry_date))
        return call_result.ReserveNow(status=status)

    @on("CancelReservation")
    async def on_cancel_reservation(self, reservation_id: int, **_: Any):
        await self._received("CancelReservation", {"reservation_id": reservation_id})
        return call_result.CancelReservation(status=self.sim.cancel_reservation(reservation_id))

    @on("SetChargingProfile")
    async def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict, **_: Any):
        status = await self.set_charging_profile({"connector_id": connector_id}, cs_charging_profiles, connector_id)
        return call_result.SetChargingProfile(status=status)

    @on("ClearChargingProfile")
    async def on_clear_charging_profile(self, id: int | None = None, connector_id: int | None = None,
                                        charging_profile_purpose: str | None = None, stack_level: int | None = None,
                                        **_: Any):
        await self._received("ClearChargingProfile", {"id": id, "connector_id": connector_id})
        purpose = purpose_from_ocpp(charging_profile_purpose) if charging_profile_purpose else None
        gone = self.sim.store.clear(id, connector_id, purpose, stack_level)
        return call_result.ClearChargingProfile(status="Accepted" if gone else "Unknown")

    @on("GetCompositeSchedule")
    async def on_get_composite_schedule(self, connector_id: int, duration: int,
                                        charging_rate_unit: str | None = None, **_: Any):
        await self._received("GetCompositeSchedule", {"connector_id": connector_id, "duration": duration})
        if connector_id not in range(0, self.sim.config.connectors + 1):
            return call_result.GetCompositeSchedule(status="Rejected")
        if self.sim.config.misbehaviour.empty_composite:
            return call_result.GetCompositeSchedule(status="Accepted", connector_id=connector_id)
        cs = self.sim.composite(connector_id, duration, charging_rate_unit)
        return call_result.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=iso_millis(cs.start),
            charging_schedule={"duration": int(duration), "charging_rate_unit": cs.unit,
                               "charging_schedule_period": schedule_periods(cs)})

    def configuration(self) -> dict[str, tuple[str, bool]]:
        """Every key this charger reports: value and whether it is read-only."""
        sim, cfg, mis = self.sim, self.sim.config, self.sim.config.misbehaviour
        rotation = ",".join(f"{i}.{cfg.phase_rotation}" for i in range(cfg.connectors + 1))
        return {
            "ChargeProfileMaxStackLevel": (str(mis.max_stack_level), True),
            "ChargingScheduleAllowedChargingRateUnit": ("Power" if mis.only_watts else "Current,Power", True),
            "ChargingScheduleMaxPeriods": (str(sim.store.max_periods), True),
            "MaxChargingProfilesInstalled": (str(sim.store.max_profiles), True),
            "ConnectorSwitch3to1PhaseSupported": ("false", True),
            "ConnectorPhaseRotation": (rotation, True),
            "MeterValuesSampledData": (",".join(sim.measurands), False),
            "MeterValueSampleInterval": (str(int(sim.meter_interval)), False),
            "HeartbeatInterval": (str(int(sim.heartbeat_interval)), False),
            "ConnectionTimeOut": (str(int(sim.connection_timeout)), False),
            "NumberOfConnectors": (str(cfg.connectors), True),
            "SupportedFeatureProfiles": ("Core,SmartCharging,RemoteTrigger", True),
        }

    @on("GetConfiguration")
    async def on_get_configuration(self, key: list[str] | None = None, **_: Any):
        await self._received("GetConfiguration", {"key": key})
        conf = self.configuration()
        wanted = key or list(conf)
        known = [{"key": k, "readonly": conf[k][1], "value": conf[k][0]} for k in wanted if k in conf]
        unknown = [k for k in wanted if k not in conf]
        return call_result.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    async def on_change_configuration(self, key: str, value: str, **_: Any):
        await self._received("ChangeConfiguration", {"key": key, "value": "***" if key == "AuthorizationKey" else value})
        conf = self.configuration()
        if key not in conf and key != "AuthorizationKey":
            return call_result.ChangeConfiguration(status="NotSupported")
        if key in conf and conf[key][1]:
            return call_result.ChangeConfiguration(status="Rejected")
        ok = self.sim.change_setting(key, value)
        return call_result.ChangeConfiguration(status="Accepted" if ok else "Rejected")

    @on("ChangeAvailability")
    async def on_change_availability(self, connector_id: int, type: str, **_: Any):
        await self._received("ChangeAvailability", {"connector_id": connector_id, "type": type})
        status = self.sim.change_availability(connector_id, type == "Operative")
        return call_result.ChangeAvailability(status=status)

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None,
                              charging_profile: dict | None = None, **_: Any):
        await self._received("RemoteStartTransaction", {"id_tag": id_tag, "connector_id": connector_id})
        ok = self.sim.remote_start(connector_id, id_tag, charging_profile)
        if ok is True:  # accepted, waiting for a car
            self.sim.remote_start_waits(connector_id)
        return call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    @on("RemoteStopTransaction")
    async def on_remote_stop(self, transaction_id: int, **_: Any):
        await self._received("RemoteStopTransaction", {"transaction_id": transaction_id})
        ok = self.sim.remote_stop(str(transaction_id))
        return call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @on("TriggerMessage")
    async def on_trigger_message(self, requested_message: str, connector_id: int | None = None, **_: Any):
        await self._received("TriggerMessage", {"requested_message": requested_message, "connector_id": connector_id})
        return call_result.TriggerMessage(status=self.sim.trigger(requested_message, connector_id))


    @on("Reset")
    async def on_reset(self, type: str, **_: Any):
        await self._received("Reset", {"type": type})
        return call_result.Reset(status=self.sim.reset(when_idle=False))

    @after("Reset")
    async def after_reset(self, type: str, **_: Any):
        # Soft: transactions are stopped gracefully first; Hard: the same here (the simulator loses nothing).
        self.sim.reboot_after_reset(when_idle=False, reason="HardReset" if type == "Hard" else "SoftReset")

    @on("UnlockConnector")
    async def on_unlock_connector(self, connector_id: int, **_: Any):
        await self._received("UnlockConnector", {"connector_id": connector_id})
        status = self.sim.unlock(connector_id, stop_first=True)
        return call_result.UnlockConnector(status="UnlockFailed" if status == "UnknownConnector" else status)

    @on("SendLocalList")
    async def on_send_local_list(self, list_version: int, update_type: str,
                                 local_authorization_list: list[dict] | None = None, **_: Any):
        await self._received("SendLocalList", {"list_version": list_version, "update_type": update_type})
        entries = {e["id_tag"]: (e.get("id_tag_info") or {}).get("status") for e in local_authorization_list or ()}
        return call_result.SendLocalList(status=self.sim.send_local_list(list_version, update_type == "Full", entries))

    @on("GetLocalListVersion")
    async def on_get_local_list_version(self, **_: Any):
        await self._received("GetLocalListVersion", {})
        return call_result.GetLocalListVersion(list_version=self.sim.local_list_version)

    @on("ClearCache")
    async def on_clear_cache(self, **_: Any):
        await self._received("ClearCache", {})
        return call_result.ClearCache(status="Accepted")

    @on("DataTransfer")
    async def on_data_transfer(self, vendor_id: str, message_id: str | None = None, data: str | None = None,
                               **_: Any):
        await self._received("DataTransfer", {"vendor_id": vendor_id, "message_id": message_id})
        status, answer = self.sim.data_transfer(vendor_id, message_id, data)
        return call_result.DataTransfer(status=status, data=answer)
