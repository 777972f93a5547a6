"""The operator's station commands from a controller, over a private mosquitto: run by the gateway holding the
station (its own commander, ``by`` kept), answered with its result or the same CommandError class, and every way
there is no answer named (no gateway holds it, the broker away, a gateway that does not answer, a full queue, a
deadline passed). A gateway's commands for a station another gateway holds, relayed by one controller. And the
controller's OperatorCommands logs only what the gateway did not."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from csms.bus.operator_executor import QUEUE_LIMIT
from csms.domain.state import BootInfo
from csms.ocpp.operator import OperatorCommands
from csms.operations.results import (
    BadArguments, CommandError, CommandResult, StationBusy, StationError, StationOffline, StationTimeout,
    UnknownStation,
)

from .harness import controller, gateway, until


class Commander:
    """A gateway's operator commands: records each call; ``answer(command, body)`` returns a result or raises;
    ``hold`` (when set) makes every call wait for it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict, str]] = []
        self.hold: asyncio.Event | None = None
        self.running = 0
        self.most_running = 0

    def answer(self, station_id: str, command: str, body: Any) -> CommandResult:
        if command == "change-configuration" and body.get("key") == "AuthorizationKey":
            raise BadArguments("key", "the station's password is changed in [[chargers]]")
        if command == "data-transfer":
            raise StationError("NotImplemented", "no vendor extensions here")
        return CommandResult(station_id, command, "Accepted", {"echo": body})

    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        self.calls.append((station_id, command, body, by))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.hold is not None:
                await self.hold.wait()
            return self.answer(station_id, command, body)
        finally:
            self.running -= 1


def _gateway(port: int, node: str = "gw-1"):
    gw = gateway(port, node)
    commander = Commander()
    gw.bridge.operator.commander = commander
    return gw, commander


def _session(gw, sid: str) -> None:
    link = gw.connect(sid, time.time())
    link.boot()
    gw.state.booted(sid, BootInfo("Vendor", "Model"), time.time())


async def test_a_command_runs_on_the_holding_gateway_and_its_answer_or_error_comes_back(mosquitto):
    (gw1, cmd1), (gw2, cmd2) = _gateway(mosquitto.port, "gw-1"), _gateway(mosquitto.port, "gw-2")
    ctl = controller(mosquitto.port)
    async with ctl.bus, gw1.bridge, gw2.bridge:
        _session(gw1, "CP1")
        _session(gw2, "CP2")
        await until(lambda: ctl.bus.mirror.holder("CP1") == "gw-1" and ctl.bus.mirror.holder("CP2") == "gw-2")
        remote = ctl.bus.operator
        result = await remote.execute("CP2", "trigger-message", {"message": "MeterValues"}, "api 10.0.0.5")
        assert result == CommandResult("CP2", "trigger-message", "Accepted", {"echo": {"message": "MeterValues"}})
        assert cmd2.calls == [("CP2", "trigger-message", {"message": "MeterValues"}, "api 10.0.0.5")]
        assert cmd1.calls == []  # only the gateway that holds the station is asked

        with pytest.raises(BadArguments) as bad:
            await remote.execute("CP1", "change-configuration", {"key": "AuthorizationKey", "value": "x"}, "cli")
        assert bad.value.field == "key" and str(bad.value) == "key: the station's password is changed in [[chargers]]"
        assert bad.value.ran_on == "gw-1"  # it logged it
        with pytest.raises(StationError) as err:
            await remote.execute("CP1", "data-transfer", {"vendor_id": "X"}, "cli")
        assert (err.value.code, err.value.description, err.value.ran_on) == ("NotImplemented",
                                                                              "no vendor extensions here", "gw-1")


async def test_no_gateway_holds_the_station(mosquitto):
    gw, commander = _gateway(mosquitto.port)
    ctl = controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        _session(gw, "CP1")
        await until(lambda: ctl.bus.mirror.holder("CP1") == "gw-1")
        gw.state.disconnected("CP1", time.time())
        await until(lambda: ctl.bus.mirror.holder("CP1") is None)
        for sid in ("CP1", "CP-never-seen"):
            with pytest.raises(StationOffline, match="no gateway currently holds it") as exc:
                await ctl.bus.operator.execute(sid, "reset", {}, "cli")
            assert exc.value.ran_on is None
        assert commander.calls == []


async def test_operator_commands_are_not_fenced_by_a_groups_token(mosquitto):
    """A balancer's command with a group's token raises the mark; an operator's command, from a controller that
    does not lead the group (an older token), still runs: no group leads an operator."""
    gw, commander = _gateway(mosquitto.port)
    old, new = controller(mosquitto.port, "ctl-old", token=5), controller(mosquitto.port, "ctl-new", token=6)
    async with old.bus, new.bus, gw.bridge:
        _session(gw, "CP1")
        await until(lambda: new.sessions and new.sessions[-1].ready.is_set() and old.bus.mirror.holder("CP1"))
        await new.sessions[-1].set_meter_interval(10)
        assert gw.bridge.book.mark("g1") == 6
        assert (await old.bus.operator.execute("CP1", "clear-cache", {}, "cli")).status == "Accepted"
        assert gw.bridge.book.mark("g1") == 6 and gw.bridge.counts["refused_fenced"] == 0


