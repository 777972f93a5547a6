"""MQTT meters and standalone mode against a real mosquitto on a free local port."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import aiomqtt
import pytest

from meter_gateway.config import MeterConfig, MqttConfig
from meter_gateway.gateway import MeterGateway
from meter_gateway.publisher import ReadingPublisher
from meter_gateway.reading import MeterReading, MeterState
from meter_gateway.registers import load_register_map
from meter_gateway.subscriber import ReadingSubscriber

from .modbus_server import MeterServer
from .test_modbus_gateway import LIVE, SERIAL, Sink, wait_until

TOPIC = f"ampguard/{SERIAL}/measurement"


def mqtt_meter(**kw) -> MeterConfig:
    return MeterConfig(serial=SERIAL, pin="12345678", organisation="org", source="mqtt", stale_after=0.6, **kw)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def measurement(t: float | None = None, **overrides) -> bytes:
    body = {"serial": SERIAL, "timestamp": iso(time.time() if t is None else t),
            "current": [10.0, 11.0, -2.5], "voltage": [230.0, 231.0, 232.0], "power": 4200}
    body.update(overrides)
    return json.dumps(body).encode()


async def publish(port: int, *messages: tuple[str, bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, timeout=5) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_mqtt_meter_readings_and_every_bad_input_counted(mosquitto):
    cfg = MqttConfig(port=mosquitto.port, client_id="t1")
    sink = Sink()
    t = time.time() - 2
    # Retained, so the broker hands it over exactly once, as soon as the gateway has subscribed.
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, timeout=5) as client:
        await client.publish(TOPIC, measurement(t), qos=1, retain=True)
    async with MeterGateway([mqtt_meter()], cfg, sink.reading, sink.state) as gw:
        await wait_until(lambda: len(sink.readings) == 1)
        r = sink.readings[-1]
        assert r.current == (10.0, 11.0, -2.5) and r.voltage == (230.0, 231.0, 232.0) and r.power == 4200.0
        assert r.taken_at == pytest.approx(t, abs=0.001)
        assert gw.state(SERIAL).status == "online"

        last, accepted = r.taken_at, 1
        bad = [
            b"garbage", json.dumps({"serial": SERIAL, "current": [1, 2, 3]}).encode(),
            measurement(last + 0.1, serial="AG0000000G"), measurement(last + 0.1, current=[float("nan"), 1, 1]),
            measurement(last + 0.1, current=[120.0, 1, 1]), measurement(last + 0.1, voltage=[230, 500, 230]),
            measurement(time.time() + 60), measurement(last - 1), measurement(last),
        ]
        await publish(mosquitto.port, *[(TOPIC, b) for b in bad])
        expected = {"malformed_json": 1, "missing_field": 1, "wrong_serial": 1, "not_finite": 1,
                    "current_out_of_range": 1, "voltage_out_of_range": 1, "future_timestamp": 1,
                    "timestamp_backwards": 1, "duplicate": 1, "accepted": accepted}
        await wait_until(lambda: gw.stats(SERIAL) == expected)
        assert len(sink.readings) == accepted

        # Nothing valid for stale_after: the timer reports it although nothing arrives.
        await wait_until(lambda: gw.state(SERIAL).status == "stale", timeout=3)
        assert "duplicate" in gw.state(SERIAL).reason


async def test_mqtt_meter_resubscribes_after_the_broker_restarts(mosquitto):
    cfg = MqttConfig(port=mosquitto.port, client_id="t2")
    sink = Sink()
    async with MeterGateway([mqtt_meter()], cfg, sink.reading, sink.state) as gw:
        await _until_delivered(mosquitto.port, sink, 1)
        mosquitto.stop()
        await wait_until(lambda: gw.state(SERIAL).status == "offline", timeout=5)
        assert "MQTT broker" in gw.state(SERIAL).reason
        mosquitto.start()  # same port, no persistence: the gateway must subscribe again
        await _until_delivered(mosquitto.port, sink, len(sink.readings) + 1, attempts=100)
        assert gw.state(SERIAL).status == "online"
        assert gw.stats(SERIAL)["connect_failed"] >= 1


async def _until_delivered(port: int, sink: Sink, count: int, attempts: int = 50) -> None:
    """Publishes fresh measurements until the gateway has delivered ``count`` readings (it may still be subscribing)."""
    for _ in range(attempts):
        await publish(port, (TOPIC, measurement()))
        try:
            await wait_until(lambda: len(sink.readings) >= count, timeout=0.2)
            return
        except AssertionError:
            continue
    raise AssertionError("the gateway never delivered the reading")


async def test_standalone_publisher_to_subscriber_round_trip(mosquitto):
    """Modbus meter -> gateway -> publisher -> mosquitto -> ReadingSubscriber (what csms serve uses)."""
    cfg = MqttConfig(port=mosquitto.port, client_id="t3")
    regmap = load_register_map("sdm630")
    async with MeterServer(regmap, LIVE) as server:
        m = MeterConfig(serial=SERIAL, pin="12345678", organisation="org", profile="sdm630", port=server.port,
                        poll_interval=0.05, timeout=0.3, stale_after=0.5)
        got = Sink()
        async with ReadingPublisher(cfg) as pub:
            async with MeterGateway([m], cfg, pub.reading, pub.state) as gw:
                async with ReadingSubscriber(cfg, [SERIAL], got.reading, got.state, stale_after=0.5) as sub:
                    await wait_until(lambda: len(got.readings) >= 3)
                    assert got.readings[-1].current == pytest.approx((-12.5, 31.25, 0.75))
                    assert sub.state(SERIAL).status == "online"
                    assert any(s.status == "online" for s in got.states)
            assert await pub.flush(3)

        # A subscriber that connects later learns the last (retained) state at once.
        late = Sink()
        async with ReadingSubscriber(cfg, [SERIAL], late.reading, late.state, stale_after=5):
            await wait_until(lambda: any(s.reason == "meter gateway stopped" for s in late.states))
        assert gw.stats(SERIAL)["accepted"] >= 3 and pub.dropped == 0


async def test_subscriber_reports_stale_when_the_gateway_falls_silent_and_refuses_bad_messages(mosquitto):
    cfg = MqttConfig(port=mosquitto.port, client_id="t4")
    got = Sink()
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, timeout=5) as client:
        await client.publish(f"csms/meters/{SERIAL}/state", MeterState("online", "retained", 1.0).to_json(),
                             qos=1, retain=True)
    async with ReadingSubscriber(cfg, [SERIAL], got.reading, got.state, stale_after=0.4) as sub:
        await wait_until(lambda: any(s.reason == "retained" for s in got.states))  # now subscribed
        reading = MeterReading(SERIAL, time.time(), time.time(), (1.0, 2.0, 3.0))
        await publish(mosquitto.port, (f"csms/meters/{SERIAL}/reading", reading.to_json()))
        await wait_until(lambda: bool(got.readings))
        assert got.readings == [reading]
        assert sub.state(SERIAL).status == "online"
        await publish(
            mosquitto.port,
            (f"csms/meters/{SERIAL}/reading", b"{broken"),
            (f"csms/meters/{SERIAL}/reading", MeterReading("AG0000000G", 1, 1, (1, 1, 1)).to_json()),
            (f"csms/meters/{SERIAL}/state", b'{"status": "sleepy"}'),
            (f"csms/meters/{SERIAL}/state", MeterState("stale", "from the gateway", 5.0).to_json()),
        )
        await wait_until(lambda: sub.refused == {"bad_reading": 1, "wrong_serial": 1, "bad_state": 1})
        await wait_until(lambda: any(s.reason == "from the gateway" for s in got.states))
        await wait_until(lambda: got.states[-1].status == "stale" and "no valid reading" in got.states[-1].reason)
    assert len(got.readings) == 1
