"""MQTT meters over TLS with username/password, against a real mosquitto configured for both."""

from __future__ import annotations

import logging
import subprocess
import tempfile
from pathlib import Path

import aiomqtt

from meter_gateway.config import MqttConfig
from meter_gateway.gateway import MeterGateway
from meter_gateway.mqtt import tls_context
from tests.support.mosquitto import Mosquitto

from .certs import make_ca_and_server_cert
from .test_modbus_gateway import SERIAL, Sink, wait_until
from .test_mqtt_gateway import TOPIC, measurement, mqtt_meter

PASSWORD = "s3cret-meter-pass"


def tls_broker(folder: Path) -> tuple[Mosquitto, Path]:
    """A broker requiring TLS and a password. Started as root, mosquitto reads these files as its own
    unprivileged user, so ``folder`` and the (throwaway) files must be readable by others."""
    folder.chmod(0o755)
    ca, cert, key = make_ca_and_server_cert(folder)
    passwords = folder / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "gateway", PASSWORD], check=True, capture_output=True)
    for f in (ca, cert, key, passwords):
        f.chmod(0o644)
    extra = f"certfile {cert}\nkeyfile {key}\npassword_file {passwords}\n"
    return Mosquitto(extra_config=extra, allow_anonymous=False), ca


async def test_tls_and_password(caplog):
    caplog.set_level(logging.DEBUG)
    with tempfile.TemporaryDirectory(prefix="mqtt-tls-") as folder:
        await _tls_and_password(Path(folder))
    assert "not-the-password" not in caplog.text and PASSWORD not in caplog.text


async def _tls_and_password(folder: Path) -> None:
    broker, ca = tls_broker(folder)
    with broker:
        good = MqttConfig(port=broker.port, tls=True, tls_ca=str(ca), username="gateway", password=PASSWORD, client_id="tls")
        sink = Sink()
        async with MeterGateway([mqtt_meter()], good, sink.reading, sink.state):
            for _ in range(50):
                async with aiomqtt.Client("127.0.0.1", broker.port, username="gateway", password=PASSWORD,
                                          tls_context=tls_context(good), timeout=5) as client:
                    await client.publish(TOPIC, measurement(), qos=1)
                try:
                    await wait_until(lambda: bool(sink.readings), timeout=0.2)
                    break
                except AssertionError:
                    continue
            assert sink.readings and sink.readings[0].current == (10.0, 11.0, -2.5)

        wrong = good.model_copy(update={"password": "not-the-password", "client_id": "tls-wrong"})
        async with MeterGateway([mqtt_meter()], wrong, sink.reading, sink.state) as gw:
            await wait_until(lambda: gw.stats(SERIAL).get("connect_failed", 0) >= 1)
            await wait_until(lambda: gw.state(SERIAL).status == "offline" and "mqtts://gateway@" in gw.state(SERIAL).reason)