async def test_no_answer_names_the_gateway_and_a_command_late_for_its_turn_is_not_sent(mosquitto):
    gw, commander = _gateway(mosquitto.port)
    ctl = controller(mosquitto.port, call_timeout=0.3, margin=0.2)
    async with ctl.bus, gw.bridge:
        _session(gw, "CP1")
        await until(lambda: ctl.bus.mirror.holder("CP1") == "gw-1")
        commander.hold = asyncio.Event()
        started = time.monotonic()
        first = asyncio.create_task(ctl.bus.operator.execute("CP1", "reset", {}, "cli"))
        await until(lambda: commander.running == 1)
        second = asyncio.create_task(ctl.bus.operator.execute("CP1", "unlock", {"connector": 1}, "cli"))
        with pytest.raises(StationTimeout, match="gateway gw-1 did not answer within 1.1 s"):
            await first
        assert time.monotonic() - started < 2.0
        commander.hold.set()
        # The second waited behind the first past its deadline: refused, never run.
        with pytest.raises(StationTimeout, match="gateway gw-1 did not start the command"):
            await second
        assert [c[1] for c in commander.calls] == ["reset"]
        assert gw.bridge.counts["operator_refused_expired"] == 1


async def test_a_full_queue_is_refused_as_busy(mosquitto):
    gw, commander = _gateway(mosquitto.port)
    ctl = controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        _session(gw, "CP1")
        await until(lambda: ctl.bus.mirror.holder("CP1") == "gw-1")
        commander.hold = asyncio.Event()
        n = QUEUE_LIMIT + 4
        tasks = [asyncio.create_task(ctl.bus.operator.execute("CP1", "clear-cache", {}, f"cli {i}")) for i in range(n)]
        await until(lambda: gw.bridge.counts["operator_refused_busy"] >= n - QUEUE_LIMIT - 1)
        commander.hold.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        busy = [o for o in outcomes if isinstance(o, StationBusy)]
        assert n - QUEUE_LIMIT - 1 <= len(busy) <= n - QUEUE_LIMIT, outcomes
        assert all(isinstance(o, CommandResult) for o in outcomes if o not in busy)
        assert "gateway gw-1" in str(busy[0]) and commander.most_running == 1


async def test_the_broker_away_is_a_timeout_naming_the_gateway(mosquitto):
    gw, commander = _gateway(mosquitto.port)
    ctl = controller(mosquitto.port)
    async with ctl.bus, gw.bridge:
        _session(gw, "CP1")
        await until(lambda: ctl.bus.mirror.holder("CP1") == "gw-1")
        mosquitto.stop()
        await until(lambda: ctl.bus.conn.client is None)
        started = time.monotonic()
        with pytest.raises(StationTimeout, match="the bus to gateway gw-1 is down"):
            await ctl.bus.operator.execute("CP1", "reset", {}, "cli")
        assert time.monotonic() - started < 1.0 and commander.calls == []


# -- a gateway's command for a station another gateway holds: relayed by one controller ----------------------


def _relaying(ctl):
    """A controller whose own operator commands forward to the gateways (as the runtime wires them)."""
    ctl.bus.relay.commander = ctl.bus.operator
    return ctl


async def test_a_gateway_relays_a_command_for_a_station_another_gateway_holds(mosquitto):
    (gw1, cmd1), (gw2, cmd2) = _gateway(mosquitto.port, "gw-1"), _gateway(mosquitto.port, "gw-2")
    ctl = _relaying(controller(mosquitto.port))
    async with ctl.bus, gw1.bridge, gw2.bridge:
        _session(gw2, "CP2")
        await until(lambda: ctl.bus.mirror.holder("CP2") == "gw-2")
        result = await gw1.bridge.relay.execute("CP2", "trigger-message", {"message": "MeterValues"}, "api 10.0.0.5")
        assert result == CommandResult("CP2", "trigger-message", "Accepted", {"echo": {"message": "MeterValues"}})
        assert cmd2.calls == [("CP2", "trigger-message", {"message": "MeterValues"}, "api 10.0.0.5")]
        assert cmd1.calls == []

        with pytest.raises(StationError) as err:  # the holder's error, as the same class, logged there
            await gw1.bridge.relay.execute("CP2", "data-transfer", {"vendor_id": "X"}, "cli")
        assert (err.value.code, err.value.ran_on) == ("NotImplemented", "the controller relaying it")
        gw2.state.disconnected("CP2", time.time())
        await until(lambda: ctl.bus.mirror.holder("CP2") is None)
        with pytest.raises(StationOffline, match="no gateway currently holds it") as off:
            await gw1.bridge.relay.execute("CP2", "reset", {}, "cli")
        assert off.value.ran_on is not None  # the relaying controller logged it
        assert len(cmd2.calls) == 2 and ctl.bus.counts["operator_run"] == 3


