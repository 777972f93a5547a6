"""The Amp Guard simulator read back with a real pymodbus client and a real mosquitto."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from meter_gateway.registers import StatusFlag, available_register_maps, load_register_map
from simulators.clock import ManualClock, SimClock
from simulators.meter import AmpGuardSim, MeterFaults

SERIAL = "AG1234567G"


async def read_all(port: int, profile: str, timeout: float = 1.0) -> dict[str, float]:
    rmap = load_register_map(profile)
    words: dict[tuple[str, int], int] = {}
    async with AsyncModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=0) as client:
        for block in rmap.read_blocks():
            read = client.read_input_registers if block.function == "input" else client.read_holding_registers
            rr = await read(block.address, count=block.count, device_id=1)
            assert not rr.isError(), rr
            words.update({(block.function, block.address + i): w for i, w in enumerate(rr.registers)})
    return rmap.decode(words)


@pytest.mark.parametrize("profile", available_register_maps())
async def test_every_shipped_map_reads_back(profile):
    currents = [(12.5, -3.25, 40.0)]
    meter = AmpGuardSim(SERIAL, lambda: currents[0], ManualClock(), voltages=lambda: (231.0, 229.5, 230.0))
    port = await meter.serve_modbus(profile=profile)
    try:
        values = await read_all(port, profile)
        rmap = load_register_map(profile)
        expected = meter.sample().quantities()
        for spec in rmap.registers:
            if spec.quantity == "status":
                continue
            resolution = spec.scale if spec.type != "float32" else 1e-3  # integer registers round
            assert values[spec.quantity] == pytest.approx(expected[spec.quantity], abs=resolution * 0.51), spec.quantity
        currents[0] = (1.0, 2.0, 3.0)  # live values: the next read sees the change
        assert (await read_all(port, profile))["current_l3"] == pytest.approx(3.0, abs=0.01)
    finally:
        await meter.stop()


@pytest.mark.parametrize("variant,amps,expected", [("home", 150.0, 100.0), ("public", 150.0, 150.0),
                                                    ("public", -450.0, -400.0)])
def test_clamps_saturate_at_the_variant_range(variant, amps, expected):
    meter = AmpGuardSim(SERIAL, lambda: (amps, 1.0, 1.0), ManualClock(), variant=variant)
    s = meter.sample()
    assert s.current[0] == expected
    assert bool(s.status & StatusFlag.OVERRANGE) == (abs(amps) >= meter.range_a)


def test_faults_reverse_swap_and_open():
    meter = AmpGuardSim(SERIAL, lambda: (10.0, 20.0, 30.0), ManualClock())
    meter.faults = MeterFaults(reversed_clamps=frozenset({2}))
    assert meter.sample().current == (10.0, -20.0, 30.0)
    assert meter.sample().power[1] == -20.0 * 230
    meter.faults = MeterFaults(swapped=(1, 3))
    assert meter.sample().current == (30.0, 20.0, 10.0)
    meter.faults = MeterFaults(open_clamps=frozenset({3}))
    s = meter.sample()
    assert s.current[2] == 0.0 and s.status & StatusFlag.CLAMP_FAULT_L3


async def test_offline_meter_stops_answering_and_comes_back():
    meter = AmpGuardSim(SERIAL, lambda: (5.0, 5.0, 5.0), ManualClock())
    port = await meter.serve_modbus(profile="ampguard")
    try:
        await meter.go_offline()
        with pytest.raises((ModbusException, AssertionError)):
            await read_all(port, "ampguard", timeout=0.3)
        await meter.go_online()
        assert (await read_all(port, "ampguard"))["current_l1"] == pytest.approx(5.0)
    finally:
        await meter.stop()


async def test_mqtt_publishes_json_and_pauses_offline(mosquitto):
    meter = AmpGuardSim(SERIAL, lambda: (7.5, 8.0, -2.0), SimClock())
    topic = f"ampguard/{SERIAL}/measurement"
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe(topic)
        meter.start_mqtt("127.0.0.1", mosquitto.port, interval=0.1)
        try:
            async with asyncio.timeout(3):
                msg = await anext(aiter(client.messages))
            body = json.loads(msg.payload)
            assert body["serial"] == SERIAL and body["current"] == [7.5, 8.0, -2.0]
            assert body["voltage"] == [230.0, 230.0, 230.0] and body["power"] == pytest.approx(13.5 * 230)
            assert body["timestamp"].endswith("Z")
            meter.go_offline()
            await asyncio.sleep(0.15)
            before = meter.published
            await asyncio.sleep(0.3)
            assert meter.published == before
        finally:
            await meter.stop()


async def test_a_modbus_port_in_use_is_an_os_error_not_pymodbus_wording():
    """``simulate site`` names the meter, the address and the likely cause; pymodbus raises a bare
    RuntimeError("Could not start listen") that reached the user as a traceback."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    meter = AmpGuardSim(SERIAL, lambda: (1.0, 1.0, 1.0), ManualClock())
    try:
        with pytest.raises(OSError, match="could not listen"):
            await meter.serve_modbus("127.0.0.1", taken.getsockname()[1])
    finally:
        await meter.stop()
        taken.close()
