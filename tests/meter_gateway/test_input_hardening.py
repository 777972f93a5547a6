"""Hostile meter payloads are refused and counted, and two sources for one meter make it suspect (issue 12)."""

from __future__ import annotations

import logging

import pytest

from meter_gateway.config import MqttConfig
from meter_gateway.gateway import MeterGateway
from meter_gateway.publisher import reading_topic
from meter_gateway.reading import MeterReading
from meter_gateway.subscriber import ReadingSubscriber
from meter_gateway.validate import REJECTIONS, SUSPECT_AFTER, ReadingJudge, Rejected
from tests.meter_gateway.test_validate import NOW, SERIAL, meter, payload

DEEP = b'{"serial": "' + SERIAL.encode() + b'", "timestamp": "2026-11-24T10:00:00Z", "current": ' \
    + b"[" * 2000 + b"]" * 2000 + b"}"
HUGE = payload(current=[10 ** 400, 0.0, 0.0])
HUGE_FLOAT = payload().replace(b"10.5", b"1" + b"0" * 400 + b".5")


@pytest.mark.parametrize("raw", [DEEP, HUGE, HUGE_FLOAT], ids=["deep", "huge-int", "huge-float"])
def test_hostile_payload_is_refused_not_raised(raw):
    with pytest.raises(Rejected) as info:
        ReadingJudge.for_meter(meter()).from_payload(raw, NOW)
    assert info.value.kind in REJECTIONS


@pytest.mark.parametrize("raw", [
    b'{"serial": "X", "taken_at": 1, "received_at": 1, "current": ' + b"[" * 2000 + b"]" * 2000 + b"}",
    b'{"serial": "X", "taken_at": 1, "received_at": 1, "current": [%s, 0, 0]}' % str(10 ** 400).encode(),
], ids=["deep", "huge"])
def test_hostile_gateway_reading_is_a_value_error(raw):
    with pytest.raises(ValueError):
        MeterReading.from_json(raw)


def sink():
    got: list = []
    return got, lambda *a: got.append(a)


def test_gateway_counts_refusals_per_meter_and_reason():
    readings, on_reading = sink()
    gw = MeterGateway([meter(source="mqtt", topic="m/x")], MqttConfig(), on_reading, lambda *a: None,
                      clock=lambda: NOW)
    for raw in (DEEP, HUGE, b"{nope", payload()):
        gw._judge(SERIAL, lambda at, raw=raw: gw._judges[SERIAL].from_payload(raw, at))
    assert len(readings) == 1
    assert gw.refusals(SERIAL) == {"too_complex": 2, "malformed_json": 1}


def test_subscriber_counts_refusals_per_meter_and_reason():
    readings, on_reading = sink()
    sub = ReadingSubscriber(MqttConfig(), [SERIAL, "OTHER"], on_reading, lambda *a: None)
    topic = reading_topic(MqttConfig().publish_prefix, SERIAL)
    good = MeterReading(SERIAL, NOW, NOW, (1.0, 2.0, 3.0)).to_json()
    for raw in (b'{"serial": "X", "current": ' + b"[" * 2000 + b"]" * 2000 + b"}", b"[1]", good,
                MeterReading("OTHER", NOW, NOW, (1.0, 2.0, 3.0)).to_json()):
        sub._message(topic, raw)
    assert len(readings) == 1
    assert sub.refusals(SERIAL) == {"bad_reading": 2, "wrong_serial": 1}
    assert sub.refusals("OTHER") == {}


def iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def test_a_second_publisher_ahead_of_the_meter_makes_it_suspect_not_the_winner(caplog):
    """The genuine meter reads each second; a forger publishes 4 s ahead. The first forged reading wins
    (nobody can tell yet), but the genuine readings then arrive "backwards" again and again: the meter is
    suspect, every reading is refused, the watch reports it stale at once (the group uses its offline
    maximum), and a warning says why."""
    readings, on_reading = sink()
    states, on_state = sink()
    now = [NOW]
    gw = MeterGateway([meter(source="mqtt", topic="m/x")], MqttConfig(), on_reading, on_state,
                      clock=lambda: now[0])
    forged_current = [50.0, 50.0, 50.0]

    def publish(t: float, current: list[float]) -> None:
        raw = payload(timestamp=iso(t), current=current)
        gw._judge(SERIAL, lambda at: gw._judges[SERIAL].from_payload(raw, at))

    with caplog.at_level(logging.WARNING, logger="meter_gateway"):
        for second in range(1, 11):
            now[0] = NOW + second
            publish(now[0], [10.0, 10.0, 10.0])
            if second >= 3:
                publish(now[0] + 4, forged_current)
    counts = gw.stats(SERIAL)
    assert counts["conflicting_sources"] >= 5
    assert gw.state(SERIAL).status == "stale" and "conflicting" in gw.state(SERIAL).reason
    accepted_forged = [r for (r,) in readings if r.current[0] == 50.0]
    assert len(accepted_forged) <= SUSPECT_AFTER  # the forger never wins for long
    assert any("conflicting" in r.getMessage() for r in caplog.records)
    # The forger stops: after the hold the genuine meter is trusted again.
    for second in range(11, 11 + 90):
        now[0] = NOW + second
        publish(now[0], [10.0, 10.0, 10.0])
    assert gw.state(SERIAL).status == "online" and readings[-1][0].current[0] == 10.0


def test_one_reading_from_the_past_is_only_refused():
    judge = ReadingJudge.for_meter(meter())
    judge.from_payload(payload(timestamp=iso(NOW)), NOW)
    with pytest.raises(Rejected) as info:
        judge.from_payload(payload(timestamp=iso(NOW - 5)), NOW + 1)
    assert info.value.kind == "timestamp_backwards"
    assert judge.from_payload(payload(timestamp=iso(NOW + 1)), NOW + 1).current[0] == 10.5