async def test_of_two_controllers_one_relays_each_command(mosquitto):
    (gw1, _), (gw2, cmd2) = _gateway(mosquitto.port, "gw-1"), _gateway(mosquitto.port, "gw-2")
    a, b = _relaying(controller(mosquitto.port, "ctl-a")), _relaying(controller(mosquitto.port, "ctl-b"))
    async with a.bus, b.bus, gw1.bridge, gw2.bridge:
        _session(gw2, "CP2")
        await until(lambda: a.bus.mirror.holder("CP2") == b.bus.mirror.holder("CP2") == "gw-2")
        for i in range(6):
            await gw1.bridge.relay.execute("CP2", "clear-cache", {}, f"cli {i}")
        assert [c[3] for c in cmd2.calls] == [f"cli {i}" for i in range(6)]  # each ran once
        assert a.bus.counts["operator_run"] + b.bus.counts["operator_run"] == 6


async def test_with_no_controller_the_relay_times_out_saying_so(mosquitto):
    gw1 = gateway(mosquitto.port, "gw-1", call_timeout=0.3, margin=0.1)
    gw2, _ = _gateway(mosquitto.port, "gw-2")
    async with gw1.bridge, gw2.bridge:
        _session(gw2, "CP2")
        await until(lambda: gw1.bridge.conn.client is not None)
        started = time.monotonic()
        with pytest.raises(StationTimeout, match="no controller relayed the command .* within 1.4 s") as exc:
            await gw1.bridge.relay.execute("CP2", "reset", {}, "cli")
        assert time.monotonic() - started < 2.5 and exc.value.ran_on is None  # the gateway logs it


# -- the controller's OperatorCommands: forwards, and logs only what no gateway logged -----------------------


class Events:
    """Storage as OperatorCommands logs to it."""

    def __init__(self) -> None:
        self.logged: list[Any] = []

    def write_nowait(self, op: Any, *args: Any) -> None:
        self.logged.append(op)


class Forward:
    def __init__(self, outcome: CommandResult | CommandError):
        self.outcome = outcome
        self.calls: list[tuple[str, str, Any, str]] = []

    async def execute(self, station_id: str, command: str, body: Any, by: str) -> CommandResult:
        self.calls.append((station_id, command, body, by))
        if isinstance(self.outcome, CommandError):
            raise self.outcome
        return self.outcome


def _controllers_commands(forward: Forward, storage: Events) -> OperatorCommands:
    return OperatorCommands({}, {"CP1": "org"}, storage, time.time, 5.0, forward=forward)  # type: ignore[arg-type]


async def test_the_controller_forwards_and_leaves_the_log_to_the_gateway_that_ran_it() -> None:
    storage = Events()
    ran = StationError("Busy", "later")
    ran.ran_on = "gw-1"
    for outcome in (CommandResult("CP1", "reset", "Accepted"), ran):
        forward = Forward(outcome)
        commands = _controllers_commands(forward, storage)
        try:
            assert await commands.execute("CP1", "reset", {"type": "hard"}, "api 1.2.3.4") == outcome
        except StationError as exc:
            assert exc is ran
        assert forward.calls == [("CP1", "reset", {"type": "hard"}, "api 1.2.3.4")]  # the body as the operator sent it
    assert storage.logged == []


async def test_the_controller_logs_what_it_refused_or_the_bus_ended() -> None:
    storage = Events()
    forward = Forward(StationOffline("no gateway currently holds it"))
    commands = _controllers_commands(forward, storage)
    for station, body, error in (("CP1", {}, StationOffline), ("CP404", {}, UnknownStation),
                                 ("CP1", {"type": "sideways"}, BadArguments)):
        with pytest.raises(error):
            await commands.execute(station, "reset", body, "cli")
    assert len(storage.logged) == 3 and len(forward.calls) == 1  # an unknown station or bad arguments go nowhere


async def test_what_a_gateway_runs_for_the_bus_is_never_forwarded_again() -> None:
    """A command forwarded to a gateway for a station that has just left it is not relayed on (no loop)."""
    storage = Events()
    forward = Forward(CommandResult("CP1", "reset", "Accepted"))
    commands = _controllers_commands(forward, storage)
    with pytest.raises(StationOffline, match="not connected"):
        await commands.here().execute("CP1", "reset", {}, "gateway bus")
    assert forward.calls == [] and len(storage.logged) == 1
