"""The gateway against real pymodbus servers on 127.0.0.1 serving each shipped register map."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import Callable

import pytest

from meter_gateway.config import MeterConfig
from meter_gateway.gateway import MeterGateway
from meter_gateway.modbus import poll_meter
from meter_gateway.reading import MeterReading, MeterState
from meter_gateway.registers import RegisterMapError, StatusFlag, load_register_map

from .modbus_server import MeterServer

SERIAL = "AG1234567G"
LIVE = {
    "current_l1": -12.5, "current_l2": 31.25, "current_l3": 0.75,
    "voltage_l1": 230.1, "voltage_l2": 229.4, "voltage_l3": 231.0,
    "power_l1": -2875.0, "power_l2": 7168.0, "power_l3": 173.0, "power_total": 4466.0,
}


def meter(port: int, **kw) -> MeterConfig:
    base = {"serial": SERIAL, "poll_interval": 0.05, "timeout": 0.3, "stale_after": 0.5}
    return MeterConfig(pin="12345678", organisation="org", port=port, **{**base, **kw})


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Sink:
    def __init__(self) -> None:
        self.readings: list[MeterReading] = []
        self.states: list[MeterState] = []

    def reading(self, r: MeterReading) -> None:
        self.readings.append(r)

    def state(self, serial: str, s: MeterState) -> None:
        assert serial == SERIAL
        self.states.append(s)


@pytest.mark.parametrize("profile", ["sdm630", "ampguard", "em24", "abb_b23"])
async def test_every_shipped_map_decodes_to_the_right_values(profile):
    regmap = load_register_map(profile)
    async with MeterServer(regmap, LIVE) as server:
        sink = Sink()
        async with MeterGateway([meter(server.port, profile=profile)], None, sink.reading, sink.state) as gw:
            await wait_until(lambda: len(sink.readings) >= 2)
            assert gw.state(SERIAL).status == "online"
        r = sink.readings[-1]
        assert r.serial == SERIAL
        assert r.current == pytest.approx((-12.5, 31.25, 0.75), abs=0.01)
        assert r.voltage == pytest.approx((230.1, 229.4, 231.0), abs=0.05)
        assert r.power == pytest.approx(4466.0, abs=0.01)
        assert r.flags == frozenset()
        assert sink.states[-1] == MeterState("offline", "meter gateway stopped", sink.states[-1].since)
        assert gw.stats(SERIAL)["accepted"] == len(sink.readings)


async def test_several_meters_at_once_and_live_values():
    sdm, ag = load_register_map("sdm630"), load_register_map("ampguard")
    async with MeterServer(sdm, LIVE) as s1, MeterServer(ag, {"current_l1": 5.0}) as s2:
        got: dict[str, list[MeterReading]] = {}
        meters = [meter(s1.port, profile="sdm630"),
                  meter(s2.port, profile="ampguard", serial="AG7654321G", phases=[1])]
        async with MeterGateway(meters, None, lambda r: got.setdefault(r.serial, []).append(r), lambda s, st: None):
            await wait_until(lambda: len(got.get(SERIAL, [])) >= 1 and len(got.get("AG7654321G", [])) >= 1)
            s2.set({"current_l1": 42.0})
            await wait_until(lambda: got["AG7654321G"][-1].current[0] == 42.0)
        assert got["AG7654321G"][-1].current == (42.0, None, None)
        assert got[SERIAL][-1].current[1] == pytest.approx(31.25)


async def test_bad_register_values_are_refused_counted_and_the_meter_goes_stale():
    regmap = load_register_map("sdm630")
    async with MeterServer(regmap, LIVE) as server:
        sink = Sink()
        async with MeterGateway([meter(server.port, profile="sdm630")], None, sink.reading, sink.state) as gw:
            await wait_until(lambda: gw.state(SERIAL).status == "online")
            hi, lo = struct.unpack(">HH", struct.pack(">f", math.nan))
            server.set_words({("input", 6): hi, ("input", 7): lo})  # current L1 = NaN
            await wait_until(lambda: gw.state(SERIAL).status == "stale")
            assert "not_finite" in gw.state(SERIAL).reason
            assert gw.stats(SERIAL)["not_finite"] >= 3
            server.set({**LIVE, "current_l2": 250.0})  # beyond the home variant's 100 A
            await wait_until(lambda: gw.stats(SERIAL).get("current_out_of_range", 0) >= 2)
            server.set({**LIVE, "voltage_l3": 400.0})
            await wait_until(lambda: gw.stats(SERIAL).get("voltage_out_of_range", 0) >= 2)
            accepted = gw.stats(SERIAL)["accepted"]
            server.set({**LIVE, "current_l1": 100.0, "power_l1": 23000.0})
            await wait_until(lambda: gw.state(SERIAL).status == "online")
            assert sink.readings[-1].saturated_phases == (1,)
            assert gw.stats(SERIAL)["saturated"] >= 1 and gw.stats(SERIAL)["accepted"] > accepted


async def test_ampguard_device_fault_is_refused():
    regmap = load_register_map("ampguard")
    async with MeterServer(regmap, {**LIVE, "status": float(StatusFlag.DEVICE_FAULT)}) as server:
        sink = Sink()
        async with MeterGateway([meter(server.port, profile="ampguard")], None, sink.reading, sink.state) as gw:
            await wait_until(lambda: gw.stats(SERIAL).get("device_fault", 0) >= 2)
            assert sink.readings == []


async def test_reconnects_after_the_server_restarts():
    regmap = load_register_map("ampguard")
    async with MeterServer(regmap, LIVE) as server:
        sink = Sink()
        async with MeterGateway([meter(server.port, profile="ampguard")], None, sink.reading, sink.state) as gw:
            await wait_until(lambda: gw.state(SERIAL).status == "online")
            await server.stop()
            await wait_until(lambda: gw.state(SERIAL).status == "offline")
            assert "cannot connect" in gw.state(SERIAL).reason or "Connection" in gw.state(SERIAL).reason
            before = len(sink.readings)
            await server.start()  # same port
            await wait_until(lambda: gw.state(SERIAL).status == "online", timeout=8)
            await wait_until(lambda: len(sink.readings) > before)
        stats = gw.stats(SERIAL)
        assert stats["connect_failed"] + stats.get("read_error", 0) >= 1
        assert [s.status for s in sink.states] == ["offline", "online", "offline", "online", "offline"]


async def test_a_meter_that_never_answers_is_reported_and_a_wrong_profile_is_counted():
    regmap = load_register_map("sdm630")
    async with MeterServer(regmap, LIVE) as server:
        sink = Sink()
        # abb_b23 reads holding registers 0x5B00.., which this sdm630 server does not have.
        async with MeterGateway([meter(server.port, profile="abb_b23")], None, sink.reading, sink.state) as gw:
            await wait_until(lambda: gw.state(SERIAL).status == "stale")
            assert "modbus_exception" in gw.state(SERIAL).reason
            assert gw.stats(SERIAL)["modbus_exception"] >= 2


class AnswersAsCancelled:
    """A Modbus client whose read completes as the poll is cancelled: pymodbus awaits its answer through
    ``asyncio.wait_for``, which on Python 3.11 then returns the answer and drops the cancellation (gh-86296)."""

    class Answer:
        def __init__(self, count: int) -> None:
            self.registers = [0] * count

        def isError(self) -> bool:  # noqa: N802 (pymodbus' name)
            return False

    def __init__(self) -> None:
        self.cancelled = False

    async def connect(self) -> bool:
        return True

    def close(self) -> None:
        pass

    async def read_holding_registers(self, address: int, count: int, device_id: int) -> Answer:
        if not self.cancelled:  # the first read waits for the cancellation; the meter answers every later one
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled = True
        return self.Answer(count)

    read_input_registers = read_holding_registers


async def test_a_poll_whose_read_drops_the_cancellation_still_stops(monkeypatch):
    """Seen in CI: the gateway's close waited forever for a poll loop that polled on."""
    client = AnswersAsCancelled()
    monkeypatch.setattr("meter_gateway.modbus.make_client", lambda m: client)
    gw = MeterGateway([meter(502, profile="sdm630")], None, lambda r: None, lambda s, st: None)
    gw.start()
    await asyncio.sleep(0.1)  # the poll waits in its first read
    async with asyncio.timeout(1):  # cancel_and_wait's own second try would come after 5 s
        await gw.aclose()
    assert client.cancelled and gw.state(SERIAL).status == "offline"


