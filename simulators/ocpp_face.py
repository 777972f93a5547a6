"""What both OCPP faces of a simulated charger (1.6J and 2.0.1) share on top of the ``ocpp`` package's
ChargePoint: the gate for calls before the boot is accepted, the log and answer delay of every call
received, timestamps on the charger's clock, and the SetChargingProfile rule.

Only the package's public API is used; a raw frame (the gate's CALLERROR) goes out on the websocket the
face was given.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ocpp.exceptions import NotImplementedError as OCPPNotImplemented
from ocpp.messages import CallError, MessageType, unpack

from simulators.profile_store import CompositeSchedule
from csms.runtime.isotime import iso_millis

if TYPE_CHECKING:
    from simulators.charger import Charger

log = logging.getLogger(__name__)


class OcppFace:
    """Mixed in before the package's ChargePoint (``class ChargePoint16(OcppFace, ChargePoint)``)."""

    #: Set when the Accepted BootNotification reply is read: frames are handled in order, as a real charger does,
    #: so a call right behind that reply is answered.
    boot_accepted: bool = False

    def __init__(self, sim: Charger, ws: Any) -> None:
        super().__init__(sim.id, ws, response_timeout=sim.config.response_timeout)  # type: ignore[call-arg]
        self.sim = sim
        self.websocket = ws
        #: Calls still to be lost on this connection, per action (misbehaviour ``lose``).
        self.to_lose: dict[str, int] = dict(sim.config.misbehaviour.lose)

    async def route_message(self, raw_msg: str) -> None:
        """Calls that arrive before the boot is accepted are dropped or answered SecurityError when the
        misbehaviour says so (``before_boot``); otherwise everything is answered."""
        mode = self.sim.config.misbehaviour.before_boot
        if mode and not self.boot_accepted:
            msg = unpack(raw_msg)
            if (msg.message_type_id == MessageType.CallResult and isinstance(msg.payload, dict)
                    and msg.payload.get("status") == "Accepted" and "currentTime" in msg.payload
                    and "interval" in msg.payload):
                self.boot_accepted = True
            elif msg.message_type_id == MessageType.Call:
                self.sim.before_boot.append(msg.action)
                log.info("%s: %s before the boot is accepted: %s", self.sim.id, msg.action,
                         "dropped" if mode == "drop" else "SecurityError")
                if mode == "error":
                    await self.websocket.send(CallError(
                        msg.unique_id, "SecurityError", f"Cannot handle {msg.action} before the boot is accepted",
                        {}).to_json())
                return
        if self.to_lose and self._lost(raw_msg):
            return
        await super().route_message(raw_msg)  # type: ignore[misc]

    def _lost(self, raw_msg: str) -> bool:
        """Whether this frame is a call the misbehaviour says to lose (``lose``): it is never answered."""
        msg = unpack(raw_msg)
        if msg.message_type_id != MessageType.Call or self.to_lose.get(msg.action, 0) <= 0:
            return False
        self.to_lose[msg.action] -= 1
        self.sim.received.append((msg.action, msg.payload))
        log.info("%s: %s lost (misbehaviour lose; %d more to lose)", self.sim.id, msg.action, self.to_lose[msg.action])
        return True

    async def boot(self, request: Any) -> tuple[str, float]:
        """Sends a BootNotification: its status and heartbeat interval; no answer counts as Rejected, retry in 10 s."""
        res = await self.call(request)  # type: ignore[attr-defined]
        if res is None:
            return "Rejected", 10.0
        return res.status, float(res.interval)

    def _now(self) -> str:
        return iso_millis(self.sim.clock.now())

    async def _received(self, action: str, payload: dict) -> None:
        """Logs a call from the central system, then sits on it as long as the misbehaviour says (or answers
        CALLERROR NotImplemented for a call it is set not to implement)."""
        self.sim.received.append((action, payload))
        if action in self.sim.config.misbehaviour.not_implemented_calls:
            raise OCPPNotImplemented(description=f"{action} is not implemented by this charger")
        delay = self.sim.config.misbehaviour.answer_delay
        if delay > 0:
            await asyncio.sleep(delay)

    async def set_charging_profile(self, where: dict, raw: dict, connector: int) -> str:
        """SetChargingProfile in either version: the status to answer, or CALLERROR NotImplemented for a
        purpose the misbehaviour says it does not implement. ``where`` names the connector / EVSE in the log."""
        await self._received("SetChargingProfile", {**where, **raw})
        if self.sim.not_implemented(raw):
            raise OCPPNotImplemented(description="SetChargingProfile is not implemented for this purpose")
        return self.sim.install_profile(raw, connector)


def parse_time(text: str) -> float:
    """An OCPP date-time (ISO 8601, "Z" or an offset; without a zone: UTC) as POSIX seconds."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def schedule_periods(cs: CompositeSchedule) -> list[dict]:
    """A composite schedule's periods as both versions' GetCompositeSchedule answer carries them."""
    return [{"start_period": int(p.start), "limit": p.limit, "number_phases": p.number_phases} for p in cs.periods]
