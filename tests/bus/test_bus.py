"""A gateway bridge and controller buses over a private mosquitto (127.0.0.1, a free port), with fake links."""

from __future__ import annotations

import asyncio
import socket
import time

import aiomqtt

from csms.bus.codec import LinkInfo
from csms.bus.commands import Command, encode_command
from csms.bus.connection import publish_properties
from csms.bus.remote import RemoteLink
from csms.domain.link import Capabilities, CompositeLimit, Outcome, ProfileSpec, Purpose
from csms.domain.state import (
    BootInfo, MaintenanceStatus, PhaseSample, StationBooted, StationConnected, StationDisconnected, Transaction,
)

from meter_gateway.backoff import Backoff

from .harness import PREFIX, controller, gateway, until

SPEC = ProfileSpec(profile_id=7, stack_level=3, purpose=Purpose.TX, connector=1, limit=13.5, unit="A",
                   number_phases=1, phase_to_use=2, transaction_id="tx-9", start_schedule=1700000000.25, duration=90,
                   valid_to=1700000090.5)


def _session(gw, sid: str, at: float):
    """A station that connects and boots, as the OCPP server and handlers drive the state and the link."""
    link = gw.connect(sid, at)
    link.boot()
    gw.state.booted(sid, BootInfo("Vendor", "Model", "SN1", "1.0"), at + 0.1)
    gw.state.status(sid, 1, "Available", None, at + 0.2)
    return link


async def test_events_arrive_in_order_and_the_mirror_equals_the_source(mosquitto):
    gw, ctl = gateway(mosquitto.port), controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        await until(lambda: gw.bridge.conn.up.is_set() and ctl.bus.conn.up.is_set())
        t = time.time()
        _session(gw, "CP1", t)
        tx = Transaction("42", 1, "TAG", t + 1, 1000.0)
        gw.state.transaction_started("CP1", tx)
        for i in range(20):
            gw.state.sampled("CP1", 1, PhaseSample(t + 2 + i, (10.0 + i, None, None), (230.0, None, None), 1000.0 + i))
        gw.state.seen("CP1", t + 30)
        gw.state.maintenance("CP1", "firmware", MaintenanceStatus("Installed", t + 31, 4))
        gw.state.status("CP1", 1, "Charging", None, t + 32)
        await until(lambda: ctl.events == gw.events, what="the controller heard every event, in order")
        assert ctl.state.station("CP1") == gw.state.station("CP1")  # seen and maintenance travelled too
        [link] = ctl.sessions
        assert isinstance(link, RemoteLink) and link.ready.is_set() and link.boots == 1 and link.node == "gw-1"
        assert ctl.bus.mirror.counts["resync"] == 0 and ctl.bus.mirror.counts["gap"] == 0


async def test_a_late_controller_gets_every_station_from_the_retained_messages(mosquitto):
    gw = gateway(mosquitto.port)
    async with gw.bridge:
        await until(gw.bridge.conn.up.is_set)
        t = time.time()
        for n in range(3):
            _session(gw, f"CP{n}", t + n)
        gw.state.transaction_started("CP1", Transaction("7", 1, None, t + 5))
        gw.connect("CP9", t + 6)
        gw.state.disconnected("CP9", t + 7)
        await until(lambda: gw.bridge.counts["published"] >= len(gw.events))
        ctl = controller(mosquitto.port)
        async with ctl.bus:
            await until(lambda: all(ctl.state.station(s) == gw.state.station(s) for s in gw.state.stations)
                        and len(ctl.sessions) == 3, what="every station mirrored")
            assert sorted(link.id for link in ctl.sessions) == ["CP0", "CP1", "CP2"]
            assert all(link.ready.is_set() for link in ctl.sessions)
            # The balancer hears the running transaction as it would from the station itself.
            assert any(type(e).__name__ == "TransactionStarted" and e.station_id == "CP1" for e in ctl.events)


