"""The roles split over the bus, end to end: a simulated charger on a gateway's real OCPP server, and the real
balancer and delivery on a controller driving it through a RemoteLink (what ``--role gateway`` and ``--role
controller`` will wire together)."""

from __future__ import annotations

import contextlib
import time

from csms.balancer.controller import BalancerController
from csms.balancer.model import ControlState
from csms.balancer.ports import DecisionOutbox
from csms.bus.controller import ControllerBus
from csms.bus.gateway import GatewayBridge
from csms.config import ClusterConfig
from csms.domain.authorization import Authorizer
from csms.domain.state import SiteState
from csms.ocpp.context import SessionContext
from csms.ocpp.server import CentralSystem
from csms.smart_charging.delivery import Delivery
from csms.storage.database import Storage
from meter_gateway.config import MqttConfig
from simulators.chargepoint import SimCharger
from simulators.ev import EVModel
from simulators.profiles import Purpose as SimPurpose

from tests.csms.test_delivery import config, sim, wait_until

from .harness import PREFIX, fast_backoff


class NoDecisionStore:
    def record_decision(self, decision) -> None:
        pass


@contextlib.asynccontextmanager
async def gateway_role(cfg, mqtt: MqttConfig):
    """The gateway's parts: storage, live state, the OCPP server, and the bridge its sessions attach to."""
    state = SiteState()
    async with Storage(cfg.storage.target, cfg.storage.commit_interval) as storage:
        bridge = GatewayBridge(mqtt, ClusterConfig(node="gw-1", prefix=PREFIX), state,
                               lambda sid: g.id if (g := cfg.group_of(sid)) else None, backoff=fast_backoff())
        server = CentralSystem(SessionContext(cfg, state, storage, Authorizer(cfg, state)), on_session=bridge.attach)
        async with bridge:
            await server.start()
            try:
                yield server, bridge
            finally:
                await server.stop()


@contextlib.asynccontextmanager
async def controller_role(cfg, mqtt: MqttConfig):
    """The controller's parts: a mirror SiteState, the balancer and the delivery, and the bus feeding them."""
    state, decisions = SiteState(), DecisionOutbox()
    balancer = BalancerController(cfg, state, decisions, NoDecisionStore())
    delivery = Delivery(cfg, state, decisions, balancer)
    bus = ControllerBus(mqtt, ClusterConfig(node="ctl-1", prefix=PREFIX), state, on_session=delivery.attach,
                        token_of=lambda group: 1, group_of=lambda sid: g.id if (g := cfg.group_of(sid)) else None,
                        groups=lambda: [g.id for g in cfg.load_balancers], call_timeout=cfg.server.call_timeout,
                        backoff=fast_backoff())
    await balancer.start()
    try:
        async with bus:
            yield balancer, delivery, bus
    finally:
        await delivery.stop()
        await balancer.stop()


async def test_a_charger_on_a_gateway_is_set_up_and_limited_by_a_controller(tmp_path, mosquitto):
    cfg = config(tmp_path, [{"id": "CP1", "offline_current": 8}], budget=20)
    mqtt = MqttConfig(port=mosquitto.port)
    async with controller_role(cfg, mqtt) as (balancer, delivery, bus), gateway_role(cfg, mqtt) as (server, bridge):
        cp = SimCharger(sim("CP1", "ocpp2.0.1"))
        await cp.start(f"ws://127.0.0.1:{server.port}/ocpp")
        try:
            await cp.wait_connected(timeout=5)
            await wait_until(lambda: cp.store.profiles.get(1) is not None, what="the fallback profile")
            fallback = cp.store.profiles[1]
            assert fallback.purpose is SimPurpose.TX_DEFAULT and fallback.schedule.periods[0].limit == 8
            await wait_until(lambda: cp.meter_interval == 10, what="metering set up")
            started = time.monotonic()
            cp.plug_in(EVModel(max_current=32, ramp_delay=0, ramp_time=0.2))
            await wait_until(lambda: cp.limit().amps == 20, what="the dynamic limit")
            assert delivery.channels["CP1"].control is ControlState.CONTROLLED
            assert balancer.decision("g").limits["CP1"].limit == 20
            assert time.monotonic() - started < 5
            assert bridge.counts["commands_run"] >= 4
            # The gateway counts a command when it sends the answer, the controller when the answer arrives: one
            # the limit's acceptance set off (the GetCompositeSchedule that confirms it) may be on its way.
            await wait_until(lambda: bus.counts["answered"] == bridge.counts["commands_run"],
                             what="every command run answered to the controller")
        finally:
            await cp.stop()
        await wait_until(lambda: not bus.state.station("CP1").connected, what="the disconnect reached the controller")
