"""A gateway bridge and controller buses on a private mosquitto, with fake station links."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from csms.bus.controller import ControllerBus
from csms.bus.gateway import GatewayBridge
from csms.config.cluster import ClusterConfig
from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose, StationLink
from csms.domain.state import Event, SiteState, Version
from meter_gateway.backoff import Backoff
from meter_gateway.config import MqttConfig

PREFIX = "t"


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=0.3)


async def until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what or pred}")
        await asyncio.sleep(0.02)


class FakeLink:
    """A StationLink that records every call and answers what ``answers`` says (Accepted by default), after
    ``delay`` s; ``running`` counts calls in flight (the gateway runs one at a time per station)."""

    def __init__(self, station_id: str, version: Version = Version.V16):
        self.id = station_id
        self.version = version
        self.ready = asyncio.Event()
        self.ready_reason = ""
        self.boots = 0
        self.unsupported: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, Any] = {}
        self.delay = 0.0
        self.running = 0
        self.most_running = 0

    def boot(self) -> None:
        self.boots += 1
        self.ready_reason = "boot accepted" if self.boots == 1 else "rebooted"
        self.ready.set()

    async def _answer(self, op: str, default: Any, **kwargs: Any) -> Any:
        self.calls.append((op, kwargs))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            answer = self.answers.get(op, default)
            if answer is Outcome.NOT_SUPPORTED:
                self.unsupported.add(op)
            return answer
        finally:
            self.running -= 1

    async def read_capabilities(self, connector: int) -> Capabilities:
        return await self._answer("read_capabilities", Capabilities(), connector=connector)

    async def set_measurands(self, measurands: list[str]) -> Outcome:
        return await self._answer("set_measurands", Outcome.ACCEPTED, measurands=measurands)

    async def set_meter_interval(self, interval: int) -> Outcome:
        return await self._answer("set_meter_interval", Outcome.ACCEPTED, interval=interval)

    async def trigger_meter_values(self, connector: int) -> Outcome:
        return await self._answer("trigger_meter_values", Outcome.ACCEPTED, connector=connector)

    async def set_profile(self, spec: ProfileSpec) -> Outcome:
        return await self._answer("set_profile", Outcome.ACCEPTED, spec=spec)

    async def clear_profile(self, profile_id: int | None = None, purpose: Purpose | None = None,
                            stack_level: int | None = None, connector: int | None = None) -> Outcome:
        return await self._answer("clear_profile", Outcome.ACCEPTED, profile_id=profile_id, purpose=purpose,
                                  stack_level=stack_level, connector=connector)

    async def get_composite(self, connector: int, duration: int, unit: str) -> CompositeLimit | None:
        return await self._answer("get_composite", None, connector=connector, duration=duration, unit=unit)

    async def set_availability(self, connector: int, operative: bool) -> Outcome:
        return await self._answer("set_availability", Outcome.ACCEPTED, connector=connector, operative=operative)


@dataclass
class Gateway:
    """A gateway process's parts: its SiteState (what its OCPP handlers update) and its bridge."""

    bridge: GatewayBridge
    state: SiteState
    events: list[Event] = field(default_factory=list)

    def connect(self, sid: str, at: float, version: Version = Version.V16) -> FakeLink:
        """What the OCPP server does on a new connection: the state hears of it, then the session's link."""
        link = FakeLink(sid, version)
        self.state.connected(sid, version, at)
        self.bridge.attach(link)
        return link


def gateway(port: int, node: str = "gw-1", groups: dict[str, str | None] | None = None,
            backoff: Backoff | None = None, refresh_interval: float = 120.0, call_timeout: float = 15.0,
            margin: float = 2.0) -> Gateway:
    state = SiteState()
    group_map = groups if groups is not None else {}
    bridge = GatewayBridge(MqttConfig(port=port), ClusterConfig(node=node, prefix=PREFIX), state,
                           lambda sid: group_map.get(sid, "g1"), backoff=backoff or fast_backoff(),
                           refresh_interval=refresh_interval, call_timeout=call_timeout, margin=margin)
    gw = Gateway(bridge, state)
    state.subscribe(gw.events.append)
    return gw


@dataclass
class Controller:
    bus: ControllerBus
    state: SiteState
    tokens: dict[str | None, int]
    events: list[Event] = field(default_factory=list)
    sessions: list[StationLink] = field(default_factory=list)
    fenced: list[str | None] = field(default_factory=list)


def controller(port: int, node: str = "ctl-1", token: int = 1, call_timeout: float = 2.0,
               margin: float = 0.5, offline_grace: float = 0.3, confirm_window: float = 3.0) -> Controller:
    state = SiteState()
    tokens: dict[str | None, int] = {"g1": token, None: token}
    ctl = Controller(None, state, tokens)  # type: ignore[arg-type]
    state.subscribe(ctl.events.append)
    ctl.bus = ControllerBus(MqttConfig(port=port), ClusterConfig(node=node, prefix=PREFIX), state,
                            on_session=ctl.sessions.append, token_of=tokens.get, group_of=lambda sid: "g1",
                            on_fenced=ctl.fenced.append, groups=lambda: ["g1"], call_timeout=call_timeout,
                            margin=margin, offline_grace=offline_grace, confirm_window=confirm_window,
                            backoff=fast_backoff())
    return ctl