async def test_commands_round_trip_and_return_what_the_real_link_returned(mosquitto):
    gw, ctl = gateway(mosquitto.port), controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        fake = _session(gw, "CP1", time.time())
        await until(lambda: ctl.sessions and ctl.sessions[-1].ready.is_set())
        remote = ctl.sessions[-1]
        caps = Capabilities(max_stack_level=5, rate_units=("A",), max_periods=24, max_profiles=10,
                            phase_rotation="RST", phase_switching=True, meter_interval=60, measurands="Current.Import",
                            raw={"ChargeProfileMaxStackLevel": "5"}, read=True,
                            ignored={"MaxChargingProfilesInstalled": "n/a"})
        fake.answers = {"read_capabilities": caps, "get_composite": CompositeLimit(13.5, "A", 3),
                        "set_availability": Outcome.REJECTED, "trigger_meter_values": Outcome.NOT_SUPPORTED}
        assert await remote.set_profile(SPEC) is Outcome.ACCEPTED
        assert fake.calls[-1] == ("set_profile", {"spec": SPEC})
        assert await remote.read_capabilities(1) == caps
        assert await remote.get_composite(1, 60, "A") == CompositeLimit(13.5, "A", 3)
        assert await remote.clear_profile(purpose=Purpose.TX_DEFAULT, stack_level=2) is Outcome.ACCEPTED
        assert fake.calls[-1] == ("clear_profile", {"profile_id": None, "purpose": Purpose.TX_DEFAULT,
                                                    "stack_level": 2, "connector": None})
        assert await remote.set_measurands(["Current.Import", "Voltage"]) is Outcome.ACCEPTED
        assert await remote.set_meter_interval(10) is Outcome.ACCEPTED
        assert await remote.set_availability(1, False) is Outcome.REJECTED
        assert await remote.trigger_meter_values(1) is Outcome.NOT_SUPPORTED
        assert remote.unsupported == {"trigger_meter_values"}  # known from the reply, before any state message
        # One command at a time per station, in the order sent.
        fake.delay = 0.05
        results = await asyncio.gather(*(remote.set_meter_interval(i) for i in range(5)))
        assert results == [Outcome.ACCEPTED] * 5 and fake.most_running == 1
        assert [c[1]["interval"] for c in fake.calls[-5:]] == list(range(5))


async def test_a_lower_token_is_fenced_and_its_controller_told_to_step_down(mosquitto):
    gw = gateway(mosquitto.port)
    old, new = controller(mosquitto.port, "ctl-old", token=5), controller(mosquitto.port, "ctl-new", token=6)
    async with old.bus, new.bus, gw.bridge:
        _session(gw, "CP1", time.time())
        await until(lambda: old.sessions and new.sessions and old.sessions[-1].ready.is_set()
                    and new.sessions[-1].ready.is_set())
        assert await old.sessions[-1].set_profile(SPEC) is Outcome.ACCEPTED  # 5: the highest seen so far
        assert await new.sessions[-1].set_profile(SPEC) is Outcome.ACCEPTED  # 6 raises the mark
        assert await old.sessions[-1].set_profile(SPEC) is Outcome.ERROR
        assert old.fenced == ["g1"] and new.fenced == []
        assert gw.bridge.counts["refused_fenced"] == 1 and gw.bridge.book.mark("g1") == 6


async def test_a_command_for_a_station_not_here_or_in_another_group_is_refused(mosquitto):
    gw1, gw2 = gateway(mosquitto.port, "gw-1"), gateway(mosquitto.port, "gw-2", groups={"CP2": "g2"})
    ctl = controller(mosquitto.port)
    async with ctl.bus, gw1.bridge, gw2.bridge:
        _session(gw1, "CP1", time.time())
        _session(gw2, "CP2", time.time())
        await until(lambda: len(ctl.sessions) == 2)
        astray = RemoteLink("CP1", "gw-2", None, LinkInfo(), ctl.bus)  # CP1 is on gw-1
        assert await astray.set_profile(SPEC) is Outcome.OFFLINE
        assert gw2.bridge.counts["refused_not_here"] == 1
        cp2 = next(link for link in ctl.sessions if link.id == "CP2")
        assert await cp2.set_profile(SPEC) is Outcome.ERROR  # the controller sends for g1; CP2 is in g2
        assert gw2.bridge.counts["refused_wrong_group"] == 1 and ctl.fenced == []


