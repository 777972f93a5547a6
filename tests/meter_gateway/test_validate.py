"""Judging samples, the reading/state JSON, and the online/stale/offline watch (no network here)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from meter_gateway.config import MeterConfig
from meter_gateway.reading import MeterReading, MeterState
from meter_gateway.registers import StatusFlag
from meter_gateway.validate import ReadingJudge, Rejected
from meter_gateway.watch import MeterWatch

SERIAL = "AG1234567G"
NOW = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC).timestamp()


def meter(**kw) -> MeterConfig:
    return MeterConfig(serial=SERIAL, pin="12345678", organisation="org", **kw)


def payload(**overrides) -> bytes:
    body = {"serial": SERIAL, "timestamp": "2026-11-24T10:00:00.000Z", "current": [10.5, -3.0, 0.0],
            "voltage": [230.0, 231.0, 229.0], "power": 1700}
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_valid_payload_becomes_a_reading():
    r = ReadingJudge.for_meter(meter()).from_payload(payload(), NOW + 0.2)
    assert r == MeterReading(SERIAL, NOW, NOW + 0.2, (10.5, -3.0, 0.0), (230.0, 231.0, 229.0), 1700.0, frozenset())
    assert not r.saturated


def test_voltage_and_power_are_optional():
    r = ReadingJudge.for_meter(meter()).from_payload(payload(voltage=..., power=...), NOW)
    assert r.voltage == (None, None, None) and r.power is None


def test_one_phase_site_uses_l1_only():
    judge = ReadingJudge.for_meter(meter(phases=[1]))
    r = judge.from_payload(payload(current=[7.0, 55.0, 999.0]), NOW)  # L2/L3 are not wired: ignored
    assert r.current == (7.0, None, None)
    assert judge.from_payload(payload(current=[8.0], timestamp="2026-11-24T10:00:01Z"), NOW + 1).current == (8.0, None, None)


@pytest.mark.parametrize(("raw", "kind"), [
    (b"{not json", "malformed_json"),
    (b"[1, 2, 3]", "malformed_json"),
    (b"\xff\xfe", "malformed_json"),
    (payload(serial=...), "missing_field"),
    (payload(timestamp=...), "missing_field"),
    (payload(current=...), "missing_field"),
    (payload(current=[1.0, 2.0]), "missing_field"),  # a three-phase meter without L3
    (payload(current=[1.0, None, 2.0]), "missing_field"),
    (payload(current="10"), "invalid_field"),
    (payload(current=[1.0, "2", 3.0]), "invalid_field"),
    (payload(timestamp="yesterday"), "invalid_field"),
    (payload(timestamp="2026-11-24T10:00:00"), "invalid_field"),  # no time zone
    (payload(serial="AG7654321G"), "wrong_serial"),
    (b'{"serial": "AG1234567G", "timestamp": "2026-11-24T10:00:00Z", "current": [NaN, 1, 1]}', "not_finite"),
    (b'{"serial": "AG1234567G", "timestamp": "2026-11-24T10:00:00Z", "current": [1, 1, 1], "power": Infinity}', "not_finite"),
    (payload(current=[100.5, 0, 0]), "current_out_of_range"),  # home variant: 0-100 A
    (payload(current=[0, -101, 0]), "current_out_of_range"),
    (payload(voltage=[230, 391, 230]), "voltage_out_of_range"),
    (payload(voltage=[-1, 230, 230]), "voltage_out_of_range"),
    (payload(timestamp="2026-11-24T10:01:00Z"), "future_timestamp"),
])
def test_bad_input_is_refused_by_kind(raw, kind):
    with pytest.raises(Rejected) as err:
        ReadingJudge.for_meter(meter()).from_payload(raw, NOW)
    assert err.value.kind == kind


def test_duplicates_and_timestamps_going_backwards_are_refused():
    judge = ReadingJudge.for_meter(meter())
    judge.from_payload(payload(timestamp="2026-11-24T10:00:00Z"), NOW)
    with pytest.raises(Rejected, match="duplicate"):
        judge.from_payload(payload(timestamp="2026-11-24T10:00:00.000Z"), NOW + 1)
    with pytest.raises(Rejected, match="timestamp_backwards"):
        judge.from_payload(payload(timestamp="2026-11-24T09:59:59Z"), NOW + 1)
    assert judge.from_payload(payload(timestamp="2026-11-24T10:00:01Z"), NOW + 1).taken_at == NOW + 1


def test_public_variant_range_and_saturation_flag():
    judge = ReadingJudge.for_meter(meter(variant="public"))
    r = judge.from_payload(payload(current=[150.0, -400.0, 399.0]), NOW)
    assert r.saturated_phases == (2, 3) and r.saturated
    home = ReadingJudge.for_meter(meter()).from_payload(payload(current=[100.0, 99.0, 0]), NOW)
    assert home.saturated_phases == (1,)


def test_status_word_flags_and_device_fault():
    judge = ReadingJudge.for_meter(meter())
    values = {"current_l1": 5.0, "current_l2": 6.0, "current_l3": 7.0, "voltage_l1": 230.0, "power_total": 4000.0,
              "status": float(StatusFlag.CLAMP_FAULT_L2 | StatusFlag.VOLTAGE_LOST)}
    r = judge.from_registers(values, NOW)
    assert r.flags == {"clamp_fault_l2", "voltage_lost"}
    assert r.voltage == (230.0, None, None) and r.power == 4000.0
    r = judge.from_registers({**values, "status": float(StatusFlag.OVERRANGE)}, NOW + 1)
    assert r.saturated_phases == (1, 2, 3)  # the word does not say which phase: all count as overloaded
    with pytest.raises(Rejected, match="device_fault"):
        judge.from_registers({**values, "status": float(StatusFlag.DEVICE_FAULT)}, NOW + 2)


def test_register_values_are_range_checked_too():
    with pytest.raises(Rejected) as err:
        ReadingJudge.for_meter(meter()).from_registers({"current_l1": float("nan"), "current_l2": 1, "current_l3": 1}, NOW)
    assert err.value.kind == "not_finite"


def test_reading_and_state_json_round_trip():
    r = MeterReading(SERIAL, NOW, NOW + 0.5, (1.5, None, -2.0), (230.0, None, None), None, frozenset({"saturated_l3"}))
    assert MeterReading.from_json(r.to_json()) == r
    s = MeterState("stale", "no valid reading for 10 s", NOW)
    assert MeterState.from_json(s.to_json()) == s
    for bad in (b"nope", b"{}", b'{"serial": "x", "taken_at": 1, "received_at": 1, "current": [1, 2]}'):
        with pytest.raises(ValueError):
            MeterReading.from_json(bad)
    with pytest.raises(ValueError, match="status"):
        MeterState.from_json(b'{"status": "fine", "reason": "", "since": 1}')


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def test_watch_goes_stale_then_offline_and_back_online():
    clock, states = FakeClock(), []
    watch = MeterWatch(SERIAL, 10.0, lambda s, st: states.append(st), clock)
    watch.announce()
    assert states[-1].status == "offline"
    assert watch.check() == 10.0  # grace period before the first reading
    clock.now += 3
    watch.valid_reading()
    assert states[-1].status == "online"
    clock.now += 4
    assert watch.check() == pytest.approx(6.0)  # next check exactly when this reading turns stale
    watch.refused("current_out_of_range (x)")
    clock.now += 6
    watch.check()
    assert states[-1].status == "stale" and "current_out_of_range" in states[-1].reason
    watch.source_down("cannot connect to 10.0.0.5:502")
    assert states[-1] == MeterState("offline", "cannot connect to 10.0.0.5:502", clock.now)
    watch.source_up()
    clock.now += 1
    watch.valid_reading()
    assert states[-1].status == "online"


def test_watch_stays_online_through_a_brief_disconnect():
    clock, states = FakeClock(), []
    watch = MeterWatch(SERIAL, 10.0, lambda s, st: states.append(st), clock)
    watch.valid_reading()
    watch.source_down("connection reset")
    watch.source_up()
    clock.now += 5
    watch.check()
    assert [s.status for s in states] == ["online"]
    clock.now += 5
    watch.check()
    assert states[-1].status == "stale"