async def test_a_meter_away_for_long_is_tried_again_at_least_every_5_s(monkeypatch):
    """While the meter is away its group runs on the offline maximum; after it is back, the wait for the next try
    is time the fuse is not used (it was up to 30 s)."""

    class Unreachable:
        async def connect(self) -> bool:
            return False

        def close(self) -> None:
            pass

    class Enough(BaseException):
        pass

    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)
        if len(delays) == 12:
            raise Enough

    monkeypatch.setattr("meter_gateway.modbus.make_client", lambda m: Unreachable())
    monkeypatch.setattr("meter_gateway.modbus.asyncio.sleep", sleep)
    errors: list[str] = []
    with pytest.raises(Enough):
        await poll_meter(meter(502, poll_interval=1.0), load_register_map("sdm630"), lambda v: None,
                         lambda kind, detail: errors.append(kind), lambda: None)
    assert errors == ["connect_failed"] * 12
    assert delays[0] <= 0.5 and max(delays) <= 5.0 and min(delays[-4:]) >= 4.0, delays


def test_unknown_profile_is_refused_before_anything_starts():
    with pytest.raises(RegisterMapError, match="available"):
        MeterGateway([meter(502, profile="nosuchmeter")], None, lambda r: None, lambda s, st: None)
    with pytest.raises(ValueError, match="mqtt"):
        MeterGateway([meter(502, source="mqtt")], None, lambda r: None, lambda s, st: None)