async def test_a_bad_command_is_answered_bad_request_and_a_bad_station_message_is_counted(mosquitto):
    gw, ctl = gateway(mosquitto.port), controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        _session(gw, "CP1", time.time())
        await until(lambda: ctl.sessions)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5) as raw:
            await raw.subscribe(f"{PREFIX}/res/rogue", qos=1)
            await raw.publish(f"{PREFIX}/cmd/gw-1/CP1", b'{"v": 1, "id": "x1", "op": "reboot"}', qos=1,
                              properties=publish_properties(response_topic=f"{PREFIX}/res/rogue", correlation="x1"))
            async with asyncio.timeout(5):
                reply = await anext(aiter(raw.messages))
            assert b'"refused":"bad_request"' in reply.payload and b"reboot" in reply.payload
            # A command without a reply topic is not run.
            cmd = Command("x2", "CP1", "set_meter_interval", {"interval": 5}, "g1", 1, time.time() + 5)
            await raw.publish(f"{PREFIX}/cmd/gw-1/CP1", encode_command(cmd), qos=1)
            await raw.publish(f"{PREFIX}/station/CP1", b'{"v": 9}', qos=1)
            await raw.publish(f"{PREFIX}/station/CP1", b"not json", qos=1)
        await until(lambda: ctl.bus.counts["unknown_version"] == 1 and ctl.bus.counts["bad_json"] == 1)
        await until(lambda: gw.bridge.counts["no_reply_topic"] == 1)
        assert gw.bridge.counts["unknown_op"] == 1
        gw.state.status("CP1", 1, "Preparing", None, time.time())  # the controller carries on
        await until(lambda: ctl.state.station("CP1").connectors[1].status == "Preparing")


async def test_the_broker_restarting_loses_nothing_and_hangs_no_call(mosquitto):
    gw, ctl = gateway(mosquitto.port), controller(mosquitto.port, call_timeout=2.0, margin=0.5)
    async with ctl.bus, gw.bridge:
        fake = _session(gw, "CP1", time.time())
        await until(lambda: ctl.sessions and ctl.sessions[-1].ready.is_set())
        remote = ctl.sessions[-1]
        fake.delay = 1.0
        pending = asyncio.create_task(remote.set_profile(SPEC))
        await until(lambda: fake.running == 1)
        started = time.monotonic()
        mosquitto.stop()
        assert await pending in (Outcome.OFFLINE, Outcome.TIMEOUT)
        assert time.monotonic() - started < 3.0
        await until(lambda: not ctl.bus.conn.up.is_set() and not gw.bridge.conn.up.is_set())
        assert await remote.set_profile(SPEC) is Outcome.OFFLINE  # at once while the broker is away
        # Meanwhile the station charges; only its latest state waits to be published.
        t, coalesced = time.time(), gw.bridge.counts["coalesced"]
        booted = sum(isinstance(e, StationBooted) for e in ctl.events)
        fake.boot()  # a reboot on the same connection, with the same boot info: no state diff shows it
        gw.state.booted("CP1", BootInfo("Vendor", "Model", "SN1", "1.0"), t)
        gw.state.transaction_started("CP1", Transaction("77", 1, "TAG", t))
        for i in range(50):
            gw.state.sampled("CP1", 1, PhaseSample(t + i, (16.0, 16.0, 16.0)))
        assert gw.bridge.counts["coalesced"] - coalesced == 52
        mosquitto.start()  # same port, nothing retained: the gateway publishes every station again
        await until(lambda: ctl.state.station("CP1") == gw.state.station("CP1"), 10,
                    "the mirror caught up after the broker came back")
        assert any(type(e).__name__ == "TransactionStarted" for e in ctl.events)
        # The reboot reaches the delivery as the real link would signal it: boots first, then StationBooted.
        assert remote.boots == 2 and sum(isinstance(e, StationBooted) for e in ctl.events) == booted + 1
        fake.delay = 0.0
        await until(lambda: ctl.bus.conn.up.is_set())
        assert await remote.set_profile(SPEC) is Outcome.ACCEPTED
        # mosquitto published the gateway's Will as it shut down; the controller lost the broker within the
        # grace, so the station's session went on untouched.
        assert not remote.closed and ctl.sessions == [remote]
        assert not any(isinstance(e, StationDisconnected) for e in ctl.events)


async def test_a_gateway_that_died_while_the_broker_was_down_is_counted_gone(mosquitto):
    """A broker without persistence comes back with nothing retained: no Will tells of a gateway that died
    meanwhile. The controller waits ``confirm_window`` for each gateway's hello, then counts it gone."""
    gw, ctl = gateway(mosquitto.port), controller(mosquitto.port, confirm_window=1.0)
    alive = gateway(mosquitto.port, "gw-2")
    async with ctl.bus, alive.bridge:
        async with gw.bridge:
            _session(gw, "CP1", time.time())
            _session(alive, "CP2", time.time())
            await until(lambda: len(ctl.sessions) == 2)
            mosquitto.stop()
            await until(lambda: not gw.bridge.conn.up.is_set())
        mosquitto.start()  # gw-1 is gone for good; gw-2 comes back
        await until(lambda: not ctl.state.station("CP1").connected, 5, "gw-1 counted gone")
        await asyncio.sleep(1.2)
        assert ctl.state.station("CP2").connected and not ctl.bus.links["CP2"].closed and "CP1" not in ctl.bus.links


