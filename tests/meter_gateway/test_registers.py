"""Register maps: the shipped files load, decode the published layouts, and bad files are explained."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meter_gateway.registers import (
    RegisterMapError,
    available_register_maps,
    load_register_map,
    parse_register_map,
)

SHIPPED = ["abb_b23", "ampguard", "em24", "sdm630"]


def test_shipped_maps_are_listed_and_load():
    assert set(SHIPPED) <= set(available_register_maps())
    for name in SHIPPED:
        regmap = load_register_map(name)
        assert regmap.name == name
        assert {"current_l1", "current_l2", "current_l3"} <= set(regmap.quantities)


def _f32(value: float) -> list[int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def test_sdm630_decodes_the_published_layout():
    """Input registers 30001.. as big-endian float32; current takes the sign of the phase power."""
    regmap = load_register_map("sdm630")
    raw = {0: 230.5, 2: 231.0, 4: 229.5, 6: 12.5, 8: 3.0, 10: 0.5, 12: -2800.0, 14: 690.0, 16: 115.0, 52: -1995.0}
    words = {}
    for address, value in raw.items():
        hi, lo = _f32(value)
        words[("input", address)], words[("input", address + 1)] = hi, lo
    values = regmap.decode(words)
    assert values["voltage_l1"] == 230.5 and values["voltage_l3"] == 229.5
    assert values["current_l1"] == -12.5  # magnitude 12.5 with the sign of power_l1
    assert values["current_l2"] == 3.0
    assert values["power_total"] == -1995.0
    assert [(b.function, b.address, b.count) for b in regmap.read_blocks()] == [("input", 0, 18), ("input", 52, 2)]


def test_em24_words_are_low_word_first():
    regmap = load_register_map("em24")
    # current L1 = 70000 mA = 0x0001_1170: the low word 0x1170 sits at the lower address 0x0C.
    words = {("holding", a): 0 for b in regmap.read_blocks() for a in range(b.address, b.address + b.count)}
    words[("holding", 0x0C)], words[("holding", 0x0D)] = 0x1170, 0x0001
    words[("holding", 0x12)], words[("holding", 0x13)] = 0x5F90, 0x0001  # power L1 = 90000 * 0.1 W
    values = regmap.decode(words)
    assert values["current_l1"] == pytest.approx(70.0)
    assert values["power_l1"] == pytest.approx(9000.0)


def test_abb_b23_current_is_unsigned_centiamps_signed_by_power():
    regmap = load_register_map("abb_b23")
    words = {("holding", a): 0 for b in regmap.read_blocks() for a in range(b.address, b.address + b.count)}
    words[("holding", 0x5B0C)], words[("holding", 0x5B0D)] = 0, 1234  # 12.34 A
    neg = (-150000) & 0xFFFFFFFF  # -1500 W in 0.01 W
    words[("holding", 0x5B16)], words[("holding", 0x5B17)] = neg >> 16, neg & 0xFFFF
    values = regmap.decode(words)
    assert values["current_l1"] == pytest.approx(-12.34)
    assert values["power_l1"] == pytest.approx(-1500.0)


def test_ampguard_reads_in_one_request():
    regmap = load_register_map("ampguard")
    assert [(b.function, b.address, b.count) for b in regmap.read_blocks()] == [("input", 0, 18)]


@pytest.mark.parametrize("name", SHIPPED)
@settings(max_examples=40, deadline=None)
@given(
    amps=st.lists(st.floats(-99, 99).map(lambda x: round(x, 2)), min_size=3, max_size=3),
    volts=st.lists(st.floats(0, 390).map(lambda x: round(x, 1)), min_size=3, max_size=3),
    watts=st.lists(st.floats(-20000, 20000).map(lambda x: round(x)), min_size=3, max_size=3),
)
def test_encode_then_decode_round_trips(name, amps, volts, watts):
    regmap = load_register_map(name)
    values = {f"voltage_l{i + 1}": volts[i] for i in range(3)}
    for i in range(3):
        # Maps with unsigned currents carry the sign in the power, so keep the two consistent.
        watts_i = math.copysign(abs(watts[i]) or 1.0, amps[i]) if amps[i] else abs(watts[i])
        values[f"current_l{i + 1}"], values[f"power_l{i + 1}"] = amps[i], watts_i
    values["power_total"] = sum(values[f"power_l{i + 1}"] for i in range(3))
    words = regmap.encode(values)
    assert all(0 <= w <= 0xFFFF for w in words.values())
    covered = {(b.function, a) for b in regmap.read_blocks() for a in range(b.address, b.address + b.count)}
    assert set(words) == covered
    decoded = regmap.decode(words)
    for quantity, expected in values.items():
        assert decoded[quantity] == pytest.approx(expected, abs=0.011), quantity


def test_encode_fills_missing_quantities_with_zero_and_rejects_values_that_do_not_fit():
    regmap = load_register_map("ampguard")
    assert regmap.decode(regmap.encode({}))["current_l2"] == 0.0
    with pytest.raises(ValueError, match="voltage_l1"):
        regmap.encode({"voltage_l1": 7000.0})  # uint16 in 0.1 V tops out at 6553.5 V


def test_read_blocks_respect_the_per_request_limit():
    data = {
        "description": "x",
        "max_registers_per_request": 4,
        "defaults": {"type": "float32"},
        "registers": [
            {"quantity": f"current_l{i}", "address": 2 * (i - 1), "unit": "A"} for i in (1, 2, 3)
        ],
    }
    regmap = parse_register_map("x", data)
    assert [(b.address, b.count) for b in regmap.read_blocks()] == [(0, 4), (4, 2)]


BAD = [
    ({"registers": [{"quantity": "current_l1", "address": 0, "unit": "A"}]}, "description", "Field required"),
    ({"description": "x", "registers": [{"quantity": "current_l4", "address": 0, "unit": "A"}]},
     "registers.0.quantity", "unknown quantity"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "mA"}]},
     "registers.0.unit", "convert with scale"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A", "type": "int8"}]},
     "registers.0.type", "int16"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A", "scale": 0}]},
     "registers.0.scale", "non-zero"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A", "adress": 1}]},
     "registers.0.adress", "unknown key"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A"},
                                        {"quantity": "current_l2", "address": 1, "unit": "A"}]},
     "registers.1.address", "already used by registers.0"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A"},
                                        {"quantity": "current_l1", "address": 4, "unit": "A"}]},
     "registers.1.quantity", "already at registers.0"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A", "sign_from": "power_l1"}]},
     "registers.0.sign_from", "another quantity"),
    ({"description": "x", "registers": [{"quantity": "voltage_l1", "address": 0, "unit": "V"}]},
     "registers", "current_l1"),
    ({"description": "x", "registers": [{"quantity": "current_l1", "address": 65535, "unit": "A"}]},
     "registers.0.address", "runs past"),
]


@pytest.mark.parametrize(("data", "field", "message"), BAD)
def test_bad_register_maps_name_file_and_field(tmp_path: Path, data, field, message):
    path = tmp_path / "mymeter.toml"
    path.write_text(_to_toml(data))
    with pytest.raises(RegisterMapError) as err:
        load_register_map("mymeter", [tmp_path])
    assert err.value.source == str(path)
    assert err.value.field == field
    assert message in err.value.message


def test_not_valid_toml(tmp_path: Path):
    (tmp_path / "broken.toml").write_text("description = \n")
    with pytest.raises(RegisterMapError, match=r"broken\.toml: \(syntax\): not valid TOML"):
        load_register_map("broken", [tmp_path])


def test_unknown_map_lists_the_available_ones(tmp_path: Path):
    with pytest.raises(RegisterMapError) as err:
        load_register_map("sdm120", [tmp_path])
    assert "not found" in str(err.value) and "sdm630" in str(err.value) and "ampguard" in str(err.value)
    with pytest.raises(RegisterMapError, match="file name"):
        load_register_map("../etc/passwd")


def test_a_user_map_in_an_extra_folder_wins_and_is_listed(tmp_path: Path):
    (tmp_path / "sdm630.toml").write_text(_to_toml({
        "description": "patched", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A"}],
    }))
    (tmp_path / "mine.toml").write_text(_to_toml({
        "description": "mine", "registers": [{"quantity": "current_l1", "address": 0, "unit": "A"}],
    }))
    assert load_register_map("sdm630", [tmp_path]).description == "patched"
    assert "mine" in available_register_maps([tmp_path])


def _to_toml(data: dict) -> str:
    """Just enough TOML writing for these flat test maps."""
    def value(v):  # noqa: ANN001
        return f'"{v}"' if isinstance(v, str) else repr(v)

    lines = [f"{k} = {value(v)}" for k, v in data.items() if k not in ("defaults", "registers")]
    if "defaults" in data:
        lines.append("[defaults]")
        lines += [f"{k} = {value(v)}" for k, v in data["defaults"].items()]
    for reg in data.get("registers", []):
        lines.append("[[registers]]")
        lines += [f"{k} = {value(v)}" for k, v in reg.items()]
    return "\n".join(lines) + "\n"
