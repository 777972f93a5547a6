"""A station held by another process, driven through the bus: the controller's :class:`StationLink`.

The delivery drives a :class:`RemoteLink` exactly as it drives the real OCPP session: each method becomes one
command to the gateway holding the station (:mod:`csms.bus.commands`) and returns what the real link would
have returned there. What the bus adds is mapped onto the outcomes the delivery already handles:

================================  ============================================  ===============================
what happened                     methods returning an Outcome                  read_capabilities / get_composite
================================  ============================================  ===============================
the gateway ran it                the station's answer                          the station's answer
no answer in time, ``expired``,   ``TIMEOUT``                                   unread Capabilities / None
``busy``
broker away, ``not_here``, the    ``OFFLINE``                                   unread Capabilities / None
link closed (a newer session)
``fenced``, ``wrong_group``, not  ``ERROR`` (``fenced`` also tells the          unread Capabilities / None
leading the group, bad request    controller to step down from the group)
================================  ============================================  ===============================

Its ``ready``, ``ready_reason``, ``boots`` and ``unsupported`` mirror the gateway's link, from the station
messages and from each reply (so that a command found unsupported is known before the caller looks).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose
from csms.domain.state import Version

from .codec import LinkInfo
from .commands import Refusal, Reply, result_value

#: What a refusal means to the delivery.
REFUSAL_OUTCOMES = {
    Refusal.FENCED: Outcome.ERROR, Refusal.WRONG_GROUP: Outcome.ERROR, Refusal.BAD_REQUEST: Outcome.ERROR,
    Refusal.NOT_HERE: Outcome.OFFLINE, Refusal.EXPIRED: Outcome.TIMEOUT, Refusal.BUSY: Outcome.TIMEOUT,
}


class CommandSender(Protocol):
    """What a RemoteLink needs of the controller's bus (:class:`csms.bus.controller.ControllerBus`)."""

    async def send(self, link: RemoteLink, op: str, kwargs: dict[str, Any]) -> Reply | Outcome: ...


class RemoteLink:
    """One station session on gateway ``node``, as a :class:`~csms.domain.link.StationLink`."""

    def __init__(self, station_id: str, node: str, version: Version | None, info: LinkInfo, sender: CommandSender):
        self.id = station_id
        self.node = node
        self.version = version
        self.ready = asyncio.Event()
        self.ready_reason = ""
        self.boots = 0
        self.unsupported: set[str] = set()
        #: True once the session ended (disconnected, or replaced by a newer one): calls return OFFLINE at once.
        self.closed = False
        self._sender = sender
        self.update(info)

    def update(self, info: LinkInfo) -> None:
        """Takes the gateway link's state (from a station message or a reply)."""
        self.ready_reason = info.ready_reason
        self.boots = info.boots
        self.unsupported = set(info.unsupported)
        if info.ready:
            self.ready.set()

    def close(self) -> None:
        self.closed = True

    async def _call(self, op: str, **kwargs: Any) -> Any:
        """The method's return value, or the failure's Outcome (the caller maps it for value-returning ops)."""
        if self.closed:
            return Outcome.OFFLINE
        answer = await self._sender.send(self, op, kwargs)
        if isinstance(answer, Outcome):
            return answer
        if answer.link is not None and not self.closed:
            self.update(answer.link)
        if answer.refused is not None:
            return REFUSAL_OUTCOMES[answer.refused]
        return result_value(op, answer)

    async def _outcome(self, op: str, **kwargs: Any) -> Outcome:
        return await self._call(op, **kwargs)

    async def read_capabilities(self, connector: int) -> Capabilities:
        value = await self._call("read_capabilities", connector=connector)
        if isinstance(value, Outcome):
            return Capabilities(read=False, unanswered=value.unanswered)
        return value

    async def set_measurands(self, measurands: list[str]) -> Outcome:
        return await self._outcome("set_measurands", measurands=list(measurands))

    async def set_meter_interval(self, interval: int) -> Outcome:
        return await self._outcome("set_meter_interval", interval=interval)

    async def trigger_meter_values(self, connector: int) -> Outcome:
        return await self._outcome("trigger_meter_values", connector=connector)

    async def set_profile(self, spec: ProfileSpec) -> Outcome:
        return await self._outcome("set_profile", spec=spec)

    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome:
        return await self._outcome("clear_profile", profile_id=profile_id, purpose=purpose, stack_level=stack_level,
                                   connector=connector)

    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None:
        value = await self._call("get_composite", connector=connector, duration=duration, unit=unit)
        return None if isinstance(value, Outcome) else value

    async def set_availability(self, connector: int, operative: bool) -> Outcome:
        return await self._outcome("set_availability", connector=connector, operative=operative)