async def test_a_gateway_that_vanishes_takes_its_stations_with_it_by_its_last_will(mosquitto):
    # The gateway is slower to reconnect than the controller's grace for an offline record.
    gw, ctl = gateway(mosquitto.port, backoff=Backoff(initial=1.5, maximum=1.5, jitter=0)), controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        for n in range(2):
            _session(gw, f"CP{n}", time.time())
        await until(lambda: len(ctl.sessions) == 2 and all(s.ready.is_set() for s in ctl.sessions))
        first = list(ctl.sessions)
        # The gateway's TCP connection dies without a DISCONNECT: the broker publishes its Will.
        gw.bridge.conn.client._client.socket().shutdown(socket.SHUT_RDWR)
        await until(lambda: not any(ctl.state.station(s).connected for s in ("CP0", "CP1")), 5,
                    "the Last Will marked the stations disconnected")
        assert sum(isinstance(e, StationDisconnected) for e in ctl.events) == 2
        assert all(link.closed for link in first)
        assert await first[0].set_profile(SPEC) is Outcome.OFFLINE
        # The gateway reconnects by itself: its stations' sessions start again on the controller.
        await until(lambda: len(ctl.sessions) == 4 and all(ctl.state.station(s).connected for s in ("CP0", "CP1")),
                    5, "the stations came back with the gateway")
        assert sum(isinstance(e, StationConnected) for e in ctl.events) == 4
        assert await ctl.sessions[-1].set_profile(SPEC) is Outcome.ACCEPTED


async def test_a_clean_stop_says_offline_and_the_controller_marks_its_stations(mosquitto):
    gw, ctl = gateway(mosquitto.port), controller(mosquitto.port)
    async with ctl.bus:
        async with gw.bridge:
            _session(gw, "CP1", time.time())
            await until(lambda: ctl.sessions)
        await until(lambda: not ctl.state.station("CP1").connected, 5, "the goodbye record marked it disconnected")


async def test_the_old_gateways_late_disconnect_never_overwrites_the_new_gateways_state(mosquitto):
    """The station reconnected to gw-2 while gw-1 had not yet noticed its old socket was dead."""
    gw1, gw2, ctl = gateway(mosquitto.port, "gw-1"), gateway(mosquitto.port, "gw-2"), controller(mosquitto.port)
    stale: list[str] = []
    gw1.bridge.on_superseded = stale.append
    async with ctl.bus, gw1.bridge, gw2.bridge:
        await until(lambda: gw1.bridge.conn.up.is_set() and gw2.bridge.conn.up.is_set())
        t = time.time()
        _session(gw1, "CP1", t)
        await until(lambda: "CP1" in ctl.bus.links)
        _session(gw2, "CP1", t + 5)
        await until(lambda: stale == ["CP1"], what="gw-1 heard that gw-2 holds CP1 now")
        gw1.state.sampled("CP1", 1, PhaseSample(t + 6, (1.0, 1.0, 1.0)))  # the stale socket's last words
        gw1.state.disconnected("CP1", t + 40)
        assert gw1.bridge.counts["superseded"] == 2
        await until(lambda: ctl.bus.links["CP1"].node == "gw-2")
        assert await ctl.bus.links["CP1"].set_profile(SPEC) is Outcome.ACCEPTED
        late = controller(mosquitto.port, "ctl-late")
        async with late.bus:
            await until(lambda: "CP1" in late.bus.links, what="the retained state is still gw-2's")
            assert late.state.station("CP1") == gw2.state.station("CP1") and late.bus.links["CP1"].node == "gw-2"
        assert ctl.state.station("CP1").connected


async def test_what_changes_without_an_event_travels_with_the_periodic_refresh(mosquitto):
    gw, ctl = gateway(mosquitto.port, refresh_interval=0.3), controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        t = time.time()
        _session(gw, "CP1", t)
        _session(gw, "CP2", t)
        gw.state.seen("CP1", t + 60)  # a heartbeat: no event
        gw.state.maintenance("CP2", "log", MaintenanceStatus("Uploaded", t + 61, 3))
        await until(lambda: ctl.state.station("CP1") == gw.state.station("CP1")
                    and ctl.state.station("CP2") == gw.state.station("CP2"), 3)
        assert ctl.bus.mirror.counts["resync"] == 0 and len(ctl.sessions) == 2  # nothing restarted
